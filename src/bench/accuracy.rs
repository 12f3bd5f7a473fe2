//! `relaytop bench accuracy`: a simulator (a child process) injects a fixed time to first
//! token into every response of many probe sessions; the headless run's reported TTFT p50 and
//! p99 are compared with the injected value.

use std::io::Write;
use std::time::Duration;

use crate::bench::scale::{SimChild, raise_open_files};
use crate::headless::{self, HeadlessOptions, OutputFormat};
use crate::world::World;

/// `relaytop bench accuracy`.
#[derive(clap::Args, Debug, Clone)]
pub struct AccuracyArgs {
    /// Concurrent probe sessions.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub sessions: u32,
    /// The time to first token the simulator injects, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200.0)]
    pub ttft_ms: f64,
    /// Seconds the probes run (each session sends one a second).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub seconds: u64,
}

/// What the accuracy bench measured, in milliseconds.
#[derive(Clone, Debug)]
pub struct AccuracyResult {
    pub injected_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub samples: u64,
}

impl AccuracyResult {
    /// The larger of the two errors, in milliseconds.
    pub fn worst_error_ms(&self) -> f64 {
        (self.p50_ms - self.injected_ms)
            .abs()
            .max((self.p99_ms - self.injected_ms).abs())
    }
}

/// Runs the accuracy bench and prints its table.
pub async fn run(
    args: &AccuracyArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<AccuracyResult> {
    anyhow::ensure!(
        args.sessions > 0 && args.ttft_ms > 0.0,
        "--sessions and --ttft-ms must be > 0"
    );
    raise_open_files();
    // p50 = p99: no spread, every response's first token comes after exactly this long.
    let mut sim = SimChild::with_profile(&format!(
        "ttft_p50_ms = {t}\nttft_p99_ms = {t}\ntokens_per_second = 1000.0\ntokens_per_response = 5\n",
        t = args.ttft_ms
    ))?;
    let result = measure(args, &sim.url).await;
    sim.stop();
    let r = result?;
    writeln!(
        out,
        "accuracy: {} probe sessions for {} s, injected TTFT {:.3} ms, {} samples",
        args.sessions, args.seconds, r.injected_ms, r.samples
    )?;
    writeln!(
        out,
        "figure      reported ms   injected ms   error ms   target"
    )?;
    for (name, value) in [("TTFT p50", r.p50_ms), ("TTFT p99", r.p99_ms)] {
        writeln!(
            out,
            "{name:<10} {value:>12.3} {:>13.3} {:>10.3}   <= 1",
            r.injected_ms,
            value - r.injected_ms
        )?;
    }
    writeln!(
        out,
        "target: both within 1 ms: {}",
        if r.worst_error_ms() <= 1.0 {
            "met"
        } else {
            "MISSED"
        }
    )?;
    Ok(r)
}

async fn measure(args: &AccuracyArgs, url: &str) -> anyhow::Result<AccuracyResult> {
    let text = format!(
        r#"[[providers]]
name = "sim"
url = "{url}"
api_key_env = "RELAYTOP_BENCH_KEY"
model = "bench"
# Far above what the probes need: the figures are the relay's and the client's, not a limit's.
requests_per_minute = {rpm}
max_connections = {n}

[[sessions]]
name = "probe"
provider = "sim"
count = {n}
interval_s = 1
max_tokens = 5
"#,
        n = args.sessions,
        rpm = u64::from(args.sessions) * 600,
    );
    let config = crate::config::file::parse(&text, "bench accuracy", &|_| {
        Ok(crate::config::secret::Secret::new(
            crate::world::SIMULATOR_KEY,
        ))
    })?;
    let world = World::start(config).await?;
    let options = HeadlessOptions {
        duration: Some(Duration::from_secs(args.seconds)),
        requests: None,
        format: OutputFormat::Json,
    };
    let report = headless::run(&world, &options, &mut std::io::sink()).await?;
    world.stop().await;
    let ttft = report.totals.figures.ttft_ms;
    let (Some(p50_ms), Some(p99_ms)) = (ttft.p50, ttft.p99) else {
        anyhow::bail!("no first token was measured ({})", report.run.ended_by);
    };
    Ok(AccuracyResult {
        injected_ms: args.ttft_ms,
        p50_ms,
        p99_ms,
        samples: ttft.count,
    })
}
