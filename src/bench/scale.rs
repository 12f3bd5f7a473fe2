//! `relaytop bench scale`: thousands of heartbeating sessions against a simulator in a child
//! process (so that every byte and tick measured here is the client's): time to open them
//! all, resident memory per session, CPU while idle, frames/s when all stream at once; and,
//! as the reference of the same run, as many bare tokio-tungstenite connections.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::bench::grouped;
use relaytop_core::metrics::Metrics;
use relaytop_core::session::{EventKind, SessionCommand, SessionEvent, SessionState};
use relaytop_core::supervisor::Supervisor;

/// `relaytop bench scale`.
#[derive(clap::Args, Debug, Clone)]
pub struct ScaleArgs {
    /// Concurrent sessions.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub sessions: u32,
    /// Seconds between each session's heartbeats.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub heartbeat_s: f64,
    /// Seconds of idle (heartbeats only) over which CPU is measured.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub idle_s: f64,
    /// Chunks each session's response streams when all stream at once.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub chunks: u32,
    /// The whole-process cases run this build of relaytop (as many times as given: each is
    /// measured in turn, interleaved; default: this one).
    #[arg(long, value_name = "PATH")]
    pub binary: Vec<std::path::PathBuf>,
    /// Rounds of the whole-process cases (each build once a round).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub rounds: u32,
    /// Seconds between each probe session's probes in the whole-process probe case.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub probe_interval_s: f64,
    /// Which cases: the sessions in this process (no recording; bare connections beside
    /// them), whole processes run as users run them (recording on), or both.
    #[arg(long, value_enum, default_value_t = ScaleCases::All)]
    pub cases: ScaleCases,
}

/// `bench scale --cases`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleCases {
    All,
    InProcess,
    Process,
}

/// What one scale bench measured.
#[derive(Clone, Debug)]
pub struct ScaleResult {
    pub sessions: u32,
    pub open_s: f64,
    pub rss_per_session: f64,
    pub idle_cpu_percent: f64,
    pub stream_frames_per_s: f64,
    pub bare_open_s: f64,
    pub bare_rss_per_connection: f64,
}

/// Runs the scale bench's cases (`--cases`) and prints their tables.
pub async fn run(
    args: &ScaleArgs,
    options: &crate::bench::BenchOptions,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Option<ScaleResult>> {
    anyhow::ensure!(args.sessions > 0, "--sessions must be > 0");
    let limit = crate::limits::raise_open_files();
    writeln!(
        out,
        "scale: {} sessions; open-files limit {limit}",
        args.sessions
    )?;
    let in_process = match args.cases {
        ScaleCases::All | ScaleCases::InProcess => Some(run_in_process(args, out).await?),
        ScaleCases::Process => None,
    };
    if args.cases != ScaleCases::InProcess {
        crate::bench::scale_process::run(args, options.no_record, out).await?;
    }
    Ok(in_process)
}

/// The sessions in this process, without recording, beside bare connections.
async fn run_in_process(
    args: &ScaleArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ScaleResult> {
    let mut sim = SimChild::start(args.chunks)?;
    let result = measure(args, &sim.url, out).await;
    sim.stop();
    let r = result?;
    writeln!(
        out,
        "figure                                  relaytop     bare      target"
    )?;
    writeln!(
        out,
        "time to open all (s)                    {:>8.2}  {:>8.2}      < 2",
        r.open_s, r.bare_open_s
    )?;
    writeln!(
        out,
        "resident memory per session (KiB)       {:>8.1}  {:>8.1}      <= 32",
        r.rss_per_session / 1024.0,
        r.bare_rss_per_connection / 1024.0
    )?;
    writeln!(
        out,
        "CPU while idle, heartbeats every {:.0} s   {:>7.1} % of one core",
        args.heartbeat_s, r.idle_cpu_percent
    )?;
    writeln!(
        out,
        "frames/s, all streaming at once        {:>10}",
        grouped(r.stream_frames_per_s)
    )?;
    let met = r.open_s < 2.0 && r.rss_per_session <= 32.0 * 1024.0;
    writeln!(out, "targets: {}", if met { "met" } else { "MISSED" })?;
    Ok(r)
}

async fn measure(
    args: &ScaleArgs,
    url: &str,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<ScaleResult> {
    let n = args.sessions;
    let text = format!(
        r#"[defaults]
heartbeat_s = {hb}
dead_after_s = {dead}

[[providers]]
name = "sim"
url = "{url}"
api_key_env = "RELAYTOP_BENCH_KEY"
model = "bench"

[[sessions]]
name = "s"
provider = "sim"
workload = "chat"
count = {n}
"#,
        hb = args.heartbeat_s,
        dead = (args.heartbeat_s * 4.0).max(30.0),
    );
    let config = relaytop_core::config::file::parse(&text, "bench scale", &|_| {
        Ok(relaytop_core::config::secret::Secret::new(
            relaytop_core::world::SIMULATOR_KEY,
        ))
    })?;
    let (bare_open_s, bare_rss_per_connection) = bare_connections(url, n).await?;
    writeln!(
        out,
        "  bare: {n} connections open in {bare_open_s:.2} s, {:.1} KiB each",
        bare_rss_per_connection / 1024.0
    )?;
    // What the bare connections freed goes back to the system before relaytop is measured.
    trim_heap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = resident_bytes();
    let clock = relaytop_core::session::RunClock::new();
    let (mut supervisor, mut events) = Supervisor::new(clock);
    let started = Instant::now();
    for spec in config.sessions.clone() {
        supervisor.start(spec);
    }
    let mut metrics = Metrics::new(supervisor.infos().to_vec(), config.pricing().into());
    let mut fold = Fold::default();
    let open_deadline = started + Duration::from_secs(120);
    fold.until(&mut events, &mut metrics, open_deadline, |f| {
        f.connected >= u64::from(n)
    })
    .await;
    anyhow::ensure!(
        fold.connected >= u64::from(n),
        "only {} of {n} sessions connected within 120 s (errors: {})",
        fold.connected,
        fold.errors
    );
    let open_s = started.elapsed().as_secs_f64();
    writeln!(out, "  {n} sessions open in {open_s:.2} s")?;
    // Let the first heartbeats go round before measuring memory.
    let settle = Instant::now() + Duration::from_secs(1);
    fold.until(&mut events, &mut metrics, settle, |_| false)
        .await;
    let rss_per_session = (resident_bytes() - rss_before) / f64::from(n);
    writeln!(
        out,
        "  resident memory: {:.1} KiB per session",
        rss_per_session / 1024.0
    )?;

    let (ticks_before, pongs_before) = (cpu_ticks(), fold.pongs);
    let idle_started = Instant::now();
    let idle_until = idle_started + Duration::from_secs_f64(args.idle_s);
    fold.until(&mut events, &mut metrics, idle_until, |_| false)
        .await;
    let idle_cpu_percent =
        (cpu_ticks() - ticks_before) / clock_ticks_per_s() / idle_started.elapsed().as_secs_f64()
            * 100.0;
    writeln!(
        out,
        "  idle for {:.0} s: {:.1} % of one core, {} heartbeats answered",
        args.idle_s,
        idle_cpu_percent,
        fold.pongs - pongs_before
    )?;

    let (chunks_before, done_before) = (fold.chunks, fold.done);
    let stream_started = Instant::now();
    for id in 0..n {
        supervisor.command(
            id,
            SessionCommand::Send {
                prompt: "stream".into(),
                max_tokens: Some(args.chunks),
            },
        );
    }
    let stream_deadline = stream_started + Duration::from_secs(300);
    fold.until(&mut events, &mut metrics, stream_deadline, |f| {
        f.done - done_before >= u64::from(n)
    })
    .await;
    let stream_s = stream_started.elapsed().as_secs_f64();
    let frames = fold.chunks - chunks_before;
    let stream_frames_per_s = frames as f64 / stream_s;
    writeln!(
        out,
        "  all streaming: {} chunk frames in {stream_s:.2} s ({} responses done)",
        grouped(frames as f64),
        fold.done - done_before
    )?;
    supervisor
        .shutdown(Duration::from_secs(10), &mut events, |_| {})
        .await;
    drop(metrics);

    Ok(ScaleResult {
        sessions: n,
        open_s,
        rss_per_session,
        idle_cpu_percent,
        stream_frames_per_s,
        bare_open_s,
        bare_rss_per_connection,
    })
}

/// Counts of what the sessions reported, folded into the metrics as a consumer would.
#[derive(Default)]
struct Fold {
    connected: u64,
    errors: u64,
    pongs: u64,
    chunks: u64,
    done: u64,
    batch: Vec<SessionEvent>,
}

impl Fold {
    /// Folds events until `done(self)` or `deadline`.
    async fn until(
        &mut self,
        events: &mut relaytop_core::session::EventReceiver,
        metrics: &mut Metrics,
        deadline: Instant,
        done: impl Fn(&Fold) -> bool,
    ) {
        let deadline = tokio::time::Instant::from_std(deadline);
        while !done(self) {
            let mut batch = std::mem::take(&mut self.batch);
            tokio::select! {
                received = events.recv_many(&mut batch, 4_096) => {
                    if received == 0 {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return,
            }
            for event in batch.drain(..) {
                metrics.apply(&event);
                match event.kind {
                    EventKind::State(SessionState::Open) => self.connected += 1,
                    EventKind::Error { .. } => self.errors += 1,
                    EventKind::Pong { .. } => self.pongs += 1,
                    EventKind::Chunk { .. } => self.chunks += 1,
                    EventKind::Done(_) => self.done += 1,
                    _ => {}
                }
            }
            self.batch = batch;
        }
    }
}

/// Opens `n` bare tokio-tungstenite connections (relaytop's 16 KiB read buffer), each read
/// by a task of its own; returns the time to open them all and the resident bytes each.
async fn bare_connections(url: &str, n: u32) -> anyhow::Result<(f64, f64)> {
    let rss_before = resident_bytes();
    let started = Instant::now();
    let (opened_tx, mut opened) = mpsc::channel::<bool>(1024);
    let mut tasks = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let url = url.to_owned();
        let opened_tx = opened_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut request =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                    url.as_str(),
                )
                .ok();
            if let Some(r) = request.as_mut() {
                r.headers_mut().insert(
                    "authorization",
                    format!("Bearer {}", relaytop_core::world::SIMULATOR_KEY)
                        .parse()
                        .expect("a valid header"),
                );
            }
            let Some(request) = request else {
                let _ = opened_tx.send(false).await;
                return;
            };
            let config = relaytop_core::session::connect::websocket_config();
            match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
                Ok((mut ws, _)) => {
                    let _ = opened_tx.send(true).await;
                    while let Some(Ok(_)) = ws.next().await {}
                }
                Err(_) => {
                    let _ = opened_tx.send(false).await;
                }
            }
        }));
    }
    drop(opened_tx);
    let (mut ok, mut seen) = (0u32, 0u32);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen < n {
        match tokio::time::timeout_at(deadline, opened.recv()).await {
            Ok(Some(true)) => ok += 1,
            Ok(Some(false)) => {}
            _ => break,
        }
        seen += 1;
    }
    let open_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per = (resident_bytes() - rss_before) / f64::from(n);
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    anyhow::ensure!(ok == n, "only {ok} of {n} bare connections opened");
    Ok((open_s, per))
}

/// A simulator in a child process (`relaytop sim`), so that its work is not the client's.
pub(crate) struct SimChild {
    child: Child,
    pub url: String,
    profile: std::path::PathBuf,
}

impl SimChild {
    /// A simulator streaming `chunks` chunks a response as fast as it can.
    fn start(chunks: u32) -> anyhow::Result<SimChild> {
        Self::with_profile(&format!(
            "ttft_p50_ms = 1.0\nttft_p99_ms = 1.0\ntokens_per_second = 0.0\ntokens_per_response = {chunks}\n"
        ))
    }

    /// A simulator with the profile knobs `toml` (spec of `SimProfile`).
    pub(crate) fn with_profile(toml: &str) -> anyhow::Result<SimChild> {
        let profile =
            std::env::temp_dir().join(format!("relaytop-bench-sim-{}.toml", std::process::id()));
        std::fs::write(&profile, toml)?;
        let exe = std::env::current_exe().context("cannot find relaytop's own executable")?;
        let mut child = Command::new(exe)
            .args(["sim", "--listen", "127.0.0.1:0", "--profile"])
            .arg(&profile)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start `relaytop sim`")?;
        let stderr = child
            .stderr
            .take()
            .context("no stderr from `relaytop sim`")?;
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line)?;
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .map(str::to_owned);
        let Some(url) = url else {
            let _ = child.kill();
            anyhow::bail!("`relaytop sim` did not say where it listens: {line}");
        };
        Ok(SimChild {
            child,
            url,
            profile,
        })
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.profile);
    }
}

/// Gives the heap's free memory back to the system (glibc's `malloc_trim`), so that the
/// next resident-memory baseline starts clean.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident bytes of this process (/proc/self/statm).
pub fn resident_bytes() -> f64 {
    resident_bytes_in("/proc/self/statm")
}

/// Resident bytes of a process, from its statm file (/proc/PID/statm).
pub fn resident_bytes_in(statm: &str) -> f64 {
    let pages = std::fs::read_to_string(statm)
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    // SAFETY: sysconf only reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * page.max(1) as f64
}

/// User and system CPU ticks of this process so far (/proc/self/stat).
pub fn cpu_ticks() -> f64 {
    stat_ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// User and system CPU ticks in a /proc/PID/stat line.
pub fn stat_ticks(stat: &str) -> f64 {
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name and state.
    field(11) + field(12)
}

/// Clock ticks a second.
pub fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks.max(1) as f64
}
