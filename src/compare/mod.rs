//! `relaytop compare PROVIDER…`: the same workload against several relays, side by side in
//! time, and a verdict with bootstrap intervals, the knee, the cost, and charts.
//!
//! The parts: `workload.rs` (load levels, sized prompts with fresh prefixes, Poisson
//! arrivals), `run.rs` (one recorded `Run` with a pool of sessions per relay, stage by stage,
//! budgets), `report.rs` (`CompareReport`: JSON, Markdown, HTML), `charts.rs` (plotters, PNG
//! and SVG). The statistics (reservoirs, bootstrap, ranking, knee) are pure, in
//! `relaytop_core::compare`. Design: docs/COMPARE.md.

mod charts;
mod report;
mod run;
mod workload;

use std::path::{Path, PathBuf};

pub use charts::{Chart, Line, charts_of};
pub use report::{CompareReport, LevelResult, Plan, Ranking, RelayResult};
pub use run::{Cell, CompareOptions, CompareRun, Stage, run};
pub use workload::{Load, Prompts, poisson};

use relaytop_core::world::World;

/// The report directory's default: `STATE/relaytop/compare/compare-YYYYMMDD-HHMMSS`.
pub fn default_out() -> PathBuf {
    let root = relaytop_core::record::RecordOptions::default_root();
    let base = root
        .parent()
        .map_or_else(|| root.clone(), Path::to_path_buf)
        .join("compare");
    base.join(format!(
        "compare-{}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    ))
}

/// Runs the comparison and writes the report into `out`: report.json, report.md, report.html
/// and the charts (PNG and SVG). Returns the report.
pub async fn compare(
    world: &World,
    options: &CompareOptions,
    out: &Path,
) -> anyhow::Result<CompareReport> {
    std::fs::create_dir_all(out)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", out.display()))?;
    let done = run(world, options).await?;
    let plan = Plan {
        load: options.load.clone(),
        stage_seconds: options.stage.as_secs_f64(),
        input_tokens: options.input_tokens.clone(),
        max_tokens: options.max_tokens,
        seed: options.seed,
        slo: world.config.slo.default.describe(),
        quantiles_from: format!(
            "exact, over the samples kept (up to {} per relay and level, reservoir-sampled \
             past it); counts, goodput and cost from the metrics fold",
            relaytop_core::compare::RESERVOIR
        ),
    };
    let report = CompareReport::build(&done, plan, &world.config.slo);
    write_dir(&report, &done, out)?;
    Ok(report)
}

/// Writes the report files into `out`.
pub fn write_dir(report: &CompareReport, done: &CompareRun, out: &Path) -> anyhow::Result<()> {
    let samples: Vec<Vec<f64>> = done
        .pooled_ttft_ms
        .iter()
        .map(|r| r.values().to_vec())
        .collect();
    let charts = charts_of(report, &samples);
    let mut written = Vec::new();
    for chart in &charts {
        charts::write(chart, out)?;
        written.push((chart.stem.clone(), chart.title.clone()));
    }
    let io = |p: PathBuf, text: String| {
        std::fs::write(&p, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))
    };
    io(out.join("report.json"), report.to_json_pretty() + "\n")?;
    io(out.join("report.md"), report.to_markdown())?;
    io(out.join("report.html"), report.to_html(&written, out))?;
    Ok(())
}
