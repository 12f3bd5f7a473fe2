//! `relaytop bench accuracy`: a relay (the bench's blaster on its own thread) injects a fixed
//! time to first token into every response of many probe sessions and measures each delay as
//! it held it; the headless run's reported TTFT p50 and p99 are compared with the p50 and p99
//! of those injected delays (what a relay's timer really gives is never exactly the nominal
//! value: tokio's timer wakes on whole milliseconds).

use std::io::Write;
use std::time::Duration;

use crate::bench::blaster::{Answer, Blaster};
use crate::headless::{self, HeadlessOptions, OutputFormat};
use crate::limits::raise_open_files;
use relaytop_core::world::World;

/// `relaytop bench accuracy`.
#[derive(clap::Args, Debug, Clone)]
pub struct AccuracyArgs {
    /// Concurrent probe sessions.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub sessions: u32,
    /// The time to first token the relay injects, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 200.0)]
    pub ttft_ms: f64,
    /// Seconds the probes run (each session sends one a second).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub seconds: u64,
}

/// What the accuracy bench measured, in milliseconds.
#[derive(Clone, Debug)]
pub struct AccuracyResult {
    /// The nominal delay asked of the relay.
    pub nominal_ms: f64,
    /// The p50 and p99 of the delays the relay held, as it measured them.
    pub injected_p50_ms: f64,
    pub injected_p99_ms: f64,
    /// relaytop's reported time to first token.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub samples: u64,
}

impl AccuracyResult {
    /// The larger of the two errors, in milliseconds.
    pub fn worst_error_ms(&self) -> f64 {
        (self.p50_ms - self.injected_p50_ms)
            .abs()
            .max((self.p99_ms - self.injected_p99_ms).abs())
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
    let relay = Blaster::start_answering(
        ([127, 0, 0, 1], 0).into(),
        Answer::Delay {
            delay: Duration::from_secs_f64(args.ttft_ms / 1e3),
            frames: 5,
        },
    )
    .await?;
    let result = measure(args, &relay).await;
    relay.stop();
    let r = result?;
    writeln!(
        out,
        "accuracy: {} probe sessions for {} s, nominal TTFT {:.3} ms, {} samples",
        args.sessions, args.seconds, r.nominal_ms, r.samples
    )?;
    writeln!(
        out,
        "figure      reported ms   injected ms   error ms   target"
    )?;
    for (name, value, injected) in [
        ("TTFT p50", r.p50_ms, r.injected_p50_ms),
        ("TTFT p99", r.p99_ms, r.injected_p99_ms),
    ] {
        writeln!(
            out,
            "{name:<10} {value:>12.3} {injected:>13.3} {:>10.3}   <= 1",
            value - injected
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

async fn measure(args: &AccuracyArgs, relay: &Blaster) -> anyhow::Result<AccuracyResult> {
    let url = relay.url();
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
    let config = relaytop_core::config::file::parse(&text, "bench accuracy", &|_| {
        Ok(relaytop_core::config::secret::Secret::new(
            relaytop_core::world::SIMULATOR_KEY,
        ))
    })?;
    let world = World::start(config, &relaytop_sim::Embedded).await?;
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
    let mut injected = relay.delays();
    anyhow::ensure!(!injected.is_empty(), "the relay injected no delay");
    injected.sort_unstable();
    let quantile = |q: f64| {
        // Nearest rank, as the HDR histograms report.
        let rank = ((q * injected.len() as f64).ceil() as usize).clamp(1, injected.len());
        injected[rank - 1] as f64 / 1e3
    };
    Ok(AccuracyResult {
        nominal_ms: args.ttft_ms,
        injected_p50_ms: quantile(0.50),
        injected_p99_ms: quantile(0.99),
        p50_ms,
        p99_ms,
        samples: ttft.count,
    })
}
