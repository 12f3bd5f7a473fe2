//! The status bar: the time, how long the run has gone, relaytop's own CPU and memory,
//! sessions up out of all, the time window, the alerts firing or pending, the recording, freeze and notices, and key hints
//! generated from the key table. Pieces give way by priority when the line is short; the filter prompt takes
//! the hints' place while it is open.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::{App, FilterTarget, window_name};
use crate::format;
use crate::theme::Role;

/// A piece of the bar: its spans and how soon it gives way (higher goes first).
struct Piece<'a> {
    spans: Vec<Span<'a>>,
    drop_order: u8,
}

impl Piece<'_> {
    fn width(&self) -> usize {
        self.spans.iter().map(|s| s.width()).sum()
    }
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    if area.height == 0 {
        return;
    }
    let theme = app.theme();
    let bar = theme.status_bar();
    let strong = |role: Role| -> Style {
        if theme.is_no_color() {
            bar.add_modifier(Modifier::BOLD)
        } else {
            bar.fg(theme.color(role)).add_modifier(Modifier::BOLD)
        }
    };
    let now = app.live_now_us();
    let totals = app.shown().metrics.totals();
    let mut left: Vec<Piece> = vec![
        Piece {
            spans: vec![Span::styled(
                format!(" {}", format::clock(app.started_at(), now)),
                strong(Role::Title),
            )],
            drop_order: 0,
        },
        Piece {
            spans: vec![Span::styled(format!("run {}", format::run_time(now)), bar)],
            drop_order: 3,
        },
    ];
    if let Some(usage) = app.self_usage {
        left.push(Piece {
            spans: vec![Span::styled(
                format!(
                    "cpu {:.1}% mem {}",
                    usage.cpu_percent,
                    format::mebibytes(usage.memory_bytes)
                ),
                bar,
            )],
            drop_order: 5,
        });
    }
    let up_role = if totals.connections_up() < totals.sessions() {
        Role::Warning
    } else {
        Role::Connected
    };
    left.push(Piece {
        spans: vec![Span::styled(
            format!("{}/{} up", totals.connections_up(), totals.sessions()),
            strong(up_role),
        )],
        drop_order: 0,
    });
    left.push(Piece {
        spans: vec![Span::styled(window_name(app.window).to_string(), bar)],
        drop_order: 4,
    });
    if let Some(view) = app.canary() {
        let role = match view.phase {
            relaytop_core::canary::Phase::Running
            | relaytop_core::canary::Phase::Promoted { .. } => Role::Connected,
            relaytop_core::canary::Phase::Paused { .. } => Role::Warning,
            relaytop_core::canary::Phase::RolledBack { .. } => Role::Error,
        };
        left.push(Piece {
            spans: vec![Span::styled(
                crate::render::canary_summary(view),
                strong(role),
            )],
            drop_order: 2,
        });
    }
    if let Some(view) = app.alerts() {
        // The alerts: what is firing (or pending), and the key that shows them.
        let key = app.keys().keys_label(crate::keys::Action::Alerts);
        let (text, role) = match view.indicator() {
            Some(words) if !view.firing.is_empty() => (format!("{words} ({key})"), Role::Error),
            Some(words) => (format!("{words} ({key})"), Role::Warning),
            None => (format!("alerts ok ({key})"), Role::Connected),
        };
        let failed = view.deliveries.failed;
        let mut spans = vec![Span::styled(text, strong(role))];
        if failed > 0 {
            spans.push(Span::styled(
                format!(" · {failed} not delivered"),
                strong(Role::Error),
            ));
        }
        left.push(Piece {
            spans,
            drop_order: if view.firing.is_empty() { 3 } else { 0 },
        });
    }
    if app.recording_failed.is_some() {
        left.push(Piece {
            spans: vec![Span::styled("✗ rec stopped", strong(Role::Warning))],
            drop_order: 1,
        });
    } else if let Some(dir) = app.recording() {
        // The run directory's name: the full path is printed on exit.
        let short = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        left.push(Piece {
            spans: vec![Span::styled(format!("● rec {short}"), bar)],
            drop_order: 4,
        });
    }
    if let Some(events) = app.frozen_events() {
        left.push(Piece {
            spans: vec![Span::styled(
                format!(
                    "FROZEN at {} · {} new events",
                    format::clock(app.started_at(), app.now_us()),
                    format::thousands(events)
                ),
                strong(Role::Frozen),
            )],
            drop_order: 0,
        });
    }
    if let Some(notice) = app.notice() {
        left.push(Piece {
            spans: vec![Span::styled(notice.to_string(), strong(Role::KeyHint))],
            drop_order: 2,
        });
    }

    let mut right: Vec<Piece> = Vec::new();
    if let Some(question) = app.confirming() {
        right.push(Piece {
            spans: vec![
                Span::styled(format!(" {question} "), strong(Role::Error)),
                Span::styled(" y confirms · any other key cancels ", bar),
            ],
            drop_order: 0,
        });
    } else if let Some(target) = app.input {
        let (what, text) = match target {
            FilterTarget::Sessions => ("sessions", &app.session_filter),
            FilterTarget::Events => ("events", &app.event_filter),
        };
        right.push(Piece {
            spans: vec![
                Span::styled(format!(" filter {what}: "), strong(Role::Filter)),
                Span::styled(format!("{text}█"), bar.add_modifier(Modifier::BOLD)),
                Span::styled("  Enter keeps · Esc clears ", bar),
            ],
            drop_order: 0,
        });
    } else {
        let hints = app.keys().hints();
        let count = hints.len();
        for (i, (key, label)) in hints.into_iter().enumerate() {
            // The last hints (help, quit) stay longest.
            let drop_order = if i + 2 >= count { 1 } else { 6 };
            right.push(Piece {
                spans: vec![
                    Span::styled(key, strong(Role::KeyHint)),
                    Span::styled(format!(" {label}  "), bar),
                ],
                drop_order,
            });
        }
    }

    let width = usize::from(area.width);
    const SEPARATOR: &str = " │ ";
    const SEPARATOR_WIDTH: usize = 3;
    let total = |l: &[Piece], r: &[Piece]| -> usize {
        l.iter().map(Piece::width).sum::<usize>()
            + SEPARATOR_WIDTH * l.len().saturating_sub(1)
            + r.iter().map(Piece::width).sum::<usize>()
    };
    for order in (1..=6).rev() {
        while total(&left, &right) > width {
            // Hints go from the left end first; other pieces from the right.
            if let Some(i) = right.iter().position(|p| p.drop_order == order) {
                right.remove(i);
            } else if let Some(i) = left.iter().rposition(|p| p.drop_order == order) {
                left.remove(i);
            } else {
                break;
            }
        }
    }
    let used = total(&left, &right);
    let separator = if theme.is_no_color() {
        bar
    } else {
        bar.fg(theme.color(Role::Muted))
    };
    let mut spans: Vec<Span> = Vec::new();
    for (i, piece) in left.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(SEPARATOR, separator));
        }
        spans.extend(piece.spans);
    }
    spans.push(Span::styled(" ".repeat(width.saturating_sub(used)), bar));
    spans.extend(right.into_iter().flat_map(|p| p.spans));
    frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
}
