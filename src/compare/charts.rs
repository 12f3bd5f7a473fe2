//! The compare report's charts, drawn with plotters as PNG (a bundled DejaVu Sans through
//! ab_glyph: no system font needed) and SVG: latency against load, output speed against load,
//! the distribution of time to first token per relay (as a CDF), and cost against quality.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::CompareReport;

/// The font the PNGs are drawn with (DejaVu Sans; its licence is beside it).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

const SIZE: (u32, u32) = (900, 540);
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One line (or, with one point, one marker) of a chart.
#[derive(Clone, Debug)]
pub struct Line {
    pub label: String,
    pub colour: usize,
    pub dashed: bool,
    pub markers: bool,
    pub points: Vec<(f64, f64)>,
}

/// A chart: lines over two numeric axes.
#[derive(Clone, Debug)]
pub struct Chart {
    /// The file stem (`latency-vs-load`).
    pub stem: String,
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    pub lines: Vec<Line>,
    /// Write each line's label beside its last point (the cost-against-quality scatter).
    pub point_labels: bool,
    /// The y axis from 0 to 100 (a share in per cent).
    pub percent: bool,
}

/// The four charts of a report.
pub fn charts_of(report: &CompareReport, ttft_samples: &[Vec<f64>]) -> Vec<Chart> {
    let unit = report.plan.load.unit();
    let mut latency = Vec::new();
    let mut speed = Vec::new();
    let mut cdf = Vec::new();
    let mut cost = Vec::new();
    for (i, r) in report.relays.iter().enumerate() {
        let with = |f: &dyn Fn(&super::report::LevelResult) -> Option<f64>| -> Vec<(f64, f64)> {
            r.levels
                .iter()
                .filter_map(|l| f(l).map(|y| (l.load, y)))
                .collect()
        };
        latency.push(Line {
            label: format!("{} TTFT p50", r.name),
            colour: i,
            dashed: false,
            markers: true,
            points: with(&|l| (l.ttft_ms.count > 0).then_some(l.ttft_ms.p50)),
        });
        latency.push(Line {
            label: format!("{} TTFT p99", r.name),
            colour: i,
            dashed: true,
            markers: false,
            points: with(&|l| (l.ttft_ms.count > 0).then_some(l.ttft_ms.p99)),
        });
        speed.push(Line {
            label: format!("{} p50", r.name),
            colour: i,
            dashed: false,
            markers: true,
            points: with(&|l| (l.output_speed_tps.count > 0).then_some(l.output_speed_tps.p50)),
        });
        speed.push(Line {
            label: format!("{} p10 (slowest tenth)", r.name),
            colour: i,
            dashed: true,
            markers: false,
            // The slow tail of a speed is its low end.
            points: with(&|l| (l.output_speed_tps.count > 0).then_some(l.output_speed_tps.p10)),
        });
        if let Some(samples) = ttft_samples.get(i)
            && !samples.is_empty()
        {
            let mut v = samples.clone();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            let step = (n / 400).max(1);
            let mut points: Vec<(f64, f64)> = v
                .iter()
                .enumerate()
                .step_by(step)
                .map(|(k, &x)| (x, (k + 1) as f64 / n as f64 * 100.0))
                .collect();
            if let Some(&last) = v.last() {
                points.push((last, 100.0));
            }
            cdf.push(Line {
                label: format!("{} (n={n})", r.name),
                colour: i,
                dashed: false,
                markers: false,
                points,
            });
        }
        if let Some(c) = r.cost_per_1000_calls_usd {
            cost.push(Line {
                label: r.name.clone(),
                colour: i,
                dashed: false,
                markers: true,
                points: vec![(c, r.good_rate * 100.0)],
            });
        }
    }
    vec![
        Chart {
            stem: "latency-vs-load".into(),
            title: "Time to first token against load".into(),
            x_desc: unit.into(),
            y_desc: "time to first token, ms".into(),
            lines: latency,
            point_labels: false,
            percent: false,
        },
        Chart {
            stem: "speed-vs-load".into(),
            title: "Output speed against load".into(),
            x_desc: unit.into(),
            y_desc: "output tokens per second (per request)".into(),
            lines: speed,
            point_labels: false,
            percent: false,
        },
        Chart {
            stem: "ttft-distribution".into(),
            title: "Time to first token, distribution (all levels)".into(),
            x_desc: "time to first token, ms".into(),
            y_desc: "requests at or below, %".into(),
            lines: cdf,
            point_labels: false,
            percent: true,
        },
        Chart {
            stem: "cost-vs-quality".into(),
            title: "Cost against quality".into(),
            x_desc: "US $ per 1,000 calls".into(),
            y_desc: "requests meeting the SLO, %".into(),
            lines: cost,
            point_labels: true,
            percent: true,
        },
    ]
}

/// Writes `chart` as `dir/STEM.png` and `dir/STEM.svg`.
pub fn write(chart: &Chart, dir: &Path) -> anyhow::Result<()> {
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let png = dir.join(format!("{}.png", chart.stem));
    let svg = dir.join(format!("{}.svg", chart.stem));
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, chart).map_err(|e| anyhow::anyhow!("{}: {e}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, chart).map_err(|e| anyhow::anyhow!("{}: {e}", svg.display()))?;
    }
    Ok(())
}

fn range(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.05).max(1e-3);
    // Room above the data for the legend (upper left).
    let top = if from_zero {
        hi + (hi - lo) * 0.4
    } else {
        hi + pad
    };
    (
        if from_zero { lo } else { (lo - pad).max(0.0) },
        top.max(hi + pad),
    )
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, chart: &Chart) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let xs = chart
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0));
    let ys = chart
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1));
    let (x0, x1) = range(xs, chart.point_labels);
    let (y0, y1) = if chart.percent {
        let (lo, _) = range(ys, false);
        ((lo - 5.0).clamp(0.0, 95.0).floor(), 101.0)
    } else {
        range(ys, true)
    };
    let mut c = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(e)?;
    c.configure_mesh()
        .x_desc(&chart.x_desc)
        .y_desc(&chart.y_desc)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(e)?;
    for line in &chart.lines {
        let colour = COLOURS[line.colour % COLOURS.len()];
        let style = colour.stroke_width(if line.dashed { 1 } else { 3 });
        let label = line.label.clone();
        if line.points.len() > 1 {
            let series = if line.dashed {
                c.draw_series(DashedLineSeries::new(line.points.clone(), 8, 5, style))
                    .map_err(e)?
            } else {
                c.draw_series(LineSeries::new(line.points.clone(), style))
                    .map_err(e)?
            };
            let dashed = line.dashed;
            series.label(label).legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 22, y)],
                    colour.stroke_width(if dashed { 1 } else { 3 }),
                )
            });
            if line.markers {
                c.draw_series(
                    line.points
                        .iter()
                        .map(|&p| Circle::new(p, 5, colour.filled())),
                )
                .map_err(e)?;
            }
        } else if let Some(&p) = line.points.first() {
            c.draw_series(std::iter::once(Circle::new(p, 9, colour.filled())))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
            if chart.point_labels {
                c.draw_series(std::iter::once(
                    EmptyElement::at(p)
                        + Text::new(line.label.clone(), (12, -22), ("sans-serif", 17)),
                ))
                .map_err(e)?;
            }
        }
    }
    c.configure_series_labels()
        .position(if chart.percent {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperLeft
        })
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
