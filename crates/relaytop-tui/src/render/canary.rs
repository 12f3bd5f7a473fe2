//! The canary pane: the rollout's stage (n of N, its percentage), the traffic split, time left
//! in the stage and to the next check, each metric against its threshold with its samples and
//! status, failed checks and consecutive failures against their limits, the last checks, and a
//! banner when the rollout is paused, rolled back or promoted.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::{Chrome, muted};
use crate::app::App;
use crate::format;
use crate::theme::Role;
use relaytop_core::canary::controller::{Reading, ReadingStatus, Verdict};
use relaytop_core::canary::plan::{Metric, Role as Side, human, trim_float};
use relaytop_core::canary::{BannerKind, CanaryView, Phase};

/// A metric's value (or threshold) as people read it: `1.2 %`, `850 ms`.
fn amount(metric: Metric, value: f64) -> String {
    match metric {
        Metric::ErrorRate => format!("{} %", trim_float((value * 1000.0).round() / 10.0)),
        Metric::P50Latency | Metric::P99Latency => format!("{} ms", value.round()),
    }
}

fn status_text(reading: &Reading) -> (&'static str, Role) {
    match reading.status {
        ReadingStatus::Ok => ("ok", Role::Connected),
        ReadingStatus::Breached => ("over", Role::Warning),
        ReadingStatus::RollbackBreached => ("ROLLBACK", Role::Error),
        ReadingStatus::Collecting => ("collecting", Role::Muted),
        ReadingStatus::Shown => ("shown", Role::Muted),
    }
}

fn verdict_style(verdict: Verdict) -> (&'static str, Role) {
    match verdict {
        Verdict::Passed => ("✓ passed", Role::Connected),
        Verdict::Failed => ("✗ failed", Role::Warning),
        Verdict::Inconclusive => ("? inconclusive", Role::Muted),
        Verdict::RolledBack => ("✗ rolled back", Role::Error),
    }
}

/// `n / limit`, coloured once `n` reaches the limit.
fn against<'a>(app: &App, label: &'a str, n: u32, limit: Option<u32>) -> Vec<Span<'a>> {
    let theme = app.theme();
    let near = limit.is_some_and(|l| l > 0 && n + 1 >= l);
    let role = if limit.is_some_and(|l| n >= l) {
        Role::Error
    } else if near && n > 0 {
        Role::Warning
    } else {
        Role::Foreground
    };
    let limit = limit.map_or_else(|| "–".to_owned(), |l| l.to_string());
    vec![
        muted(app, format!("{label} ")),
        Span::styled(
            format!("{n}/{limit}"),
            theme.fg(role).add_modifier(Modifier::BOLD),
        ),
    ]
}

pub fn render(frame: &mut Frame, area: Rect, chrome: Chrome, app: &App) {
    let theme = app.theme();
    let Some(view) = app.canary() else {
        let block = chrome.block(app, Vec::new(), None);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(Paragraph::new(muted(app, "no canary in this run")), inner);
        return;
    };
    let phase_role = match view.phase {
        Phase::Running => Role::Connected,
        Phase::Paused { .. } => Role::Warning,
        Phase::RolledBack { .. } => Role::Error,
        Phase::Promoted { .. } => Role::Connected,
    };
    let details = vec![
        Span::styled(
            format!("{} → {}", view.baseline, view.canary),
            theme.fg(Role::Title),
        ),
        muted(app, " · "),
        Span::styled(
            view.phase.label(),
            theme.fg(phase_role).add_modifier(Modifier::BOLD),
        ),
    ];
    let right = Line::from(muted(
        app,
        format!(
            " canary time {} (×{}) ",
            human(view.elapsed),
            trim_float(view.time_scale)
        ),
    ));
    let block = chrome.block(app, details, Some(right));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width < 20 {
        return;
    }
    let width = usize::from(inner.width);
    let mut top: Vec<Line> = Vec::new();

    if let Some(banner) = &view.banner {
        let (mark, role) = match banner.kind {
            BannerKind::RolledBack => ("⚠", Role::Error),
            BannerKind::Promoted => ("✓", Role::Connected),
            BannerKind::Paused => ("‖", Role::Warning),
        };
        // The driver's banner text starts with what happened ("ROLLED BACK: ...").
        let text = format::fit(&format!(" {mark} {} ", banner.text), width);
        let style = if theme.is_no_color() {
            Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        } else {
            theme
                .fg(role)
                .add_modifier(Modifier::BOLD | Modifier::REVERSED)
        };
        top.push(Line::from(Span::styled(format!("{text:<width$}"), style)));
    }

    // Stage n of N, its percentage, and a bar of the stages.
    let percent = view
        .stage_plan
        .get(view.stage.saturating_sub(1))
        .map_or(0, |(p, _)| *p);
    let mut stage = vec![
        muted(app, "stage "),
        Span::styled(
            format!("{} of {}", view.stage, view.stages),
            theme.fg(Role::Title).add_modifier(Modifier::BOLD),
        ),
        muted(app, " at "),
        Span::styled(
            format!("{percent} %"),
            theme.fg(Role::Foreground).add_modifier(Modifier::BOLD),
        ),
        muted(app, "  "),
    ];
    for (i, (p, _)) in view.stage_plan.iter().enumerate() {
        let n = i + 1;
        let role = if n < view.stage {
            Role::Connected
        } else if n == view.stage {
            phase_role
        } else {
            Role::Muted
        };
        let mut style = theme.fg(role);
        if n == view.stage {
            style = style.add_modifier(Modifier::BOLD | Modifier::REVERSED);
        }
        stage.push(Span::styled(format!(" {p}% "), style));
        stage.push(Span::raw(" "));
    }
    top.push(Line::from(stage));

    // The split now, with each side's traffic.
    let name_width = view
        .providers
        .iter()
        .map(|p| p.provider.chars().count())
        .max()
        .unwrap_or(0);
    for p in &view.providers {
        let (side, role) = match p.role {
            Side::Baseline => ("baseline", Role::Foreground),
            Side::Canary => ("canary", Role::Streaming),
        };
        top.push(Line::from(vec![
            Span::styled(
                format!("{:<name_width$} ", p.provider),
                theme.fg(Role::Title),
            ),
            muted(app, format!("{side:<8} ")),
            Span::styled(
                format!("{:>3} %", p.weight),
                theme.fg(role).add_modifier(Modifier::BOLD),
            ),
            muted(
                app,
                format!(
                    "  pool {}/{} · sent {} · ok {} · failed {} · 429 {}",
                    p.pool_up,
                    p.pool_size,
                    format::thousands(p.sent),
                    format::thousands(p.ok),
                    format::thousands(p.failed),
                    format::thousands(p.rate_limited),
                ),
            ),
        ]));
    }
    if view.providers.is_empty() {
        let weights: Vec<String> = view
            .weights
            .iter()
            .map(|(provider, weight)| format!("{provider} {weight} %"))
            .collect();
        top.push(Line::from(muted(
            app,
            format!("weights {}", weights.join(" · ")),
        )));
    }

    // Time left in the stage and to the next check.
    let mut times = vec![muted(app, "stage ")];
    times.push(Span::styled(
        human(view.stage_elapsed),
        theme.fg(Role::Foreground),
    ));
    times.push(muted(app, " in"));
    if let Some(left) = view.stage_time_left {
        times.push(muted(app, ", "));
        times.push(Span::styled(
            human(left),
            theme.fg(Role::Foreground).add_modifier(Modifier::BOLD),
        ));
        times.push(muted(app, " left"));
    }
    if let Some(next) = view.next_check_in {
        let first = view.checks.passed + view.checks.failed + view.checks.inconclusive == 0;
        times.push(muted(
            app,
            if first {
                " · first check (window filling) in "
            } else {
                " · next check in "
            },
        ));
        times.push(Span::styled(
            human(next),
            theme.fg(Role::Foreground).add_modifier(Modifier::BOLD),
        ));
    }
    times.push(muted(
        app,
        format!(
            " · window {}, every {}",
            human(view.window),
            human(view.interval)
        ),
    ));
    top.push(Line::from(times));

    // Failed checks and consecutive failures against their limits.
    let mut counts = against(
        app,
        "failed checks",
        view.failed_checks,
        Some(view.failed_checks_threshold),
    );
    counts.push(muted(app, "   "));
    counts.extend(against(
        app,
        "consecutive failures",
        view.consecutive_failures,
        view.consecutive_failures_limit,
    ));
    counts.push(muted(
        app,
        format!(
            "   checks {} ✓ {} ✗ {} ?",
            view.checks.passed, view.checks.failed, view.checks.inconclusive
        ),
    ));
    top.push(Line::from(counts));

    let mut y = inner.y;
    let top_rows = (top.len() as u16).min(inner.height);
    frame.render_widget(
        Paragraph::new(top),
        Rect::new(inner.x, y, inner.width, top_rows),
    );
    y += top_rows;

    // Each metric against its threshold.
    let room = inner.bottom().saturating_sub(y);
    if room >= 2 && !view.readings.is_empty() {
        let header_style = theme.fg(Role::Header).add_modifier(Modifier::BOLD);
        let right =
            |text: String, style: Style| Cell::from(Line::styled(text, style).right_aligned());
        let header = Row::new(vec![
            Cell::from(Span::styled("metric", header_style)),
            right("now".into(), header_style),
            right("threshold".into(), header_style),
            right("rollback".into(), header_style),
            right("n/min".into(), header_style),
            Cell::from(Span::styled("status", header_style)),
        ]);
        let rows: Vec<Row> = view
            .readings
            .iter()
            .map(|r| {
                let (status, role) = status_text(r);
                let value = r
                    .value
                    .map_or_else(|| "–".to_owned(), |v| amount(r.metric, v));
                let threshold = r
                    .threshold
                    .map_or_else(|| "–".to_owned(), |t| format!("≤ {}", amount(r.metric, t)));
                let rollback = r
                    .rollback_at
                    .map_or_else(|| "–".to_owned(), |t| amount(r.metric, t));
                let samples = if r.min_samples > 0 {
                    format!("{}/{}", r.samples, r.min_samples)
                } else {
                    r.samples.to_string()
                };
                let value_role = match r.status {
                    ReadingStatus::Breached => Role::Warning,
                    ReadingStatus::RollbackBreached => Role::Error,
                    _ => Role::Foreground,
                };
                Row::new(vec![
                    Cell::from(Span::styled(r.metric.label(), theme.fg(Role::Title))),
                    right(value, theme.fg(value_role).add_modifier(Modifier::BOLD)),
                    right(threshold, theme.fg(Role::Foreground)),
                    right(rollback, theme.fg(Role::Muted)),
                    right(samples, theme.fg(Role::Muted)),
                    Cell::from(Span::styled(
                        status,
                        theme.fg(role).add_modifier(Modifier::BOLD),
                    )),
                ])
            })
            .collect();
        let widths = [
            Constraint::Length(12),
            Constraint::Length(9),
            Constraint::Length(11),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Min(8),
        ];
        let height = (rows.len() as u16 + 1).min(room);
        frame.render_widget(
            Table::new(rows, widths).header(header).column_spacing(1),
            Rect::new(inner.x, y, inner.width, height),
        );
        y += height;
        // Where a relative threshold came from.
        let bases: Vec<String> = view
            .readings
            .iter()
            .filter_map(|r| Some(format!("{}: {}", r.metric.label(), r.basis.as_ref()?)))
            .collect();
        if !bases.is_empty() && y < inner.bottom() {
            frame.render_widget(
                Paragraph::new(muted(app, format::fit(&bases.join(" · "), width))),
                Rect::new(inner.x, y, inner.width, 1),
            );
            y += 1;
        }
    }

    // The last checks, newest last, as many as fit; on one line when only one fits.
    let room = inner.bottom().saturating_sub(y);
    if room == 1 && !view.history.is_empty() {
        let fit = width.saturating_sub(12) / 2;
        let skip = view.history.len().saturating_sub(fit);
        let mut spans = vec![muted(app, "last checks")];
        for check in &view.history[skip..] {
            let (verdict, role) = verdict_style(check.verdict);
            let glyph: String = verdict.chars().take(1).collect();
            spans.push(Span::styled(
                format!(" {glyph}"),
                theme.fg(role).add_modifier(Modifier::BOLD),
            ));
        }
        frame.render_widget(
            Paragraph::new(Line::from(spans)),
            Rect::new(inner.x, y, inner.width, 1),
        );
    } else if room >= 2 && !view.history.is_empty() {
        let shown = usize::from(room - 1);
        let mut lines = vec![Line::from(Span::styled(
            "last checks",
            theme.fg(Role::Header).add_modifier(Modifier::BOLD),
        ))];
        let skip = view.history.len().saturating_sub(shown);
        for check in &view.history[skip..] {
            let (verdict, role) = verdict_style(check.verdict);
            let head = format!(
                "{:>8}  stage {} {:>3} %  ",
                human(check.at),
                check.stage,
                check.percentage
            );
            let used = head.chars().count() + 16;
            lines.push(Line::from(vec![
                muted(app, head),
                Span::styled(
                    format!("{verdict:<16}"),
                    theme.fg(role).add_modifier(Modifier::BOLD),
                ),
                Span::styled(
                    format::fit(&check.note, width.saturating_sub(used)),
                    theme.fg(Role::Foreground),
                ),
            ]));
        }
        frame.render_widget(
            Paragraph::new(lines),
            Rect::new(inner.x, y, inner.width, room),
        );
    }
}

/// The canary's state in a few words, for the status bar.
pub fn summary(view: &CanaryView) -> String {
    let percent = view
        .weights
        .iter()
        .find(|(p, _)| *p == view.canary)
        .map_or(0, |(_, w)| *w);
    format!(
        "canary {} {percent} % · stage {}/{}",
        view.phase.label(),
        view.stage,
        view.stages
    )
}
