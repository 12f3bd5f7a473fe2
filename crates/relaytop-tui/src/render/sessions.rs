//! The sessions table: one row per session (name, provider, model, state with its colour,
//! reconnects, drops, last heartbeat round trip and age, TTFT p50/p99 with sample count,
//! tokens, cost). Columns give way by priority on narrow screens; only visible rows are built.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{Chrome, muted};
use crate::app::{App, SessionView, SortColumn};
use crate::format;
use crate::theme::Role;
use relaytop_core::metrics::{LatencyMetric, SessionStats};
use relaytop_core::session::SessionState;

/// A column: what it shows, its header, its width, and how soon it gives way (0: never).
struct Column {
    id: SortColumn,
    header: &'static str,
    width: u16,
    priority: u8,
    right: bool,
}

fn columns(app: &App, width: u16) -> Vec<Column> {
    let [name_w, provider_w, model_w] = app.label_widths;
    let all = [
        Column {
            id: SortColumn::Name,
            header: "session",
            width: name_w.clamp(8, 28),
            priority: 0,
            right: false,
        },
        Column {
            id: SortColumn::Provider,
            header: "provider",
            width: provider_w.clamp(8, 16),
            priority: 3,
            right: false,
        },
        Column {
            id: SortColumn::Model,
            header: "model",
            width: model_w.clamp(5, 20),
            priority: 6,
            right: false,
        },
        Column {
            id: SortColumn::State,
            header: "state",
            width: 25,
            priority: 0,
            right: false,
        },
        Column {
            id: SortColumn::Reconnects,
            header: "reconn",
            width: 6,
            priority: 4,
            right: true,
        },
        Column {
            id: SortColumn::Drops,
            header: "drops",
            width: 5,
            priority: 2,
            right: true,
        },
        Column {
            id: SortColumn::HeartbeatRtt,
            header: "hb rtt",
            width: 7,
            priority: 3,
            right: true,
        },
        Column {
            id: SortColumn::HeartbeatAge,
            header: "hb age",
            width: 6,
            priority: 4,
            right: true,
        },
        Column {
            id: SortColumn::Ttft,
            header: "ttft p50/p99 (n)",
            width: 16,
            priority: 1,
            right: true,
        },
        Column {
            id: SortColumn::Speed,
            header: "tok/s",
            width: 6,
            priority: 2,
            right: true,
        },
        Column {
            id: SortColumn::Itl,
            header: "itl p99",
            width: 8,
            priority: 3,
            right: true,
        },
        Column {
            id: SortColumn::Tokens,
            header: "tok in/out",
            width: 11,
            priority: 5,
            right: true,
        },
        Column {
            id: SortColumn::Cost,
            header: "cost",
            width: 11,
            priority: 1,
            right: true,
        },
    ];
    // Take columns by priority while they fit (one space between columns).
    let mut keep = [false; 13];
    let mut used: u16 = 0;
    for priority in 0..=6 {
        for (i, c) in all.iter().enumerate() {
            if c.priority == priority {
                let need = c.width + u16::from(used > 0);
                if used + need <= width || priority == 0 {
                    keep[i] = true;
                    used += need;
                }
            }
        }
    }
    let mut chosen: Vec<Column> = all
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect();
    // Room left over goes to the state (stop reasons are long), then to the name.
    if used > width {
        let over = used - width;
        if let Some(name) = chosen.iter_mut().find(|c| c.id == SortColumn::Name) {
            name.width = name.width.saturating_sub(over).max(4);
        }
    } else if let Some(state) = chosen.iter_mut().find(|c| c.id == SortColumn::State) {
        state.width += (width - used).min(16);
    }
    chosen
}

/// The state as a person says it, and its colour.
pub fn state_text(
    state: &SessionState,
    now_us: u64,
    started_at: chrono::DateTime<chrono::FixedOffset>,
) -> (String, Role) {
    match state {
        SessionState::Connecting { attempt } if *attempt <= 1 => {
            ("connecting".into(), Role::Connecting)
        }
        SessionState::Connecting { attempt } => {
            (format!("connecting (try {attempt})"), Role::Connecting)
        }
        SessionState::Open => ("open".into(), Role::Connected),
        SessionState::Streaming { .. } => ("streaming".into(), Role::Streaming),
        SessionState::BackingOff {
            until_us,
            watch: Some(watch),
            ..
        } => (
            watch.describe(
                &format::clock(started_at, watch.since_us),
                until_us.saturating_sub(now_us),
            ),
            if watch.refused.is_some() {
                Role::Stopped
            } else {
                Role::BackingOff
            },
        ),
        SessionState::BackingOff {
            attempt,
            max_attempts,
            until_us,
            watch: None,
        } => {
            let left = until_us.saturating_sub(now_us) as f64 / 1e6;
            (
                format!("backing off {attempt}/{max_attempts} in {left:.1} s"),
                Role::BackingOff,
            )
        }
        SessionState::Stopped { reason } => (format!("stopped: {reason}"), Role::Stopped),
        SessionState::Closed => ("closed".into(), Role::Closed),
    }
}

/// Whether the session's heartbeat is late: it is connected and no pong came for one and a
/// half intervals (and a second of grace).
pub fn heartbeat_late(stats: &SessionStats, view: Option<&SessionView>, now_us: u64) -> bool {
    let Some(view) = view else {
        return false;
    };
    let Some(every) = view.heartbeat_every_us else {
        return false;
    };
    if !stats.state().is_up() {
        return false;
    }
    let since = stats
        .counts
        .last_heartbeat
        .map_or(0, |h| h.at_us)
        .max(view.connected_at_us.unwrap_or(0));
    now_us.saturating_sub(since) > every + every / 2 + 1_000_000
}

fn cell<'a>(text: String, style: Style, right: bool) -> Cell<'a> {
    let line = Line::styled(text, style);
    Cell::from(if right { line.right_aligned() } else { line })
}

pub fn render(frame: &mut Frame, area: Rect, chrome: Chrome, app: &App) {
    let theme = app.theme();
    let data = app.shown();
    let now = app.now_us();
    let window = app.session_window();
    let totals = data.metrics.totals();

    let mut details = vec![
        Span::styled(
            format!("{}/{} up", totals.connections_up(), totals.sessions()),
            theme.fg(Role::Connected),
        ),
        muted(
            app,
            format!(
                " · sort {}{}",
                app.sort.label(),
                if app.sort_reverse { " ▼" } else { " ▲" }
            ),
        ),
    ];
    if let Some(watching) = &app.watching {
        details.push(muted(app, " · "));
        details.push(Span::styled(watching.clone(), theme.fg(Role::Title)));
    }
    if !app.session_filter.is_empty() {
        details.push(muted(app, " · filter "));
        details.push(Span::styled(
            app.session_filter.clone(),
            theme.fg(Role::Filter),
        ));
        details.push(muted(app, format!(" ({} shown)", app.rows.len())));
    }
    let visible = usize::from(area.height.saturating_sub(3));
    let first = app.table_offset.min(app.rows.len());
    let last = (first + visible).min(app.rows.len());
    let position = if app.rows.is_empty() {
        None
    } else {
        Some(Line::from(muted(
            app,
            format!(" {}–{} of {} ", first + 1, last, app.rows.len()),
        )))
    };
    let block = chrome.block(app, details, position);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }

    let cols = columns(app, inner.width);
    let header_style = theme.fg(Role::Header).add_modifier(Modifier::BOLD);
    let header = Row::new(cols.iter().map(|c| {
        let mut text = c.header.to_string();
        if c.id == app.sort {
            text.push(if app.sort_reverse { '▼' } else { '▲' });
        }
        cell(
            format::fit(&text, usize::from(c.width)),
            header_style,
            c.right,
        )
    }));

    if app.rows.is_empty() {
        let message = if app.session_filter.is_empty() {
            "no sessions configured".to_string()
        } else {
            format!(
                "no session matches “{}” (Esc clears the filter)",
                app.session_filter
            )
        };
        frame.render_widget(
            Paragraph::new(vec![Line::default(), Line::from(muted(app, message))]),
            Rect::new(
                inner.x + 1,
                inner.y,
                inner.width.saturating_sub(1),
                inner.height,
            ),
        );
        return;
    }

    let mut rows = Vec::with_capacity(last - first);
    for id in &app.rows[first..last] {
        let Some(s) = data.metrics.session(*id) else {
            continue;
        };
        let view = data.view(*id);
        let c = &s.counts;
        let currency = data.metrics.provider_of(s).billing_currency();
        let cells = cols.iter().map(|col| {
            let w = usize::from(col.width);
            let plain = theme.fg(Role::Foreground);
            let (text, style) = match col.id {
                SortColumn::Name => (s.info().name.clone(), plain),
                SortColumn::Provider => (s.info().provider.clone(), plain),
                SortColumn::Model => (s.info().model.clone(), theme.fg(Role::Muted)),
                SortColumn::State => {
                    let (text, role) = state_text(s.state(), now, app.started_at());
                    (text, theme.fg(role))
                }
                SortColumn::Reconnects => (
                    c.reconnects.to_string(),
                    if c.reconnects > 0 {
                        theme.fg(Role::Warning)
                    } else {
                        theme.fg(Role::Muted)
                    },
                ),
                SortColumn::Drops => (
                    c.drops.to_string(),
                    if c.drops > 0 {
                        theme.fg(Role::Error)
                    } else {
                        theme.fg(Role::Muted)
                    },
                ),
                // HTTP streams have no heartbeat at all: say so rather than show an empty cell.
                SortColumn::HeartbeatRtt | SortColumn::HeartbeatAge
                    if s.info().protocol.is_http_stream() =>
                {
                    ("n/a".into(), theme.fg(Role::Muted))
                }
                SortColumn::HeartbeatRtt => {
                    let missed_last = view
                        .and_then(|v| v.last_missed_heartbeat_us)
                        .is_some_and(|m| c.last_heartbeat.is_none_or(|h| m > h.at_us));
                    match c.last_heartbeat {
                        _ if missed_last => (
                            "missed".into(),
                            theme.fg(Role::HeartbeatLate).add_modifier(Modifier::BOLD),
                        ),
                        Some(h) => (format::latency(h.rtt_us), theme.fg(Role::HeartbeatOk)),
                        None => ("—".into(), theme.fg(Role::Muted)),
                    }
                }
                SortColumn::HeartbeatAge => match c.last_heartbeat {
                    Some(h) => {
                        let late = heartbeat_late(s, view, now);
                        let role = if late {
                            Role::HeartbeatLate
                        } else {
                            Role::Muted
                        };
                        (format::age(now.saturating_sub(h.at_us)), theme.fg(role))
                    }
                    None => ("—".into(), theme.fg(Role::Muted)),
                },
                SortColumn::Ttft => match s
                    .latency(LatencyMetric::TimeToFirstToken, window, now)
                    .filter(|q| q.count > 0)
                {
                    Some(q) => (
                        format!(
                            "{}/{} ({})",
                            format::latency_ms(q.p50),
                            format::latency_ms(q.p99),
                            format::compact(q.count)
                        ),
                        plain,
                    ),
                    None => ("—".into(), theme.fg(Role::Muted)),
                },
                SortColumn::Speed => match s
                    .latency(LatencyMetric::TimePerOutputToken, window, now)
                    .filter(|q| q.count > 0)
                {
                    Some(q) => (
                        format!("{:.0}", relaytop_core::metrics::tokens_per_second(q.p50)),
                        plain,
                    ),
                    None => ("—".into(), theme.fg(Role::Muted)),
                },
                SortColumn::Itl => match s
                    .latency(LatencyMetric::InterTokenLatency, window, now)
                    .filter(|q| q.count > 0)
                {
                    Some(q) => (format::latency(q.p99), plain),
                    None => ("—".into(), theme.fg(Role::Muted)),
                },
                SortColumn::Tokens => {
                    let t = &c.tokens;
                    let mark = if t.estimated > 0 { "~" } else { "" };
                    (
                        format!(
                            "{mark}{}/{}",
                            format::compact(t.input),
                            format::compact(t.output)
                        ),
                        plain,
                    )
                }
                SortColumn::Cost => {
                    let estimated = c.cost.is_estimated();
                    let role = if estimated {
                        Role::Estimated
                    } else {
                        Role::Cost
                    };
                    (
                        format::money(c.cost.billed(), currency, estimated),
                        theme.fg(role),
                    )
                }
            };
            cell(format::fit(&text, w), style, col.right)
        });
        let mut row = Row::new(cells);
        if app.selected == Some(*id) {
            row = row.style(theme.selection());
        }
        rows.push(row);
    }
    let widths: Vec<Constraint> = cols.iter().map(|c| Constraint::Length(c.width)).collect();
    let table = Table::new(rows, widths).header(header).column_spacing(1);
    frame.render_widget(table, inner);
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaytop_core::session::Watch;

    #[test]
    fn a_watched_session_says_since_when_and_when_it_looks_next() {
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-25T14:00:00Z").unwrap();
        let down = SessionState::BackingOff {
            attempt: 12,
            max_attempts: 10,
            until_us: 250_000_000,
            watch: Some(Watch {
                since_us: 202_000_000,
                refused: None,
            }),
        };
        let (text, role) = state_text(&down, 208_000_000, start);
        assert_eq!(text, "down since 14:03:22, next look in 42 s");
        assert_eq!(role, Role::BackingOff);
        let refused = SessionState::BackingOff {
            attempt: 0,
            max_attempts: 0,
            until_us: 500_000_000,
            watch: Some(Watch {
                since_us: 202_000_000,
                refused: Some("upgrade answered 401: invalid API key".into()),
            }),
        };
        let (text, role) = state_text(&refused, 202_000_000, start);
        assert_eq!(
            text,
            "refused since 14:03:22, next check in 4m 58s: upgrade answered 401: invalid API key"
        );
        assert_eq!(role, Role::Stopped);
    }
}
