//! The alerts pane (`a`): what is firing and pending with the values that made them, the
//! error budgets the burn-rate rules watch, the last notices, and deliveries that failed.
//! Builds only the lines that fit.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use relaytop_core::alert::{Active, Severity, Transition};

use super::{Chrome, muted};
use crate::app::App;
use crate::format;
use crate::theme::Role;

fn severity_role(severity: Severity) -> Role {
    match severity {
        Severity::Critical => Role::Error,
        Severity::Warning => Role::Warning,
        Severity::Info => Role::KeyHint,
    }
}

fn active_line<'a>(app: &App, a: &'a Active) -> Line<'a> {
    let theme = app.theme();
    let (mark, role) = if a.state == "firing" {
        ("● FIRING ", severity_role(a.severity))
    } else {
        ("○ pending", Role::Muted)
    };
    Line::from(vec![
        Span::styled(
            format!(" {mark} "),
            theme.fg(role).add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            format!("{:<8} ", a.severity.label()),
            theme.fg(severity_role(a.severity)),
        ),
        Span::styled(
            a.alert.as_str(),
            theme.fg(Role::Title).add_modifier(Modifier::BOLD),
        ),
        Span::styled(format!("  {}  ", a.scope), theme.fg(Role::Header)),
        Span::raw(a.summary.as_str()),
        muted(
            app,
            format!("  since {}", format::clock(app.started_at(), a.since_us)),
        ),
    ])
}

pub fn render(frame: &mut Frame, area: Rect, chrome: Chrome, app: &App) {
    let theme = app.theme();
    let Some(view) = app.alerts() else {
        let block = chrome.block(app, vec![muted(app, "no rules")], None);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(
            Paragraph::new(Line::from(muted(
                app,
                "no [[alerts]] in the configuration: see docs/ALERTS.md and docs/examples/alerts.toml",
            ))),
            inner,
        );
        return;
    };
    let details = vec![muted(
        app,
        format!(
            "{} rules · {} firing · {} pending",
            view.rules,
            view.firing.len(),
            view.pending.len()
        ),
    )];
    let d = &view.deliveries;
    let right = Line::from(Span::styled(
        format!(
            " delivered {} · failed {} · queued {} ",
            d.sent, d.failed, d.pending
        ),
        theme.fg(if d.failed > 0 {
            Role::Error
        } else {
            Role::Muted
        }),
    ));
    let block = chrome.block(app, details, Some(right));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let mut lines: Vec<Line> = Vec::new();
    if view.firing.is_empty() && view.pending.is_empty() {
        lines.push(Line::from(Span::styled(
            " ✓ nothing firing or pending",
            theme.fg(Role::Connected),
        )));
    }
    for a in view.firing.iter().chain(&view.pending) {
        lines.push(active_line(app, a));
    }
    if !view.budgets.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::from(Span::styled(
            " Error budgets",
            theme.fg(Role::Header),
        )));
        for b in &view.budgets {
            let (text, role) = match b.left {
                Some(left) if left < 0.0 => {
                    (format!("{:.0} % (overspent)", left * 100.0), Role::Error)
                }
                Some(left) if left < 0.25 => (format!("{:.0} % left", left * 100.0), Role::Warning),
                Some(left) => (format!("{:.0} % left", left * 100.0), Role::Connected),
                None => ("untouched (no requests yet)".to_owned(), Role::Muted),
            };
            lines.push(Line::from(vec![
                Span::raw(format!("   {:<24} ", b.scope.to_string())),
                muted(app, format!("{} % good  ", b.objective * 100.0)),
                Span::styled(text, theme.fg(role)),
            ]));
        }
    }
    if !d.failures.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::from(Span::styled(
            " Failed deliveries",
            theme.fg(Role::Error),
        )));
        for f in d.failures.iter().rev() {
            lines.push(Line::from(vec![
                Span::raw(format!("   {} ", f.receiver)),
                Span::styled(
                    f.status
                        .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}")),
                    theme.fg(Role::Error),
                ),
                muted(app, format!("  {}: {}", f.alert, f.reason)),
            ]));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(Span::styled(" Recent", theme.fg(Role::Header))));
    if view.recent.is_empty() {
        lines.push(Line::from(muted(app, "   nothing said yet")));
    }
    for n in &view.recent {
        if lines.len() >= usize::from(inner.height) {
            break;
        }
        let role = match n.transition {
            Transition::Resolved => Role::Connected,
            _ => severity_role(n.severity),
        };
        lines.push(Line::from(vec![
            muted(
                app,
                format!("   {} ", format::clock(app.started_at(), n.at_us)),
            ),
            Span::styled(format!("{:<12} ", n.transition.label()), theme.fg(role)),
            Span::raw(n.text.as_str()),
        ]));
    }
    lines.truncate(usize::from(inner.height));
    frame.render_widget(Paragraph::new(lines), inner);
}
