//! `relaytop bench`: the whole-process benchmarks (ingest, scale, accuracy, soak), each measured
//! against a reference run in the same process so that the ratio holds on a noisy machine.
//!
//! Each case lives in its own file; `blaster` is the fast relay/v1 server both ingest clients
//! read from, `bare` the reference client. Nothing in the engine imports this module.

pub mod accuracy;
pub mod bare;
pub mod blaster;
pub mod ingest;
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
    /// engine, against a bare tokio-tungstenite + serde_json client on the same server.
    Ingest(ingest::IngestArgs),
    /// Thousands of heartbeating sessions against a local simulator: time to open them,
    /// resident memory per session, CPU while idle, frames/s when all stream.
    Scale(scale::ScaleArgs),
    /// Reported time to first token against what a local simulator injected.
    Accuracy(accuracy::AccuracyArgs),
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
            Some(listen) => ingest::serve(listen, args.frames, out).await,
            None => ingest::run(&args, options, out).await.map(|_| ()),
        },
        BenchCase::Scale(args) => scale::run(&args, options, out).await.map(|_| ()),
        BenchCase::Accuracy(args) => accuracy::run(&args, out).await.map(|_| ()),
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
