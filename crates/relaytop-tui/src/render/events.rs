//! The event log pane: time-stamped connects, drops with close codes, backoffs, 401s, 429s,
//! missed heartbeats and stops, newest at the bottom, filtered by `/` when focused. Walks up
//! from the bottom entry and builds only the lines that fit.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{Chrome, muted};
use crate::app::App;
use crate::format;
use crate::keys::Action;
use crate::log::Category;
use crate::theme::Role;

/// The colour of a category.
pub fn category_role(category: Category) -> Role {
    match category {
        Category::Connect => Role::Connected,
        Category::Close => Role::Closed,
        Category::Drop => Role::Error,
        Category::Backoff => Role::BackingOff,
        Category::Auth => Role::Error,
        Category::RateLimit => Role::Warning,
        Category::Error | Category::Failed => Role::Error,
        Category::Heartbeat => Role::HeartbeatLate,
        Category::Stopped => Role::Stopped,
        Category::Frame => Role::Warning,
        Category::Note => Role::KeyHint,
    }
}

pub fn render(frame: &mut Frame, area: Rect, chrome: Chrome, app: &App) {
    let theme = app.theme();
    let data = app.shown();
    let log = &data.log;
    let words = App::filter_words(&app.event_filter);

    let mut details = vec![muted(
        app,
        format!("{} kept", format::thousands(log.len() as u64)),
    )];
    if !app.event_filter.is_empty() {
        details.push(muted(app, " · filter "));
        details.push(Span::styled(
            app.event_filter.clone(),
            theme.fg(Role::Filter),
        ));
    }
    let right = if app.events_scroll.follow {
        Line::from(muted(app, " following "))
    } else {
        Line::from(vec![
            Span::styled(" paused · ", theme.fg(Role::Warning)),
            Span::styled(
                format!("{} follows ", app.keys().keys_label(Action::Bottom)),
                theme.fg(Role::KeyHint),
            ),
        ])
    };
    let block = chrome.block(app, details, Some(right));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    if log.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::from(muted(
                app,
                "nothing yet: connects, drops, backoffs and errors appear here",
            ))),
            inner,
        );
        return;
    }

    let width = usize::from(inner.width);
    let with_ms = width >= 70;
    let name_width = usize::from(app.label_widths[0]).clamp(6, (width * 2 / 9).max(6));
    let height = usize::from(inner.height);
    let bottom = if app.events_scroll.follow {
        log.end_seq() - 1
    } else {
        app.events_scroll
            .bottom
            .clamp(log.first_seq(), log.end_seq() - 1)
    };
    let mut lines: Vec<Line> = Vec::with_capacity(height);
    let mut seq = bottom + 1;
    while lines.len() < height && seq > log.first_seq() {
        seq -= 1;
        let Some(entry) = log.get(seq) else {
            break;
        };
        if !entry.matches(&words) {
            continue;
        }
        let time = if with_ms {
            format::clock_ms(app.started_at(), entry.at_us)
        } else {
            format::clock(app.started_at(), entry.at_us)
        };
        let name = data.metrics.session(entry.session).map_or(
            if entry.session == crate::log::ALL_SESSIONS {
                "all"
            } else {
                "?"
            },
            |s| s.info().name.as_str(),
        );
        let name = format::fit(name, name_width);
        let label = entry.category.label();
        let used = time.chars().count() + 1 + name_width + 1 + 9 + 1;
        let text = format::fit(&entry.text, width.saturating_sub(used));
        let role = category_role(entry.category);
        lines.push(Line::from(vec![
            Span::styled(time, theme.fg(Role::Muted)),
            Span::raw(" "),
            Span::styled(format!("{name:<name_width$}"), theme.fg(Role::Foreground)),
            Span::raw(" "),
            Span::styled(format!("{label:<9}"), theme.fg(role)),
            Span::raw(" "),
            Span::styled(
                text,
                theme.fg(if role == Role::Connected {
                    Role::Foreground
                } else {
                    role
                }),
            ),
        ]));
    }
    if lines.is_empty() {
        let text = format!(
            "no event matches “{}” (Esc clears the filter)",
            app.event_filter
        );
        frame.render_widget(Paragraph::new(Line::from(muted(app, text))), inner);
        return;
    }
    lines.reverse();
    frame.render_widget(Paragraph::new(lines), inner);
}
