//! `relaytop bench soak`: a long run of many probe sessions against an embedded legacy relay
//! (3.2 % of responses dropped), with the relay's and the sessions' clocks accelerated. It
//! samples relaytop's own resident memory, tokio tasks and open file descriptors, and checks
//! at the end that memory stayed flat after warm-up, tasks and descriptors returned to their
//! baseline once the sessions stopped, and every drop was followed by a reconnect.
//!
//! Memory is two figures: the resident size, read after `malloc_trim` gives the allocator's
//! free pages back (without it glibc keeps freed pages, and the resident size creeps up by a
//! few hundred KiB a minute while the heap in use stays flat: heaptrack, docs/RELIABILITY.md),
//! and the heap in use from glibc's own counters. Both must stay flat.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use relaytop_core::config::secret::Secret;
use relaytop_core::session::{
    BackoffPolicy, EventKind, Protocol, RunClock, SessionInfo, SessionSpec, SessionState, Timing,
    Workload,
};
use relaytop_core::supervisor::Supervisor;
use relaytop_sim::{SimProfile, SimServer};

/// What a soak run does.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// Probe sessions.
    pub sessions: u32,
    /// How long the sessions run (wall time).
    pub duration: Duration,
    /// How many times faster than real the relay answers and the sessions probe, ping and
    /// back off (1 = a probe every 10 s, heartbeats every 30 s, the legacy relay's latency).
    pub time_scale: f64,
    /// Wall time between two samples.
    pub sample_every: Duration,
    /// Samples in this first part of the run are not judged (allocators and pools grow).
    pub warm_up: Duration,
    /// The most resident memory may grow after warm-up (by the fitted line over the judged
    /// samples), in per cent of its value at the end of warm-up.
    pub max_growth_pct: f64,
}

impl Default for SoakOptions {
    fn default() -> Self {
        Self {
            sessions: 1_000,
            duration: Duration::from_secs(600),
            time_scale: 5.0,
            sample_every: Duration::from_secs(10),
            warm_up: Duration::from_secs(120),
            max_growth_pct: 5.0,
        }
    }
}

/// The unscaled probe interval: a monitor's usual cadence.
const PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// How long the sessions get to close, and the runtime to wind down, after the run.
const SETTLE: Duration = Duration::from_secs(15);

/// One sample of the process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Since the sessions started.
    pub elapsed: Duration,
    /// Resident memory, read after the allocator handed its free pages back.
    pub rss_kib: u64,
    /// Heap in use (glibc's `mallinfo2`), where known.
    pub heap_kib: Option<u64>,
    pub tasks: usize,
    pub fds: usize,
    /// Totals so far, over every session.
    pub connects: u64,
    pub drops: u64,
    pub responses: u64,
}

/// What a soak run found.
#[derive(Clone, Debug)]
pub struct SoakReport {
    pub options: SoakOptions,
    /// Before any session (the simulator already running).
    pub baseline_tasks: usize,
    pub baseline_fds: usize,
    pub samples: Vec<Sample>,
    /// After the sessions stopped and the relay closed their connections.
    pub end_tasks: usize,
    pub end_fds: usize,
    /// Resident memory growth after warm-up, from a least-squares line: KiB per minute, and
    /// over the judged span in per cent of the value at its start.
    pub rss_slope_kib_per_min: f64,
    pub rss_growth_pct: f64,
    /// The same for the heap in use (`None` without glibc).
    pub heap_slope_kib_per_min: Option<f64>,
    pub heap_growth_pct: Option<f64>,
    pub drops: u64,
    pub reconnects: u64,
    /// Drops not followed by a reconnect although the session had time for one (and is not
    /// still waiting out its backoff or its watch).
    pub unanswered_drops: u64,
    /// Drops not followed by a reconnect yet whose session is still in its backoff (or its
    /// watch of a relay that is down) at the end: answered, not yet due.
    pub drops_in_backoff: u64,
    /// Sessions watching a relay that is down or refused them at the end.
    pub watching_sessions: u64,
    /// Sessions that gave up (retries exhausted, refused).
    pub stopped_sessions: u64,
    pub relay_dropped: u64,
}

impl SoakReport {
    pub fn memory_flat(&self) -> bool {
        self.rss_growth_pct <= self.options.max_growth_pct
            && self
                .heap_growth_pct
                .is_none_or(|g| g <= self.options.max_growth_pct)
    }
    pub fn tasks_back(&self) -> bool {
        self.end_tasks <= self.baseline_tasks
    }
    pub fn fds_back(&self) -> bool {
        self.end_fds <= self.baseline_fds
    }
    pub fn reconnects_follow_drops(&self) -> bool {
        self.drops > 0 && self.unanswered_drops == 0 && self.stopped_sessions == 0
    }
    /// Every check passed.
    pub fn passed(&self) -> bool {
        self.memory_flat() && self.tasks_back() && self.fds_back() && self.reconnects_follow_drops()
    }
}

/// Per session: what it has reported so far.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    connects: u64,
    drops: u64,
    /// Since the run started: the last drop not yet followed by a connection.
    open_drop_us: Option<u64>,
    /// When the session's current backoff (or watch) ends, while it waits.
    backoff_until_us: Option<u64>,
    /// Whether that wait is a watch (the retries used up, or refused).
    watching: bool,
    stopped: bool,
}

/// The legacy relay, `scale` times faster.
pub fn accelerated_legacy(scale: f64) -> SimProfile {
    let legacy = SimProfile::named("legacy").unwrap_or_default();
    SimProfile {
        ttft_p50_ms: legacy.ttft_p50_ms / scale,
        ttft_p99_ms: legacy.ttft_p99_ms / scale,
        tokens_per_second: legacy.tokens_per_second * scale,
        seed: 0x50a4,
        ..legacy
    }
}

/// The protocol's timings (spec/PROTOCOL.md), `scale` times faster; the handshake limit stays
/// at least 2 s (a busy machine's accept queue is not the relay's fault).
pub fn accelerated_timing(scale: f64) -> Timing {
    let t = Timing::default();
    let s = |d: Duration| d.div_f64(scale);
    Timing {
        heartbeat: t.heartbeat.map(s),
        ws_ping: t.ws_ping,
        dead_after: s(t.dead_after),
        handshake_timeout: s(t.handshake_timeout).max(Duration::from_secs(2)),
        response_timeout: s(t.response_timeout),
        stable_after: s(t.stable_after),
        backoff: BackoffPolicy {
            base: s(t.backoff.base),
            cap: s(t.backoff.cap),
            max_attempts: t.backoff.max_attempts,
        },
        watch: t.watch.map(s),
        recheck: t.recheck.map(s),
    }
}

/// Resident memory of this process, from /proc/self/status (`None` elsewhere).
pub fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The heap in use, from glibc's allocator (`None` with another C library).
pub fn heap_kib() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let info = unsafe { libc::mallinfo2() };
        Some(((info.uordblks + info.hblkhd) / 1024) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Hands the allocator's free pages back to the system (glibc's `malloc_trim`), so that the
/// resident size counts what is in use rather than what the allocator keeps for later.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Open file descriptors of this process (`None` where /proc is missing).
pub fn open_fds() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// Runs the soak, printing a line per sample to `out`, then the table's verdict.
pub async fn run(options: SoakOptions, out: &mut dyn Write) -> anyhow::Result<SoakReport> {
    anyhow::ensure!(options.sessions > 0, "--sessions must be at least 1");
    anyhow::ensure!(
        options.time_scale.is_finite() && (1.0..=100.0).contains(&options.time_scale),
        "--time-scale must be between 1 and 100, not {}",
        options.time_scale
    );
    anyhow::ensure!(
        !options.sample_every.is_zero(),
        "--sample-every must be more than 0"
    );
    let scale = options.time_scale;
    let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
    let sim = SimServer::start(any_port, accelerated_legacy(scale)).await?;
    let url = sim.url();
    let timing = accelerated_timing(scale);
    // A drop is answered once the backoff's longest wait and a handshake have passed.
    let answer_within = timing.backoff.cap + timing.handshake_timeout + options.sample_every;

    // Let the runtime settle before taking the baseline.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline_tasks = alive_tasks();
    let baseline_fds = open_fds().unwrap_or(0);

    let clock = RunClock::new();
    let (mut supervisor, mut events) = Supervisor::new(clock);
    let key = Secret::new("hs_live_SOAKsoakSOAKsoak0001");
    for i in 0..options.sessions {
        supervisor.start(SessionSpec {
            info: SessionInfo {
                id: 0,
                name: format!("soak-{i}"),
                provider: "legacy".into(),
                model: "gpt-4.1".into(),
                protocol: Protocol::RelayV1,
                url: url.clone(),
                workload: "probe".into(),
            },
            api_key: Some(key.clone()),
            auth: Default::default(),
            workload: Workload::Probe {
                interval: PROBE_INTERVAL.div_f64(scale),
                prompt: "Say hello.".into(),
                max_tokens: Some(25),
            },
            timing,
            seed: Some(u64::from(i)),
            tap: None,
            limits: None,
            resolver: None,
        });
    }

    writeln!(
        out,
        "soak: {} sessions, legacy relay ({:.1} % drops) at {}x, {} (warm-up {}), sample every {}",
        options.sessions,
        accelerated_legacy(scale).drop_rate * 100.0,
        scale,
        humantime::format_duration(options.duration),
        humantime::format_duration(options.warm_up),
        humantime::format_duration(options.sample_every),
    )?;
    writeln!(out, "baseline: {baseline_tasks} tasks, {baseline_fds} fds")?;
    writeln!(
        out,
        "{:>8} {:>10} {:>10} {:>7} {:>6} {:>9} {:>7} {:>10}",
        "elapsed", "rss KiB", "heap KiB", "tasks", "fds", "connects", "drops", "responses"
    )?;

    let mut tallies = vec![Tally::default(); options.sessions as usize];
    let mut responses = 0u64;
    let mut samples = Vec::new();
    let start = Instant::now();
    let end = start + options.duration;
    let mut tick = tokio::time::interval_at(start + options.sample_every, options.sample_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                let Some(t) = tallies.get_mut(event.session as usize) else { continue };
                match event.kind {
                    EventKind::Connected { .. } => {
                        t.connects += 1;
                        t.open_drop_us = None;
                    }
                    EventKind::State(SessionState::BackingOff { until_us, ref watch, .. }) => {
                        t.backoff_until_us = Some(until_us);
                        t.watching = watch.is_some();
                    }
                    EventKind::State(SessionState::Connecting { .. }) => {
                        t.backoff_until_us = None;
                        t.watching = false;
                    }
                    EventKind::Closed { requested: false, .. } => {
                        t.drops += 1;
                        t.open_drop_us = Some(event.at_us);
                    }
                    EventKind::State(SessionState::Stopped { .. }) => t.stopped = true,
                    EventKind::Done(_) => responses += 1,
                    _ => {}
                }
            }
            _ = tick.tick() => {
                release_free_memory();
                let sample = Sample {
                    elapsed: start.elapsed(),
                    rss_kib: resident_kib().unwrap_or(0),
                    heap_kib: heap_kib(),
                    tasks: alive_tasks(),
                    fds: open_fds().unwrap_or(0),
                    connects: tallies.iter().map(|t| t.connects).sum(),
                    drops: tallies.iter().map(|t| t.drops).sum(),
                    responses,
                };
                writeln!(
                    out,
                    "{:>7.0}s {:>10} {:>10} {:>7} {:>6} {:>9} {:>7} {:>10}",
                    sample.elapsed.as_secs_f64(),
                    sample.rss_kib,
                    sample.heap_kib.map_or("-".to_owned(), |h| h.to_string()),
                    sample.tasks,
                    sample.fds,
                    sample.connects,
                    sample.drops,
                    sample.responses
                )?;
                out.flush()?;
                samples.push(sample);
            }
            _ = tokio::time::sleep_until(end) => break,
        }
    }
    let stop_us = u64::try_from(clock.now().as_micros()).unwrap_or(u64::MAX);
    let grace_us = u64::try_from(answer_within.as_micros()).unwrap_or(u64::MAX);
    // A drop is answered by a reconnect, or by a backoff (or a watch) still running at the end.
    let handshake_us = u64::try_from(timing.handshake_timeout.as_micros()).unwrap_or(u64::MAX);
    let waiting = |t: &Tally| {
        t.backoff_until_us
            .is_some_and(|until| until.saturating_add(handshake_us) >= stop_us)
    };
    let unanswered_drops = tallies
        .iter()
        .filter(|t| {
            t.open_drop_us
                .is_some_and(|at| stop_us.saturating_sub(at) > grace_us)
                && !waiting(t)
        })
        .count() as u64;
    let drops_in_backoff = tallies
        .iter()
        .filter(|t| t.open_drop_us.is_some() && waiting(t))
        .count() as u64;
    let watching_sessions = tallies.iter().filter(|t| t.watching).count() as u64;
    let stopped_sessions = tallies.iter().filter(|t| t.stopped).count() as u64;
    let drops: u64 = tallies.iter().map(|t| t.drops).sum();
    let reconnects: u64 = tallies.iter().map(|t| t.connects.saturating_sub(1)).sum();

    // Stop the sessions, draining their last events so that no sender waits on a full queue.
    supervisor
        .shutdown(Duration::from_secs(5), &mut events, |_| {})
        .await;
    let relay_dropped = sim.stats().responses_dropped;
    // The relay's connection tasks end when the clients' closes reach them.
    let settle_until = Instant::now() + SETTLE;
    let (mut end_tasks, mut end_fds) = (alive_tasks(), open_fds().unwrap_or(0));
    while (end_tasks > baseline_tasks || end_fds > baseline_fds) && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        end_tasks = alive_tasks();
        end_fds = open_fds().unwrap_or(0);
    }
    sim.stop().await;

    let growth = |value: fn(&Sample) -> Option<u64>| -> Option<(f64, f64)> {
        let judged: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.elapsed >= options.warm_up)
            .map(|s| Some((s.elapsed.as_secs_f64() / 60.0, value(s)? as f64)))
            .collect::<Option<_>>()?;
        let per_min = slope(&judged);
        let pct = match (judged.first(), judged.last()) {
            (Some(first), Some(last)) if first.1 > 0.0 && judged.len() >= 2 => {
                (per_min * (last.0 - first.0) / first.1 * 100.0).max(0.0)
            }
            _ => 0.0,
        };
        Some((per_min, pct))
    };
    let (rss_slope_kib_per_min, rss_growth_pct) = growth(|s| Some(s.rss_kib)).unwrap_or((0.0, 0.0));
    let heap = growth(|s| s.heap_kib);
    let report = SoakReport {
        options,
        baseline_tasks,
        baseline_fds,
        samples,
        end_tasks,
        end_fds,
        rss_slope_kib_per_min,
        rss_growth_pct,
        heap_slope_kib_per_min: heap.map(|h| h.0),
        heap_growth_pct: heap.map(|h| h.1),
        drops,
        reconnects,
        unanswered_drops,
        drops_in_backoff,
        watching_sessions,
        stopped_sessions,
        relay_dropped,
    };
    print_verdict(&report, out)?;
    Ok(report)
}

fn print_verdict(r: &SoakReport, out: &mut dyn Write) -> std::io::Result<()> {
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    let judged = r
        .samples
        .iter()
        .filter(|s| s.elapsed >= r.options.warm_up)
        .count();
    writeln!(out)?;
    writeln!(
        out,
        "{} memory: resident {:+.1} KiB/min after warm-up over {judged} samples = {:.2} % growth{} (limit {} %)",
        mark(r.memory_flat()),
        r.rss_slope_kib_per_min,
        r.rss_growth_pct,
        match (r.heap_slope_kib_per_min, r.heap_growth_pct) {
            (Some(s), Some(g)) => format!("; heap in use {s:+.1} KiB/min = {g:.2} %"),
            _ => String::new(),
        },
        r.options.max_growth_pct
    )?;
    writeln!(
        out,
        "{} tasks: {} at baseline, {} after the sessions stopped",
        mark(r.tasks_back()),
        r.baseline_tasks,
        r.end_tasks
    )?;
    writeln!(
        out,
        "{} file descriptors: {} at baseline, {} after the sessions stopped",
        mark(r.fds_back()),
        r.baseline_fds,
        r.end_fds
    )?;
    writeln!(
        out,
        "{} drops: {} seen by sessions ({} cut by the relay), {} reconnects, {} still in their backoff at the end, {} not followed by a reconnect, {} sessions watching a relay that is down, {} sessions gave up",
        mark(r.reconnects_follow_drops()),
        r.drops,
        r.relay_dropped,
        r.reconnects,
        r.drops_in_backoff,
        r.unanswered_drops,
        r.watching_sessions,
        r.stopped_sessions
    )?;
    writeln!(out, "{}", if r.passed() { "PASS" } else { "FAIL" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_a_flat_series() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect();
        assert!((slope(&line) - 3.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 5.0)).collect();
        assert_eq!(slope(&flat), 0.0);
        assert_eq!(slope(&[(1.0, 2.0)]), 0.0);
    }

    #[test]
    fn acceleration_keeps_the_drop_rate_and_shortens_every_wait() {
        let p = accelerated_legacy(10.0);
        assert_eq!(p.drop_rate, SimProfile::named("legacy").unwrap().drop_rate);
        assert!((p.ttft_p50_ms - 42.0).abs() < 1e-9);
        let t = accelerated_timing(10.0);
        assert_eq!(t.heartbeat, Some(Duration::from_secs(3)));
        assert_eq!(t.backoff.cap, Duration::from_secs(3));
        assert_eq!(t.handshake_timeout, Duration::from_secs(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_soak_reports_samples_and_reconnects() {
        let options = SoakOptions {
            sessions: 20,
            duration: Duration::from_secs(3),
            time_scale: 50.0,
            sample_every: Duration::from_millis(500),
            warm_up: Duration::from_secs(1),
            max_growth_pct: 100.0,
        };
        let mut out = Vec::new();
        let report = run(options, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(report.samples.len() >= 4, "{text}");
        assert!(
            report.samples.iter().all(|s| s.rss_kib > 0 && s.fds > 0),
            "{text}"
        );
        assert!(report.samples.last().unwrap().responses > 0, "{text}");
        assert_eq!(report.stopped_sessions, 0, "{text}");
        assert!(report.tasks_back(), "{text}");
        assert!(text.contains("tasks:"), "{text}");
    }
}
