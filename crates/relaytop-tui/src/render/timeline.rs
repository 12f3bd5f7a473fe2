//! The replay's timeline bar (above the status bar, replays only): playing or paused, the
//! speed, the position and the end, a track with the markers as ticks and the play head, the
//! idle limit, where a damaged recording stopped and how many malformed lines were skipped,
//! and the replay keys when there is room.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::App;
use crate::keys::Action;
use crate::replay::ReplayView;
use crate::theme::Role;

/// The narrowest track drawn.
const MIN_TRACK: usize = 10;

/// A position: `0:42.3`, `1:02:03.4`.
pub fn position(us: u64) -> String {
    let tenths = us / 100_000;
    let s = tenths / 10;
    let (h, m, sec, t) = (s / 3600, s / 60 % 60, s % 60, tenths % 10);
    if h > 0 {
        format!("{h}:{m:02}:{sec:02}.{t}")
    } else {
        format!("{m}:{sec:02}.{t}")
    }
}

/// The track: `━━━━●────┃───`, `width` cells, markers as ticks, the play head at `position`.
pub fn track(view: &ReplayView, width: usize) -> Vec<char> {
    let mut cells = vec!['─'; width];
    if width == 0 {
        return cells;
    }
    let end = view.end_us.max(1);
    let cell = |t: u64| -> usize {
        let x = (u128::from(t.min(end)) * (width as u128 - 1) / u128::from(end)) as usize;
        x.min(width - 1)
    };
    let head = cell(view.position_us);
    for c in cells.iter_mut().take(head) {
        *c = '━';
    }
    for m in &view.markers {
        cells[cell(*m)] = '┃';
    }
    cells[head] = '●';
    cells
}

/// What went wrong reading the recording, for people (empty when nothing did).
pub fn problems(view: &ReplayView) -> Vec<String> {
    let mut out = Vec::new();
    for t in &view.torn {
        out.push(format!("cut short: stopped at {t}"));
    }
    if view.malformed > 0 {
        out.push(format!(
            "{} malformed line{} skipped",
            view.malformed,
            if view.malformed == 1 { "" } else { "s" }
        ));
    }
    if view.read_errors > 0 {
        out.push(format!(
            "{} file{} could not be read to the end",
            view.read_errors,
            if view.read_errors == 1 { "" } else { "s" }
        ));
    }
    out
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, view: &ReplayView) {
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
    let soft = |role: Role| -> Style {
        if theme.is_no_color() {
            bar
        } else {
            bar.fg(theme.color(role))
        }
    };
    let (state, role) = if view.at_end {
        ("■ end", Role::Closed)
    } else if view.paused {
        ("‖ paused", Role::Frozen)
    } else {
        ("▶ playing", Role::Connected)
    };
    let mut left = vec![
        Span::styled(format!(" {state} "), strong(role)),
        Span::styled(format!("{} ", view.speed.label()), strong(Role::Title)),
        Span::styled(
            format!("{} ", position(view.position_us)),
            strong(Role::Title),
        ),
    ];
    let end = Span::styled(format!(" {}", position(view.end_us)), bar);
    let mut extras: Vec<Span> = Vec::new();
    if let Some(limit) = view.idle_limit {
        extras.push(Span::styled(
            format!("  idle ≤{}", humantime::format_duration(limit)),
            soft(Role::Muted),
        ));
    }
    let markers = if view.indexed {
        format!("  {} markers", view.marker_count)
    } else {
        format!("  {}+ markers (reading…)", view.marker_count)
    };
    extras.push(Span::styled(markers, soft(Role::Muted)));
    let problems = problems(view);
    let mut notice: Option<Span> = (!problems.is_empty()).then(|| {
        Span::styled(
            format!("  ⚠ {}", problems.join(" · ")),
            strong(Role::Warning),
        )
    });
    let keys = app.keys();
    let key = |a: Action| {
        keys.keys(a)
            .first()
            .map(|k| k.to_string())
            .unwrap_or_default()
    };
    let hints = format!(
        "  {} pause  {} step  {}{} speed  {}{} 10s  {}{} marker  {}/{} start/end ",
        key(Action::ReplayPause),
        key(Action::ReplayStep),
        key(Action::ReplaySlower),
        key(Action::ReplayFaster),
        key(Action::ReplayBack),
        key(Action::ReplayForward),
        key(Action::ReplayPreviousMarker),
        key(Action::ReplayNextMarker),
        key(Action::ReplayStart),
        key(Action::ReplayEnd),
    )
    .replace("Left", "←")
    .replace("Right", "→")
    .replace("Space", "␣");
    let mut hint = Some(Span::styled(hints, soft(Role::KeyHint)));

    let width = usize::from(area.width);
    let used = |left: &[Span], extras: &[Span], notice: &Option<Span>, hint: &Option<Span>| {
        left.iter().map(Span::width).sum::<usize>()
            + end.width()
            + extras.iter().map(Span::width).sum::<usize>()
            + notice.as_ref().map_or(0, Span::width)
            + hint.as_ref().map_or(0, Span::width)
    };
    // Room for the track: the hints go first, then the extras, then the notice shrinks.
    if used(&left, &extras, &notice, &hint) + MIN_TRACK > width {
        hint = None;
    }
    while used(&left, &extras, &notice, &hint) + MIN_TRACK > width && !extras.is_empty() {
        extras.pop();
    }
    if let Some(n) = &notice {
        let over = (used(&left, &extras, &notice, &hint) + MIN_TRACK).saturating_sub(width);
        if over > 0 {
            let keep = n.width().saturating_sub(over + 1);
            let text: String = n.content.chars().take(keep).collect();
            notice = Some(Span::styled(format!("{text}…"), n.style));
        }
    }
    while used(&left, &extras, &notice, &hint) + MIN_TRACK > width && left.len() > 1 {
        left.pop();
    }
    let track_width = width.saturating_sub(used(&left, &extras, &notice, &hint));
    let cells = track(view, track_width);
    let head = cells.iter().position(|c| *c == '●').unwrap_or(0);
    let played: String = cells[..head].iter().collect();
    let rest: String = cells[head.min(cells.len())..].iter().skip(1).collect();
    let mut spans = left;
    spans.push(Span::styled(played, soft(Role::Connected)));
    if !cells.is_empty() {
        spans.push(Span::styled("●", strong(Role::Title)));
    }
    spans.push(Span::styled(rest, soft(Role::Muted)));
    spans.push(end);
    spans.extend(extras);
    spans.extend(notice);
    spans.extend(hint);
    frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaytop_core::record::Speed;

    fn view(position_us: u64, end_us: u64, markers: Vec<u64>) -> ReplayView {
        ReplayView {
            position_us,
            end_us,
            speed: Speed::Times(1.0),
            paused: false,
            at_end: false,
            idle_limit: None,
            marker_count: markers.len(),
            markers,
            indexed: true,
            torn: Vec::new(),
            malformed: 0,
            read_errors: 0,
        }
    }

    #[test]
    fn positions_read_like_a_clock() {
        assert_eq!(position(0), "0:00.0");
        assert_eq!(position(42_340_000), "0:42.3");
        assert_eq!(position(3_723_400_000), "1:02:03.4");
    }

    #[test]
    fn the_track_shows_markers_and_the_head() {
        let t: String = track(&view(5_000_000, 10_000_000, vec![9_000_000]), 11)
            .into_iter()
            .collect();
        assert_eq!(t, "━━━━━●───┃─");
        let t: String = track(&view(0, 0, vec![]), 3).into_iter().collect();
        assert_eq!(t, "●──");
    }

    #[test]
    fn problems_say_where_reading_stopped() {
        let mut v = view(0, 1, vec![]);
        v.torn = vec!["a.jsonl line 9 (byte 812)".into()];
        v.malformed = 2;
        assert_eq!(
            problems(&v),
            [
                "cut short: stopped at a.jsonl line 9 (byte 812)",
                "2 malformed lines skipped"
            ]
        );
    }
}
