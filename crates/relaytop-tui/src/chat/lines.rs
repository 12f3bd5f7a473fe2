//! How a turn reads: its lines (the question, the reply in Markdown, the word that says where
//! it is) and the stats line under a reply.

use ratatui::style::Modifier;
use ratatui::text::{Line, Span};

use super::markdown::{self, MarkdownStyle};
use super::turn::*;
use crate::format;
use crate::theme::{Role, Theme};

/// The word under a reply that says where it is (empty when done).
pub(super) fn status_text(turn: &Turn) -> String {
    match &turn.status {
        ReplyStatus::Queued => "queued: waiting for the connection".into(),
        ReplyStatus::Waiting => "waiting for the first token…".into(),
        ReplyStatus::Streaming => "streaming…".into(),
        ReplyStatus::Done => String::new(),
        ReplyStatus::Cancelled => "cancelled".into(),
        ReplyStatus::Cut { reason } => format!("✂ cut: {reason}"),
    }
}

/// The stats line under a reply: `ttft 412 ms · total 1.8 s · 12 → 25 tokens · ~0.0021 USD`.
pub fn stats_text(stats: &ReplyStats) -> String {
    let mut parts = Vec::with_capacity(4);
    if let Some(ttft) = stats.ttft_us {
        parts.push(format!("ttft {}", format::latency(ttft)));
    }
    parts.push(format!("total {}", format::latency(stats.total_us)));
    let mark = if stats.tokens.estimated { "~" } else { "" };
    parts.push(format!(
        "{mark}{} → {mark}{} tokens{}",
        format::thousands(stats.tokens.input),
        format::thousands(stats.tokens.output),
        if stats.tokens.estimated {
            " (est.)"
        } else {
            ""
        }
    ));
    parts.push(stats.cost.clone());
    parts.join(" · ")
}

pub(super) fn turn_lines(
    turn: &Turn,
    width: usize,
    theme: &Theme,
    style: &MarkdownStyle,
) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let muted = theme.fg(Role::Muted);
    let you = theme.fg(Role::Header).add_modifier(Modifier::BOLD);
    match &turn.kind {
        TurnKind::Note { text, error } => {
            let role = if *error { Role::Error } else { Role::Muted };
            for (i, line) in text.lines().enumerate() {
                let lead = if i == 0 { "· " } else { "  " };
                for (start, end) in crate::stream::wrap(line, width.saturating_sub(2)) {
                    lines.push(Line::from(Span::styled(
                        format!("{lead}{}", &line[start..end]),
                        theme.fg(role),
                    )));
                }
            }
            lines.push(Line::default());
            return lines;
        }
        TurnKind::Message(text) => {
            for (i, line) in text.split('\n').enumerate() {
                let lead = if i == 0 { "you › " } else { "      " };
                let rows = crate::stream::wrap(line, width.saturating_sub(6));
                for (j, (start, end)) in rows.into_iter().enumerate() {
                    let lead = if j == 0 { lead } else { "      " };
                    lines.push(Line::from(vec![
                        Span::styled(lead, you),
                        Span::styled(line[start..end].to_owned(), theme.fg(Role::Foreground)),
                    ]));
                }
            }
        }
        TurnKind::Transcription { file, audio } => {
            lines.push(Line::from(vec![
                Span::styled("you › ", you),
                Span::styled(
                    format!("transcribe {file} ({audio})"),
                    theme.fg(Role::Foreground),
                ),
            ]));
        }
    }
    lines.push(Line::from(Span::styled(
        format!("{} ›", turn.model),
        theme.fg(Role::Title).add_modifier(Modifier::BOLD),
    )));
    if !turn.reply.is_empty() {
        lines.extend(markdown::render(&turn.reply, width, style));
    }
    let status = status_text(turn);
    match &turn.status {
        ReplyStatus::Cut { .. } => {
            lines.push(Line::from(vec![
                Span::styled(status, theme.fg(Role::Error)),
                Span::styled(" · r retries", theme.fg(Role::KeyHint)),
            ]));
        }
        ReplyStatus::Done => {}
        ReplyStatus::Cancelled => {
            lines.push(Line::from(Span::styled(status, theme.fg(Role::Warning))));
        }
        _ => lines.push(Line::from(Span::styled(status, theme.fg(Role::Streaming)))),
    }
    if let Some(stats) = &turn.stats {
        lines.push(Line::from(Span::styled(
            stats_text(stats),
            muted.add_modifier(Modifier::ITALIC),
        )));
    }
    lines.push(Line::default());
    lines
}
