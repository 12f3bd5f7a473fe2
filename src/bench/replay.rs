//! `relaytop bench replay`: a many-session recording replayed headless and exported to CSV by
//! the relaytop binary as a user runs it (a process of its own: wall time, CPU, peak memory),
//! against a plain JSON-lines scan of the same files measured in the same run.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{self, Cost};
use super::recording::{self, Until};
use super::{grouped, median};

/// `relaytop bench replay`.
#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Sessions in the recording.
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Requests each session sent, one a second (25 chunks each: about 30 lines a request).
    #[arg(long, default_value_t = 180)]
    pub requests: u64,
    /// Runs of each case, interleaved; medians are reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// A relaytop binary to measure (default: this one). Give it twice or more to compare
    /// builds in one run (e.g. before and after a change).
    #[arg(long = "binary")]
    pub binaries: Vec<PathBuf>,
    /// Write the recording here and keep it (reused when it is already there), instead of a
    /// temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One build's medians.
#[derive(Clone, Debug)]
pub struct BuildResult {
    pub binary: PathBuf,
    pub replay: Cost,
    pub export: Cost,
}

/// The run's medians.
#[derive(Clone, Debug)]
pub struct ReplayResult {
    pub lines: u64,
    pub bytes: u64,
    pub scan: Duration,
    pub builds: Vec<BuildResult>,
}

/// Generates (or reuses) the recording, measures every case `runs` times interleaved, prints
/// the table.
pub fn run(args: &ReplayArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<ReplayResult> {
    let binaries = if args.binaries.is_empty() {
        vec![std::env::current_exe()?]
    } else {
        args.binaries.clone()
    };
    let temp;
    let run_dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().join("2026-11-25T03-00-00Z")
        }
    };
    if !run_dir.join("run.json").exists() {
        let t = Instant::now();
        let written = recording::generate(
            &run_dir,
            args.sessions.max(1),
            Until::Requests(args.requests.max(1)),
        )?;
        writeln!(
            out,
            "generated {} sessions, {} requests, {} lines, {:.0} MiB in {:.1} s",
            args.sessions,
            grouped(written.requests as f64),
            grouped(written.lines as f64),
            written.bytes as f64 / f64::from(1 << 20),
            t.elapsed().as_secs_f64()
        )?;
    }
    let runs = args.runs.max(1);
    let mut scans = Vec::new();
    let mut lines = 0;
    let mut bytes = 0;
    let mut costs: Vec<(Vec<Cost>, Vec<Cost>)> = vec![(Vec::new(), Vec::new()); binaries.len()];
    for i in 0..runs {
        let (took, n, b) = scan(&run_dir)?;
        (lines, bytes) = (n, b);
        scans.push(took.as_secs_f64());
        for (binary, (replays, exports)) in binaries.iter().zip(&mut costs) {
            let replay = process::run(
                Command::new(binary)
                    .args(["replay", "--headless", "--format", "json"])
                    .arg(&run_dir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )?;
            let export = process::run(
                Command::new(binary)
                    .args(["export", "--format", "csv"])
                    .arg(&run_dir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )?;
            if !replay.success || !export.success {
                anyhow::bail!(
                    "{} failed on {} (replay ok: {}, export ok: {}); run it by hand to see why",
                    binary.display(),
                    run_dir.display(),
                    replay.success,
                    export.success
                );
            }
            writeln!(
                out,
                "run {}/{runs} {}: scan {:.2} s, replay {:.2} s, export {:.2} s",
                i + 1,
                binary.display(),
                took.as_secs_f64(),
                replay.wall.as_secs_f64(),
                export.wall.as_secs_f64()
            )?;
            replays.push(replay);
            exports.push(export);
        }
    }
    let scan = Duration::from_secs_f64(median(&scans));
    let builds: Vec<BuildResult> = binaries
        .iter()
        .zip(costs)
        .map(|(binary, (replays, exports))| BuildResult {
            binary: binary.clone(),
            replay: process::median(&replays),
            export: process::median(&exports),
        })
        .collect();
    let result = ReplayResult {
        lines,
        bytes,
        scan,
        builds,
    };
    print_table(&result, out)?;
    Ok(result)
}

/// The reference: every line of every session file read and parsed as JSON (into nothing),
/// one file after another. Returns the time, the lines and the bytes.
fn scan(run: &Path) -> anyhow::Result<(Duration, u64, u64)> {
    let start = Instant::now();
    let (mut lines, mut bytes) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(4096);
    for entry in std::fs::read_dir(run)? {
        let path = entry?.path();
        if !path.to_string_lossy().ends_with(".jsonl") {
            continue;
        }
        let mut reader = BufReader::with_capacity(64 << 10, std::fs::File::open(&path)?);
        let mut header = true;
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            serde_json::from_slice::<serde::de::IgnoredAny>(&buf)?;
            if !std::mem::take(&mut header) {
                lines += 1;
            }
        }
    }
    Ok((start.elapsed(), lines, bytes))
}

fn print_table(r: &ReplayResult, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let per_s = |d: Duration| r.lines as f64 / d.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "\n{} lines ({:.0} MiB); medians. Ratio: the scan's time over the case's (1.0 = as fast as the scan).",
        grouped(r.lines as f64),
        r.bytes as f64 / f64::from(1 << 20)
    )?;
    writeln!(
        out,
        "{:<44} {:>9} {:>14} {:>7} {:>9} {:>10}",
        "case", "time", "lines/s", "ratio", "CPU", "peak RSS"
    )?;
    writeln!(
        out,
        "{:<44} {:>8.2}s {:>14} {:>7.2} {:>9} {:>10}",
        "JSON-lines scan (reference, in-process)",
        r.scan.as_secs_f64(),
        grouped(per_s(r.scan)),
        1.0,
        "-",
        "-"
    )?;
    for build in &r.builds {
        let name = build
            .binary
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for (case, cost) in [
            ("replay --headless", &build.replay),
            ("export --format csv", &build.export),
        ] {
            writeln!(
                out,
                "{:<44} {:>8.2}s {:>14} {:>7.2} {:>8.2}s {:>7.0} MiB",
                format!("{name}: {case}"),
                cost.wall.as_secs_f64(),
                grouped(per_s(cost.wall)),
                r.scan.as_secs_f64() / cost.wall.as_secs_f64().max(1e-9),
                cost.cpu.as_secs_f64(),
                cost.peak_rss as f64 / f64::from(1 << 20)
            )?;
        }
    }
    Ok(())
}
