//! `relaytop bench ingest`: one session reading one huge response from the blaster through
//! the whole engine (the headless run: parse, events, metrics, cost, report, recording), and
//! the bare client reading the same response from the same server, alternately, several
//! times; prints frames/s medians and relaytop's ratio to the bare client.
//!
//! The whole-process runs then start each client as its user starts it (`relaytop headless`,
//! `relaytop bench bare URL`, optionally a Node `ws` client) against the same server.
//! `--blocks` swaps the blaster for a faster one, for every client: the chunk frames
//! pre-encoded and written in 64 KiB blocks straight to the socket (`Answer::Blocks`), so
//! that the server is even less of the measure.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::bench::blaster::{Answer, Blaster};
use crate::bench::process::{self, Cost};
use crate::bench::{BenchOptions, bare, grouped, median};
use crate::headless::{self, HeadlessOptions, OutputFormat};
use relaytop_core::record::RecordOptions;
use relaytop_core::world::World;

/// `relaytop bench ingest` (global `--no-record` leaves out the runs with recording on).
#[derive(clap::Args, Debug, Clone)]
pub struct IngestArgs {
    /// Chunk frames in the one response each client reads.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub frames: u64,
    /// Runs of each client (medians are reported).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub runs: usize,
    /// Only serve the blaster at ADDR until Ctrl-C (for `relaytop headless` or another
    /// client run from a shell, e.g. under hyperfine); prints a configuration for it.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<SocketAddr>,
    /// Read from (or, with --serve, serve) a faster blaster: the chunk frames pre-encoded as
    /// WebSocket frames and written in 64 KiB blocks straight to the socket, instead of
    /// through tokio-tungstenite 256 frames a flush. Every client reads from it.
    #[arg(long)]
    pub blocks: bool,
    /// The relaytop binary the whole-process runs start (default: this one). Give it twice
    /// or more to compare builds in one run, interleaved.
    #[arg(long = "binary", value_name = "PATH")]
    pub binaries: Vec<PathBuf>,
    /// Also run this Node script (benches/clients/node-ws.cjs: the `ws` package) as a client
    /// of its own in the whole-process runs, for scale.
    #[arg(long, value_name = "SCRIPT")]
    pub node: Option<PathBuf>,
    /// The binary whose `bench bare` is the reference process (default: this one).
    #[arg(long, value_name = "PATH", hide = true)]
    pub bare_binary: Option<PathBuf>,
}

/// The medians of one ingest bench, in frames per second.
#[derive(Clone, Debug)]
pub struct IngestResult {
    pub frames: u64,
    pub bare: f64,
    pub recording: Option<f64>,
    pub no_recording: f64,
    /// The whole-process runs: the bare client's medians, and each build's.
    pub whole: WholeProcess,
}

/// The whole-process medians: each client a process of its own, as its user starts it.
#[derive(Clone, Debug, Default)]
pub struct WholeProcess {
    pub bare: Cost,
    /// The Node `ws` client (`--node`).
    pub node: Option<Cost>,
    /// Per build: recording on (unless `--no-record`), recording off.
    pub builds: Vec<(PathBuf, Option<Cost>, Cost)>,
}

impl IngestResult {
    /// relaytop (recording on, else off) over the bare client.
    pub fn ratio(&self) -> f64 {
        self.recording.unwrap_or(self.no_recording) / self.bare
    }
}

/// The blaster `--blocks` asks for, answering `frames` chunks a request.
pub fn answer(blocks: bool, frames: u64) -> Answer {
    if blocks {
        Answer::Blocks { frames }
    } else {
        Answer::Blast { frames }
    }
}

/// How the printed header names the blaster `answer` is.
fn blaster_name(answer: Answer) -> &'static str {
    match answer {
        Answer::Blocks { .. } => "pre-encoded frames in 64 KiB blocks",
        Answer::Blast { .. } | Answer::Delay { .. } => "tokio-tungstenite, 256 frames a flush",
    }
}

/// A relaytop configuration of one probe session on `url` asking for `frames` tokens.
pub fn config_text(url: &str, frames: u64) -> String {
    format!(
        r#"# One session reading one huge response: `relaytop headless --requests 1 -c THIS`.
[[providers]]
name = "blaster"
url = "{url}"
model = "bench"

[[sessions]]
name = "ingest"
provider = "blaster"
interval_s = 0.001
max_tokens = {frames}
"#
    )
}

/// Runs the ingest bench and prints its table.
pub async fn run(
    args: &IngestArgs,
    options: &BenchOptions,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<IngestResult> {
    anyhow::ensure!(
        args.frames > 0 && args.runs > 0,
        "--frames and --runs must be > 0"
    );
    // The tokenizer's tables (counted once, at the response's end) load before any clock runs.
    tokio::task::spawn_blocking(relaytop_core::tokenize::load_now)
        .await
        .context("cannot load the tokenizer")?;
    let answer = answer(args.blocks, args.frames);
    let blaster = Blaster::start_answering(([127, 0, 0, 1], 0).into(), answer)
        .await
        .context("cannot start the blaster on 127.0.0.1")?;
    let url = blaster.url();
    let (root, temporary) = match &options.record_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("relaytop-bench-{}", std::process::id())),
            true,
        ),
    };
    writeln!(
        out,
        "ingest: one response of {} chunk frames from {url} (blaster: {}), {} runs of each client",
        grouped(args.frames as f64),
        blaster_name(answer),
        args.runs
    )?;
    let (mut bare_rates, mut on_rates, mut off_rates) = (Vec::new(), Vec::new(), Vec::new());
    let rate = |elapsed: Duration| args.frames as f64 / elapsed.as_secs_f64();
    let result = async {
        for run in 1..=args.runs {
            // Each client runs as it runs for its user: the bare client's one task on the
            // runtime's workers; relaytop's sessions on the workers and its consumer on the
            // thread blocking on the command's future, as `relaytop headless` does (main.rs).
            let b = tokio::spawn(bare::run(url.clone()))
                .await?
                .context("the bare client failed")?;
            anyhow::ensure!(
                b.chunks == args.frames && b.done,
                "the bare client read {} chunks, not {}{}",
                b.chunks,
                args.frames,
                if b.done { "" } else { ", and no `done`" }
            );
            bare_rates.push(rate(b.elapsed));
            let on = if options.no_record {
                None
            } else {
                let (elapsed, _) =
                    relaytop_once(url.clone(), args.frames, Some(root.clone())).await?;
                on_rates.push(rate(elapsed));
                Some(elapsed)
            };
            let (off, _) = relaytop_once(url.clone(), args.frames, None).await?;
            off_rates.push(rate(off));
            writeln!(
                out,
                "  run {run}: bare {:.0} ms, relaytop recording {}, not recording {:.0} ms",
                b.elapsed.as_secs_f64() * 1e3,
                on.map_or("off".to_owned(), |d| format!(
                    "{:.0} ms",
                    d.as_secs_f64() * 1e3
                )),
                off.as_secs_f64() * 1e3
            )?;
        }
        anyhow::Ok(())
    }
    .await;
    let whole = match result {
        Ok(()) => whole_process(args, options, &url, &|| blaster.cpu(), out),
        Err(e) => Err(e),
    };
    blaster.stop();
    if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    let whole = whole?;
    let result = IngestResult {
        frames: args.frames,
        bare: median(&bare_rates),
        recording: (!on_rates.is_empty()).then(|| median(&on_rates)),
        no_recording: median(&off_rates),
        whole,
    };
    writeln!(
        out,
        "client                              frames/s   ratio to bare"
    )?;
    let mut row = |name: &str, rate: f64| {
        writeln!(
            out,
            "{name:<32} {:>12}   {:.2}",
            grouped(rate),
            rate / result.bare
        )
    };
    row("bare tokio-tungstenite+serde_json", result.bare)?;
    if let Some(on) = result.recording {
        row("relaytop, recording on", on)?;
    }
    row("relaytop, recording off", result.no_recording)?;
    print_whole(&result, out)?;
    Ok(result)
}

/// One headless relaytop run of one response of `frames` chunks from `url`, recorded under
/// `record` when given: the whole run, from loading the world to the printed report, and the
/// tokens out it reported (an error unless it completed the response).
pub async fn relaytop_once(
    url: String,
    frames: u64,
    record: Option<PathBuf>,
) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let config =
        relaytop_core::config::file::parse(&config_text(&url, frames), "bench ingest", &|var| {
            Err(relaytop_core::config::secret::SecretError::NotSet { var: var.into() })
        })?;
    let mut world = World::start(config, &relaytop_sim::Embedded).await?;
    world.recording = record.map(RecordOptions::new);
    let options = HeadlessOptions {
        duration: Some(Duration::from_secs(600)),
        requests: Some(1),
        format: OutputFormat::Json,
    };
    let report = headless::run(&world, &options, &mut std::io::sink()).await?;
    let elapsed = started.elapsed();
    let recorded: Option<PathBuf> = world.recording_dir();
    world.stop().await;
    if let Some(dir) = recorded {
        let _ = std::fs::remove_dir_all(dir);
    }
    let figures = &report.totals.figures;
    anyhow::ensure!(
        figures.completed >= 1 && figures.tokens_out >= frames,
        "relaytop did not complete the response ({} completed, {} tokens; ended by {})",
        figures.completed,
        figures.tokens_out,
        report.run.ended_by
    );
    Ok((elapsed, figures.tokens_out))
}

/// The whole-process runs: `relaytop bench bare URL` (the bare client, a process of its own)
/// and `relaytop headless --requests 1 -c CONFIG` (recording on and off) against the same
/// blaster, `--runs` times interleaved; each measured from its start to its exit, with the
/// CPU it used. Blocks this thread while each child runs (the blaster serves on the runtime's
/// workers meanwhile).
fn whole_process(
    args: &IngestArgs,
    options: &BenchOptions,
    url: &str,
    server_cpu: &dyn Fn() -> Option<Duration>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<WholeProcess> {
    // Each client run measured with what the blaster spent serving it: on two cores the
    // client's wall time is bound by the two processes' CPU together.
    let measured = |c: &mut std::process::Command| -> std::io::Result<Cost> {
        let before = server_cpu();
        let mut cost = tokio::task::block_in_place(|| process::run(c))?;
        cost.server_cpu = before
            .zip(server_cpu())
            .map(|(before, after)| after.saturating_sub(before));
        Ok(cost)
    };
    let binaries = if args.binaries.is_empty() {
        vec![std::env::current_exe()?]
    } else {
        args.binaries.clone()
    };
    // Its own directory for the configuration and the recordings, removed after.
    let scratch = tempfile::Builder::new()
        .prefix("relaytop-bench-ingest-")
        .tempdir_in(std::env::temp_dir())?;
    let root = scratch.path();
    let config = root.join("ingest.toml");
    std::fs::write(&config, config_text(url, args.frames))?;
    let quiet = |c: &mut std::process::Command| {
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
    };
    let run_relaytop = |binary: &PathBuf, record: bool| -> anyhow::Result<Cost> {
        let mut c = std::process::Command::new(binary);
        if record {
            c.arg("--record-dir").arg(root.join("recordings"));
        } else {
            c.arg("--no-record");
        }
        c.args(["headless", "--requests", "1", "--format", "json", "-c"])
            .arg(&config);
        quiet(&mut c);
        let cost = measured(&mut c)?;
        anyhow::ensure!(
            cost.success,
            "{} headless failed against the blaster; run `{} headless --requests 1 -c {}` to see why",
            binary.display(),
            binary.display(),
            config.display()
        );
        Ok(cost)
    };
    let (mut bares, mut nodes) = (Vec::new(), Vec::new());
    let mut builds = vec![(Vec::new(), Vec::new()); binaries.len()];
    for run in 1..=args.runs {
        let mut c = std::process::Command::new(match &args.bare_binary {
            Some(b) => b.clone(),
            None => std::env::current_exe()?,
        });
        c.args(["bench", "bare", url]);
        quiet(&mut c);
        let bare = measured(&mut c)?;
        anyhow::ensure!(bare.success, "the bare client process failed");
        let mut line = format!("  whole process, run {run}: bare {:.0} ms", ms(bare.wall));
        bares.push(bare);
        if let Some(script) = &args.node {
            let mut c = std::process::Command::new("node");
            c.arg(script).arg(url);
            quiet(&mut c);
            let node = measured(&mut c).context("cannot start `node` (is Node.js installed?)")?;
            anyhow::ensure!(
                node.success,
                "the Node client failed: run `node {} {url}` to see why (it needs `npm install ws`)",
                script.display()
            );
            line += &format!(", node {:.0} ms", ms(node.wall));
            nodes.push(node);
        }
        for (binary, (ons, offs)) in binaries.iter().zip(&mut builds) {
            if !options.no_record {
                let on = run_relaytop(binary, true)?;
                line += &format!(", recording {:.0} ms", ms(on.wall));
                ons.push(on);
            }
            let off = run_relaytop(binary, false)?;
            line += &format!(", not recording {:.0} ms", ms(off.wall));
            offs.push(off);
        }
        writeln!(out, "{line}")?;
    }
    Ok(WholeProcess {
        bare: process::median(&bares),
        node: (!nodes.is_empty()).then(|| process::median(&nodes)),
        builds: binaries
            .into_iter()
            .zip(builds)
            .map(|(b, (ons, offs))| {
                (
                    b,
                    (!ons.is_empty()).then(|| process::median(&ons)),
                    process::median(&offs),
                )
            })
            .collect(),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The whole-process table: frames/s from start to exit, the ratio to the bare process, and
/// CPU against the bare process's.
fn print_whole(result: &IngestResult, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let w = &result.whole;
    let rate = |c: &Cost| result.frames as f64 / c.wall.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "whole process (start to exit)       frames/s   ratio   CPU ms   CPU x bare   peak RSS   \
         wall ms   server CPU ms   (CPU + server) / 2"
    )?;
    let mut row = |name: &str, c: &Cost| {
        // On two cores, the client and the blaster share them: the wall time is at least
        // half their CPU together.
        let (server, bound) = c.server_cpu.map_or(("-".to_owned(), "-".to_owned()), |s| {
            (
                format!("{:.0}", ms(s)),
                format!("{:.0} ms", (ms(s) + ms(c.cpu)) / 2.0),
            )
        });
        writeln!(
            out,
            "{name:<32} {:>12}   {:.2}   {:>6.0}   {:>10.2}   {:>4.0} MiB   {:>7.0}   {server:>13}   {bound:>18}",
            grouped(rate(c)),
            rate(c) / rate(&w.bare),
            ms(c.cpu),
            c.cpu.as_secs_f64() / w.bare.cpu.as_secs_f64().max(1e-9),
            c.peak_rss as f64 / f64::from(1 << 20),
            ms(c.wall)
        )
    };
    row("bare client (own process)", &w.bare)?;
    if let Some(node) = &w.node {
        row("node ws client (own process)", node)?;
    }
    for (binary, on, off) in &w.builds {
        let name = binary
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        if let Some(on) = on {
            row(&format!("{name}, recording on"), on)?;
        }
        row(&format!("{name}, recording off"), off)?;
    }
    // Issue #22's targets, whole process: >= 0.7x the bare client recording on with <= 2x
    // its CPU, >= 0.8x recording off, >= 4x Node's rate.
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    for (binary, on, off) in &w.builds {
        let name = binary
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let ratio = |c: &Cost| rate(c) / rate(&w.bare);
        let cpu = |c: &Cost| c.cpu.as_secs_f64() / w.bare.cpu.as_secs_f64().max(1e-9);
        let mut line = format!("targets, {name}:");
        if let Some(on) = on {
            line += &format!(
                " recording on {:.2}x >= 0.7x ({}), CPU {:.2}x <= 2x ({});",
                ratio(on),
                met(ratio(on) >= 0.7),
                cpu(on),
                met(cpu(on) <= 2.0)
            );
        }
        line += &format!(
            " recording off {:.2}x >= 0.8x ({})",
            ratio(off),
            met(ratio(off) >= 0.8)
        );
        if let Some(node) = &w.node {
            let times = rate(on.as_ref().unwrap_or(off)) / rate(node);
            line += &format!("; {times:.1}x Node >= 4x ({})", met(times >= 4.0));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// `--serve`: the blaster alone (`--blocks`: the block blaster), until Ctrl-C.
pub async fn serve(
    listen: SocketAddr,
    frames: u64,
    blocks: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let answer = answer(blocks, frames);
    let blaster = Blaster::start_answering(listen, answer)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    writeln!(
        out,
        "blaster ({}): {} chunk frames per request at {}; Ctrl-C stops it.\n\
         A configuration for `relaytop headless --requests 1 --no-record -c FILE`:\n\n{}",
        blaster_name(answer),
        grouped(frames as f64),
        blaster.url(),
        config_text(&blaster.url(), frames)
    )?;
    out.flush()?;
    tokio::signal::ctrl_c().await?;
    writeln!(
        out,
        "blaster: {} chunk frames sent",
        grouped(blaster.sent() as f64)
    )?;
    blaster.stop();
    Ok(())
}
