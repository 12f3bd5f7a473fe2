//! The health pane: per provider, time to first token and heartbeat round trip over the
//! selected window (sparklines on one shared scale per metric, so providers compare at a
//! glance), p50/p90/p99 with sample counts, error and drop rates. Buckets where heartbeats
//! went unanswered are drawn as `×` in the heartbeat_late colour.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{Chrome, muted};
use crate::app::{App, window_name};
use crate::format;
use crate::theme::Role;
use relaytop_core::metrics::{
    LatencyMetric, ProviderStats, Quantiles, Rates, SeriesMetric, SeriesPoint, Window,
    tokens_per_second,
};

const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Width of the row labels (` ttft  `, ` hb rtt `); sparklines start after it.
const LABEL: usize = 8;

/// One sparkline column: the samples of one or more buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Column {
    pub count: u64,
    pub mean_us: u64,
    pub missed: u64,
}

/// Fits `points` (oldest first) into `width` columns, newest at the right: several points a
/// column when there are more points than columns; each point several columns wide when a
/// window of `nominal` points (60 for a minute of seconds) leaves room to spare.
pub fn columns(points: &[SeriesPoint], width: usize, nominal: usize) -> Vec<Column> {
    if width == 0 || points.is_empty() {
        return Vec::new();
    }
    let per = points.len().div_ceil(width);
    // Align groups to the newest point so the rightmost column is always "now".
    let mut out: Vec<Column> = points
        .rchunks(per)
        .map(|group| {
            let count: u64 = group.iter().map(|p| p.count).sum();
            let sum: u128 = group
                .iter()
                .map(|p| u128::from(p.mean_us) * u128::from(p.count))
                .sum();
            Column {
                count,
                mean_us: if count == 0 {
                    0
                } else {
                    u64::try_from(sum / u128::from(count)).unwrap_or(u64::MAX)
                },
                missed: group.iter().map(|p| p.missed).sum(),
            }
        })
        .collect();
    out.reverse();
    let stretch = width / nominal.max(points.len()).max(1);
    if per == 1 && stretch > 1 {
        out = out
            .into_iter()
            .flat_map(|c| std::iter::repeat_n(c, stretch))
            .collect();
    }
    out
}

/// A sparkline of `height` rows (top row first), scaled so that `scale_us` fills it.
fn sparkline<'a>(
    cols: &[Column],
    width: usize,
    height: usize,
    scale_us: u64,
    bar: Style,
    late: Style,
) -> Vec<Vec<Span<'a>>> {
    let levels = (height * 8) as u64;
    let pad = width.saturating_sub(cols.len());
    (0..height)
        .map(|row_from_top| {
            let row = (height - 1 - row_from_top) as u64; // 0 = bottom row
            let mut spans = Vec::with_capacity(2);
            let mut text = String::with_capacity(width * 3);
            text.extend(std::iter::repeat_n(' ', pad));
            let mut current = bar;
            let flush = |spans: &mut Vec<Span<'a>>, text: &mut String, style: Style| {
                if !text.is_empty() {
                    spans.push(Span::styled(std::mem::take(text), style));
                }
            };
            for c in cols {
                let (ch, style) = if c.missed > 0 && c.count == 0 {
                    (if row == 0 { '×' } else { ' ' }, late)
                } else if c.count == 0 {
                    (' ', bar)
                } else {
                    let level = if scale_us == 0 {
                        levels
                    } else {
                        ((u128::from(c.mean_us) * u128::from(levels)).div_ceil(u128::from(scale_us))
                            as u64)
                            .clamp(1, levels)
                    };
                    let in_row = level.saturating_sub(row * 8).min(8) as usize;
                    let style = if c.missed > 0 { late } else { bar };
                    let ch = if c.missed > 0 && row == height as u64 - 1 && in_row == 0 {
                        '×'
                    } else {
                        BARS[in_row]
                    };
                    (ch, style)
                };
                if style != current {
                    flush(&mut spans, &mut text, current);
                    current = style;
                }
                text.push(ch);
            }
            flush(&mut spans, &mut text, current);
            spans
        })
        .collect()
}

/// Completed responses a second: `0.4`, `15`.
fn resp_per_sec(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

/// The goodput's colour: a warning below the provider's objective.
fn good_style(app: &App, p: &ProviderStats, rates: &Rates) -> ratatui::style::Style {
    let theme = app.theme();
    let finished = rates.responses + rates.cut + rates.failed;
    if finished > 0 && rates.good_rate < app.shown().metrics.slos().of(p.name()).objective {
        theme.fg(Role::Warning)
    } else {
        theme.fg(Role::Connected)
    }
}

/// What people who serve models read, for one provider: output speed (the median and the
/// slow p99), inter-token latency p99 and the longest stall; then the drops as people can
/// compare them: per 100 responses, and the mean connection time between two.
fn serving_lines<'a>(
    app: &App,
    p: &ProviderStats,
    rates: &Rates,
    window: Window,
    now: u64,
) -> [Line<'a>; 2] {
    let theme = app.theme();
    let label = |text: &str| {
        Span::styled(
            format!(" {:<w$}", text, w = LABEL - 1),
            theme.fg(Role::Muted),
        )
    };
    let tpot = p.latency(LatencyMetric::TimePerOutputToken, window, now);
    let itl = p.latency(LatencyMetric::InterTokenLatency, window, now);
    let stall = p.latency(LatencyMetric::LongestStall, window, now);
    let speed = if tpot.count == 0 && itl.count == 0 {
        Line::from(vec![
            label("speed"),
            muted(app, "no streamed responses yet"),
        ])
    } else {
        let tps = |us: u64| format!("{:.0}", tokens_per_second(us));
        Line::from(vec![
            label("speed"),
            Span::styled(
                format!("{} tok/s", tps(tpot.p50)),
                theme.fg(Role::Foreground).add_modifier(Modifier::BOLD),
            ),
            muted(app, format!(" (p99 {})", tps(tpot.p99))),
            muted(app, " · itl p99 "),
            Span::styled(format::latency(itl.p99), theme.fg(Role::Foreground)),
            muted(app, " · stall "),
            Span::styled(
                format::latency(stall.max),
                if stall.max >= STALL_WARN_US {
                    theme.fg(Role::Warning)
                } else {
                    theme.fg(Role::Foreground)
                },
            ),
        ])
    };
    let mut drops = vec![label("drops")];
    if rates.drops == 0 {
        drops.push(muted(app, "none"));
    } else {
        drops.push(Span::styled(
            format!("{:.1} per 100 responses", rates.drops_per_100_responses),
            theme.fg(Role::Warning),
        ));
        if let Some(hours) = rates.connection_hours_per_drop {
            let between = if hours >= 1.0 {
                format!("{hours:.1} conn-h")
            } else {
                format!("{:.0} conn-min", (hours * 60.0).max(1.0))
            };
            drops.push(muted(app, format!(" · 1 per {between}")));
        }
    }
    [speed, Line::from(drops)]
}

/// Where a response's time goes, by the means: to the first token, then generating, as a
/// two-part bar after the time-to-first-token figures.
fn generation_spans<'a>(app: &App, p: &ProviderStats, window: Window, now: u64) -> Vec<Span<'a>> {
    let theme = app.theme();
    let ttft = p.latency(LatencyMetric::TimeToFirstToken, window, now);
    let e2e = p.latency(LatencyMetric::ResponseTime, window, now);
    if e2e.mean == 0 {
        return Vec::new();
    }
    let first = ttft.mean.min(e2e.mean);
    let width = 6usize;
    let head = (((first as f64 / e2e.mean as f64) * width as f64).round() as usize).min(width);
    vec![
        muted(app, " "),
        Span::styled("▆".repeat(head), theme.fg(Role::TtftLine)),
        Span::styled("▆".repeat(width - head), theme.fg(Role::RttLine)),
        muted(app, format!(" gen {}", format::latency(e2e.mean - first))),
    ]
}

/// A stall this long is marked (in the Health pane and the stream pane).
pub const STALL_WARN_US: u64 = 2_000_000;

fn quantile_text(q: &Quantiles) -> String {
    if q.count == 0 {
        return "no samples yet".to_string();
    }
    format!(
        "p50 {} p90 {} p99 {} ms ({})",
        format::latency_ms(q.p50),
        format::latency_ms(q.p90),
        format::latency_ms(q.p99),
        format::compact(q.count)
    )
}

/// The largest column mean over every provider's series (the shared scale).
fn scale(series: &[(Vec<Column>, u64)]) -> u64 {
    series
        .iter()
        .flat_map(|(columns, _)| columns)
        .map(|c| c.mean_us)
        .max()
        .unwrap_or(0)
}

pub fn render(frame: &mut Frame, area: Rect, chrome: Chrome, app: &App) {
    let theme = app.theme();
    let data = app.shown();
    let now = app.now_us();
    let window = app.window;
    let bucket = match window {
        Window::Run => "minute",
        _ => "second",
    };
    let right = Line::from(muted(app, format!(" bars: mean a {bucket} ")));
    let block = chrome.block(app, vec![muted(app, window_name(window))], Some(right));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width < 20 {
        return;
    }
    let providers: Vec<&ProviderStats> = data
        .metrics
        .providers()
        .iter()
        .skip(app.health_offset)
        .collect();
    if providers.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::from(muted(app, "no providers"))),
            inner,
        );
        return;
    }
    let width = usize::from(inner.width);
    let height = usize::from(inner.height);
    // Per provider: its line, then per metric a line of figures and the sparkline's rows,
    // then a blank line; the tallest sparklines that let every provider fit.
    let n = providers.len();
    let spark_rows = (1..=3)
        .rev()
        .find(|r| n * (6 + 2 * r) < height)
        .unwrap_or(1);
    let spark_width = width.saturating_sub(LABEL);

    let nominal = match window {
        Window::OneMinute => 60,
        Window::FifteenMinutes => 900,
        Window::Run => 1,
    };
    let series = |metric: SeriesMetric| -> Vec<(Vec<Column>, u64)> {
        providers
            .iter()
            .map(|p| {
                let points = p.series(metric, window, now);
                let missed = points.iter().map(|p| p.missed).sum();
                (columns(&points, spark_width, nominal), missed)
            })
            .collect()
    };
    let ttft = series(SeriesMetric::TimeToFirstToken);
    let rtt = series(SeriesMetric::HeartbeatRtt);
    let (ttft_scale, rtt_scale) = (scale(&ttft), scale(&rtt));
    let late = theme.fg(Role::HeartbeatLate).add_modifier(Modifier::BOLD);

    let mut lines: Vec<Line> = Vec::new();
    for (i, p) in providers.iter().enumerate() {
        let rates = p.rates(window, now);
        let error_style = if rates.error_rate > 0.0 {
            theme.fg(Role::Error)
        } else {
            theme.fg(Role::Muted)
        };
        let up_role = if p.connections_up() < p.sessions() {
            Role::Warning
        } else {
            Role::Connected
        };
        lines.push(Line::from(vec![
            Span::styled(
                p.name().to_string(),
                theme.fg(Role::Title).add_modifier(Modifier::BOLD),
            ),
            Span::raw(" "),
            Span::styled(
                format!("{}/{} up", p.connections_up(), p.sessions()),
                theme.fg(up_role),
            ),
            muted(
                app,
                format!(" · {} resp/s · err ", resp_per_sec(rates.responses_per_sec)),
            ),
            Span::styled(format::percent(rates.error_rate), error_style),
            muted(app, " · cut "),
            Span::styled(
                format::percent(rates.cut_rate),
                if rates.cut > 0 {
                    theme.fg(Role::Warning)
                } else {
                    theme.fg(Role::Muted)
                },
            ),
            muted(app, " · good "),
            Span::styled(format::percent(rates.good_rate), good_style(app, p, &rates)),
        ]));
        lines.extend(serving_lines(app, p, &rates, window, now));
        let metrics = [
            (
                "ttft",
                &ttft[i].0,
                ttft_scale,
                LatencyMetric::TimeToFirstToken,
                Role::TtftLine,
                0,
            ),
            (
                "hb rtt",
                &rtt[i].0,
                rtt_scale,
                LatencyMetric::HeartbeatRtt,
                Role::RttLine,
                rtt[i].1,
            ),
        ];
        for (label, cols, scale_us, metric, role, missed) in metrics {
            let q = p.latency(metric, window, now);
            let mut figures = vec![
                Span::styled(format!(" {label:<w$}", w = LABEL - 1), theme.fg(role)),
                Span::styled(quantile_text(&q), theme.fg(Role::Foreground)),
            ];
            if missed > 0 {
                figures.push(Span::styled(format!(" · {missed} missed"), late));
            }
            if metric == LatencyMetric::TimeToFirstToken {
                figures.extend(generation_spans(app, p, window, now));
            }
            lines.push(Line::from(figures));
            for spans in sparkline(
                cols,
                spark_width,
                spark_rows,
                scale_us,
                theme.fg(role),
                late,
            ) {
                let mut line = vec![Span::raw(" ".repeat(LABEL))];
                line.extend(spans);
                lines.push(Line::from(line));
            }
        }
        lines.push(Line::default());
        if lines.len() >= height {
            break;
        }
    }
    if lines.len() < height {
        let full = |scale_us: u64| {
            if scale_us == 0 {
                "—".to_string()
            } else {
                format::latency(scale_us)
            }
        };
        lines.push(Line::from(vec![
            muted(app, " full bar: ttft "),
            muted(app, full(ttft_scale)),
            muted(app, ", hb rtt "),
            muted(app, full(rtt_scale)),
            muted(app, " · "),
            Span::styled("×", late),
            muted(app, " heartbeat missed"),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(count: u64, mean_us: u64, missed: u64) -> SeriesPoint {
        SeriesPoint {
            start_us: 0,
            count,
            mean_us,
            max_us: mean_us,
            missed,
        }
    }

    #[test]
    fn columns_group_from_the_newest_point() {
        let points: Vec<SeriesPoint> = (1..=5).map(|i| point(1, i * 100, 0)).collect();
        let cols = columns(&points, 2, 5);
        // Groups of 3 from the right: [3,4,5] and [1,2].
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[1].mean_us, 400);
        assert_eq!(cols[0].mean_us, 150);
        assert_eq!(
            columns(&points, 10, 60).len(),
            5,
            "early in a minute: no stretching"
        );
        let wide = columns(&points, 10, 5);
        assert_eq!(wide.len(), 10, "each point two columns wide");
        assert_eq!((wide[8].mean_us, wide[9].mean_us), (500, 500));
    }

    #[test]
    fn missed_heartbeats_look_different() {
        let cols = columns(&[point(0, 0, 1), point(2, 500, 0), point(0, 0, 0)], 3, 3);
        let bar = Style::new();
        let late = Style::new().add_modifier(Modifier::BOLD);
        let rows = sparkline(&cols, 3, 1, 500, bar, late);
        let text: String = rows[0].iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(text, "×█ ");
        assert_eq!(rows[0][0].style, late);
    }
}
