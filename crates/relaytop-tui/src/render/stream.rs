//! The stream pane: the selected session's text as it streams, with request boundaries,
//! completions, errors and connection changes marked. Wraps and draws only the lines that
//! fit, walking up from the bottom line (the newest when following).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{Chrome, muted};
use crate::app::{App, RateLimits};
use crate::format;
use crate::stream::{LineKind, StreamLine, wrap};
use crate::theme::{Role, Theme};

pub fn render(frame: &mut Frame, area: Rect, chrome: Chrome, app: &App) {
    let theme = app.theme();
    let data = app.shown();
    let selected = app
        .selected
        .and_then(|id| Some((data.metrics.session(id)?, data.view(id)?)));
    let Some((stats, view)) = selected else {
        let block = chrome.block(app, vec![muted(app, "no session selected")], None);
        frame.render_widget(block, area);
        return;
    };
    let info = stats.info();
    let ring = &view.stream;
    let newer = if app.stream_scroll.follow {
        0
    } else {
        ring.end_seq().saturating_sub(app.stream_scroll.bottom + 1)
    };
    let details = vec![
        Span::styled(info.name.clone(), theme.fg(Role::Title)),
        muted(app, format!(" · {} · {}", info.provider, info.model)),
    ];
    let right = if app.stream_scroll.follow {
        Line::from(muted(app, " following "))
    } else {
        Line::from(vec![
            Span::styled(
                format!(
                    " paused · {} newer line{} · ",
                    newer,
                    if newer == 1 { "" } else { "s" }
                ),
                theme.fg(Role::Warning),
            ),
            Span::styled(
                format!(
                    "{} follows ",
                    app.keys().keys_label(crate::keys::Action::Bottom)
                ),
                theme.fg(Role::KeyHint),
            ),
        ])
    };
    let mut block = chrome.block(app, details, Some(right));
    if let Some(limits) = &view.rate_limits {
        block = block.title_bottom(rate_limit_line(app, limits));
    }
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    if ring.is_empty() {
        let text = format!("waiting for {}'s first request…", info.name);
        frame.render_widget(Paragraph::new(Line::from(muted(app, text))), inner);
        return;
    }

    let height = usize::from(inner.height);
    let width = usize::from(inner.width);
    let bottom = if app.stream_scroll.follow {
        ring.end_seq() - 1
    } else {
        app.stream_scroll
            .bottom
            .clamp(ring.first_seq(), ring.end_seq() - 1)
    };
    // Newest first, then reversed: only as many lines as fill the pane are wrapped.
    let mut rows: Vec<Line> = Vec::with_capacity(height + 8);
    let mut seq = bottom + 1;
    while rows.len() < height && seq > ring.first_seq() {
        seq -= 1;
        let Some(line) = ring.get(seq) else {
            break;
        };
        let mut lines = line_rows(line, width, theme, app);
        lines.reverse();
        rows.extend(lines);
    }
    rows.truncate(height);
    rows.reverse();
    frame.render_widget(Paragraph::new(rows), inner);
}

/// What the relay said of its rate limits: ` limits: requests 59/60, reset in 1.0 s · ... `.
fn rate_limit_line<'a>(app: &App, limits: &RateLimits) -> Line<'a> {
    let theme = app.theme();
    let part = |what: &str, remaining: Option<u64>, limit: Option<u64>, reset_ms: Option<u64>| {
        let mut text = match (remaining, limit) {
            (Some(r), Some(l)) => format!("{what} {}/{}", format::compact(r), format::compact(l)),
            (Some(r), None) => format!("{what} {} left", format::compact(r)),
            (None, Some(l)) => format!("{what} limit {}", format::compact(l)),
            (None, None) => return None,
        };
        if let Some(ms) = reset_ms {
            let left = (limits.at_us + ms.saturating_mul(1000)).saturating_sub(app.now_us());
            text.push_str(&format!(", reset in {}", format::duration_short(left)));
        }
        let low = matches!((remaining, limit), (Some(r), Some(l)) if r.saturating_mul(10) < l);
        Some((text, low))
    };
    let parts: Vec<(String, bool)> = [
        part(
            "requests",
            limits.requests_remaining,
            limits.requests_limit,
            limits.requests_reset_ms,
        ),
        part(
            "tokens",
            limits.tokens_remaining,
            limits.tokens_limit,
            limits.tokens_reset_ms,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut spans = vec![muted(app, " rate limits: ")];
    for (i, (text, low)) in parts.into_iter().enumerate() {
        if i > 0 {
            spans.push(muted(app, " · "));
        }
        let role = if low { Role::Warning } else { Role::Muted };
        spans.push(Span::styled(text, theme.fg(role)));
    }
    spans.push(Span::raw(" "));
    Line::from(spans)
}

/// The screen rows of one stream line at `width`.
fn line_rows<'a>(line: &'a StreamLine, width: usize, theme: &Theme, app: &App) -> Vec<Line<'a>> {
    if line.kind == LineKind::Text {
        let style = theme.fg(Role::StreamText);
        return wrap(&line.text, width)
            .into_iter()
            .map(|(a, b)| Line::styled(&line.text[a..b], style))
            .collect();
    }
    let time = format!("{} ", format::clock_ms(app.started_at(), line.at_us));
    let (symbol, role) = match line.kind {
        LineKind::Request => ("▶ ", Role::RequestMarker),
        LineKind::Done => ("✓ ", Role::Connected),
        LineKind::Failed => ("✗ ", Role::Error),
        LineKind::Connection => ("● ", Role::Connected),
        LineKind::Dropped => ("↯ ", Role::Error),
        LineKind::Notice | LineKind::Text => ("• ", Role::Warning),
    };
    let used = time.chars().count() + 2;
    let room = width.saturating_sub(used);
    let mut text = format::fit(&line.text, room);
    let mut text_style = theme.fg(role);
    if line.kind == LineKind::Done {
        text_style = theme.fg(Role::Muted);
    }
    if line.kind == LineKind::Request {
        // A rule to the edge marks where a request begins.
        let fill = room.saturating_sub(text.chars().count() + 1);
        text.push(' ');
        text.push_str(&"─".repeat(fill));
        text_style = text_style.add_modifier(Modifier::BOLD);
    }
    vec![Line::from(vec![
        Span::styled(time, theme.fg(Role::Muted)),
        Span::styled(symbol, theme.fg(role)),
        Span::styled(text, text_style),
    ])]
}
