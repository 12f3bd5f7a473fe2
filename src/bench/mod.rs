//! `relaytop bench`: the whole-process benchmarks (ingest, scale, accuracy, soak), each measured
//! against a reference run in the same process so that the ratio holds on a noisy machine.
//!
//! Each case lives in its own file; `blaster` is the fast relay/v1 server both ingest clients
//! read from, `bare` the reference client. Nothing in the engine imports this module.

pub mod accuracy;
pub mod bare;
pub mod blaster;
// libc: the pseudo-terminal (openpty, setsid, TIOCSCTTY) and signals to its child.
#[allow(unsafe_code)]
pub mod dashboard;
pub mod ingest;
// libc: wait4, for a child's CPU time and peak memory.
#[allow(unsafe_code)]
pub mod process;
pub mod recording;
pub mod replay;
// libc: the open-files limit, the page size, clock ticks and malloc_trim.
#[allow(unsafe_code)]
pub mod scale;
// libc: SIGTERM to the measured process.
#[allow(unsafe_code)]
pub mod scale_process;
// libc: glibc's heap in use (mallinfo2) and malloc_trim.
#[allow(unsafe_code)]
pub mod soak;

use std::io::Write;

/// One benchmark case (`relaytop bench CASE`).
#[derive(clap::Subcommand, Debug)]
pub enum BenchCase {
    /// One session reading a huge response from a fast local server, through the whole
    /// engine, against a bare tokio-tungstenite + serde_json client on the same server
    /// (`--blocks`: a faster server, writing pre-encoded frames in 64 KiB blocks).
    Ingest(ingest::IngestArgs),
    /// Thousands of heartbeating sessions against a local simulator: time to open them,
    /// resident memory per session, CPU while idle, frames/s when all stream.
    Scale(scale::ScaleArgs),
    /// Reported time to first token against what a local simulator injected.
    Accuracy(accuracy::AccuracyArgs),
    /// A many-session recording replayed headless and exported to CSV by the binary, against
    /// a plain JSON-lines scan of the same files.
    Replay(replay::ReplayArgs),
    /// The bare reference client alone, as a process of its own (`bench ingest` starts it
    /// beside relaytop's own process): reads one response from URL and prints its figures.
    #[command(hide = true)]
    Bare(bare::BareArgs),
    /// The dashboard's own CPU: relaytop in a pseudo-terminal against the same world run
    /// headless (default world, 1,000 probe sessions, 10 sessions probing once a minute).
    Dashboard(dashboard::DashboardArgs),
}

/// What every case may be told by the global flags.
#[derive(Clone, Debug, Default)]
pub struct BenchOptions {
    /// `--no-record`: leave out the runs with recording on.
    pub no_record: bool,
    /// `--record-dir`: where recorded runs go (default: a temporary directory, removed after).
    pub record_dir: Option<std::path::PathBuf>,
}

/// Runs one case, printing its progress and its table to `out`.
pub async fn run(
    case: BenchCase,
    options: &BenchOptions,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match case {
        BenchCase::Ingest(args) => match args.serve {
            Some(listen) => ingest::serve(listen, args.frames, args.blocks, out).await,
            None => ingest::run(&args, options, out).await.map(|_| ()),
        },
        BenchCase::Scale(args) => scale::run(&args, options, out).await.map(|_| ()),
        BenchCase::Accuracy(args) => accuracy::run(&args, out).await.map(|_| ()),
        BenchCase::Replay(args) => replay::run(&args, out).map(|_| ()),
        BenchCase::Bare(bare::BareArgs {
            url,
            idle: Some(n),
            heartbeat_s,
        }) => {
            bare::idle(
                url,
                n,
                std::time::Duration::from_secs_f64(heartbeat_s.max(0.01)),
            )
            .await
        }
        BenchCase::Bare(args) => {
            let b = bare::run(args.url).await?;
            writeln!(
                out,
                "{} chunks, {} chars in {} us",
                b.chunks,
                b.chars,
                b.elapsed.as_micros()
            )?;
            Ok(())
        }
        BenchCase::Dashboard(args) => dashboard::run(&args, options, out).await.map(|_| ()),
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// A number with thousands separators and no fraction (1,234,567).
pub fn grouped(value: f64) -> String {
    relaytop_core::report::count(value.round().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
    }
}
