//! The help overlay: every action with its keys, generated from the key table (so it always
//! shows the keys in force, overrides included), what the colours and marks mean, and the
//! mouse. Scrolls when the screen is short.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph};

use super::muted;
use crate::app::App;
use crate::keys::{ACTIONS, Group};
use crate::theme::Role;

/// The help text, one line a row.
pub fn help_lines<'a>(app: &App) -> Vec<Line<'a>> {
    let theme = app.theme();
    let keys = app.keys();
    let key_width = ACTIONS
        .iter()
        .map(|a| keys.keys_label(a.action).chars().count())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut lines = Vec::new();
    // The replay keys only while replaying.
    let groups = Group::ALL
        .into_iter()
        .filter(|g| *g != Group::Replay || app.replay().is_some());
    for group in groups {
        lines.push(Line::from(Span::styled(
            group.label(),
            theme.fg(Role::Header).add_modifier(Modifier::BOLD),
        )));
        for row in ACTIONS.iter().filter(|a| a.group == group) {
            lines.push(Line::from(vec![
                Span::styled(
                    format!("  {:<key_width$}  ", keys.keys_label(row.action)),
                    theme.fg(Role::KeyHint).add_modifier(Modifier::BOLD),
                ),
                Span::styled(row.help, theme.fg(Role::Foreground)),
            ]));
        }
    }
    lines.push(Line::from(Span::styled(
        "Filter prompt",
        theme.fg(Role::Header).add_modifier(Modifier::BOLD),
    )));
    lines.push(Line::from(muted(
        app,
        "  type to filter (every word must match) · Enter keeps · Esc clears",
    )));
    lines.push(Line::from(Span::styled(
        "Mouse",
        theme.fg(Role::Header).add_modifier(Modifier::BOLD),
    )));
    lines.push(Line::from(muted(
        app,
        "  click a pane to focus it, a session to select it · wheel scrolls",
    )));
    lines.push(Line::from(Span::styled(
        "Colours and marks",
        theme.fg(Role::Header).add_modifier(Modifier::BOLD),
    )));
    lines.push(Line::from(vec![
        Span::raw("  "),
        Span::styled("connecting", theme.fg(Role::Connecting)),
        Span::raw("  "),
        Span::styled("open", theme.fg(Role::Connected)),
        Span::raw("  "),
        Span::styled("streaming", theme.fg(Role::Streaming)),
        Span::raw("  "),
        Span::styled("backing off", theme.fg(Role::BackingOff)),
        Span::raw("  "),
        Span::styled("stopped", theme.fg(Role::Stopped)),
        Span::raw("  "),
        Span::styled("closed", theme.fg(Role::Closed)),
    ]));
    lines.push(Line::from(vec![
        Span::raw("  "),
        Span::styled(
            "×",
            theme.fg(Role::HeartbeatLate).add_modifier(Modifier::BOLD),
        ),
        muted(app, " / "),
        Span::styled(
            "missed",
            theme.fg(Role::HeartbeatLate).add_modifier(Modifier::BOLD),
        ),
        muted(app, " heartbeat unanswered · "),
        Span::styled("~", theme.fg(Role::Estimated)),
        muted(app, " estimated (no usage from the relay)"),
    ]));
    lines.push(Line::from(muted(
        app,
        "  ttft p50/p99 (n): time to first token, ms, over n samples in the window",
    )));
    lines
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, offset: usize) {
    let theme = app.theme();
    let lines = help_lines(app);
    let width = area.width.saturating_sub(4).min(80);
    let height = area.height.saturating_sub(2).min(lines.len() as u16 + 2);
    if width < 20 || height < 3 {
        return;
    }
    let rect = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height.saturating_sub(height)) / 2,
        width,
        height,
    );
    let visible = usize::from(height - 2);
    let offset = offset.min(lines.len().saturating_sub(visible));
    let more_below = offset + visible < lines.len();
    let bottom = if more_below || offset > 0 {
        format!(
            " {}–{} of {} · ↑↓ scroll · ? or Esc closes ",
            offset + 1,
            (offset + visible).min(lines.len()),
            lines.len()
        )
    } else {
        " ? or Esc closes ".to_string()
    };
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(theme.border(true))
        .style(theme.base())
        .title(Line::from(Span::styled(
            format!(" relaytop {} · keys ", env!("CARGO_PKG_VERSION")),
            theme.fg(Role::Title).add_modifier(Modifier::BOLD),
        )))
        .title_bottom(Line::from(muted(app, bottom)).right_aligned());
    frame.render_widget(Clear, rect);
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let shown: Vec<Line> = lines.into_iter().skip(offset).take(visible).collect();
    frame.render_widget(Paragraph::new(shown), inner);
}
