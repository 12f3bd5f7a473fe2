//! `relaytop bench scale`'s whole-process cases: what users run, measured from outside. A
//! build of relaytop (this one, or `--binary PATH`, so that two builds are compared in one
//! session, interleaved) runs `headless` as a user starts it, recording on (the default),
//! against a simulated relay in this process that counts the upgrades it answers: the time
//! until the first and the last of N probe sessions connect, the resident memory per
//! session, the "Too many open files" in its log, what it recorded, and the CPU of N idle
//! heartbeating sessions (read from /proc/PID/stat).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use relaytop_sim::{SimProfile, SimServer};

use crate::bench::median;
use crate::bench::scale::{ScaleArgs, clock_ticks_per_s, resident_bytes_in, stat_ticks};

/// The workload of a whole-process run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    /// Probe sessions (the default world's kind), each probing every `--probe-interval-s`.
    Probe,
    /// Sessions that only heartbeat (chat sessions nobody types in).
    Idle,
}

/// What one whole-process run measured.
#[derive(Clone, Debug, Default)]
pub struct ProcessRun {
    /// Seconds from the start of the process to the first session connected.
    pub first_s: f64,
    /// ... to the last (`None`: not all connected by the deadline).
    pub all_s: Option<f64>,
    /// Sessions connected (upgrades answered, reconnects included) by the deadline.
    pub connected: u64,
    /// Resident memory per session (KiB), above a one-session run of the same build.
    pub kib_per_session: f64,
    /// CPU over the idle window, % of one core (idle runs only).
    pub cpu_percent: Option<f64>,
    /// "Too many open files" lines in the process's log.
    pub open_file_errors: u64,
    /// Session files in the run's recording, and those its run.json names.
    pub files: (usize, usize),
}

/// Runs the whole-process cases for every build in `args.binary` (this one when none),
/// `args.rounds` times, interleaved, and prints them.
pub async fn run(
    args: &ScaleArgs,
    no_record: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let binaries: Vec<PathBuf> = if args.binary.is_empty() {
        vec![std::env::current_exe().context("cannot find relaytop's own executable")?]
    } else {
        args.binary.clone()
    };
    let record = if no_record {
        "recording off"
    } else {
        "recording on"
    };
    writeln!(
        out,
        "whole process ({record}): {} sessions, {} round(s) over {} build(s), load average {}",
        args.sessions,
        args.rounds,
        binaries.len(),
        load_average()
    )?;
    let mut results: Vec<Vec<(ProcessRun, ProcessRun)>> = vec![Vec::new(); binaries.len()];
    let mut bares: Vec<ProcessRun> = Vec::new();
    for round in 1..=args.rounds {
        // The reference: bare connections heartbeating as relaytop's idle sessions do.
        let one = measure_bare_idle(args, 1).await?;
        let mut bare = measure_bare_idle(args, args.sessions).await?;
        bare.kib_per_session = (bare.kib_per_session * f64::from(args.sessions)
            - one.kib_per_session)
            / f64::from(args.sessions - 1).max(1.0);
        writeln!(
            out,
            "  round {round} bare tokio-tungstenite idle client: all {}, {:.1} KiB/session, CPU {:.2} % \
             (load average {})",
            shown(bare.all_s, bare.connected, args.sessions),
            bare.kib_per_session,
            bare.cpu_percent.unwrap_or(0.0),
            load_average()
        )?;
        bares.push(bare);
        for (i, binary) in binaries.iter().enumerate() {
            let base = measure(binary, args, Load::Idle, 1, no_record).await?;
            let probe = measure(binary, args, Load::Probe, args.sessions, no_record).await?;
            let idle = measure(binary, args, Load::Idle, args.sessions, no_record).await?;
            let per = |r: &ProcessRun| {
                let mut r = r.clone();
                r.kib_per_session = (r.kib_per_session * f64::from(args.sessions)
                    - base.kib_per_session)
                    / f64::from(args.sessions - 1).max(1.0);
                r
            };
            let (probe, idle) = (per(&probe), per(&idle));
            writeln!(
                out,
                "  round {round} {}: probe: first {:.2} s, all {}, {:.1} KiB/session, {} open-file \
                 errors, {}/{} files in run.json; idle: all {}, {:.1} KiB/session, CPU {:.2} % \
                 (load average {})",
                binary.display(),
                probe.first_s,
                shown(probe.all_s, probe.connected, args.sessions),
                probe.kib_per_session,
                probe.open_file_errors,
                probe.files.1,
                probe.files.0,
                shown(idle.all_s, idle.connected, args.sessions),
                idle.kib_per_session,
                idle.cpu_percent.unwrap_or(0.0),
                load_average()
            )?;
            results[i].push((probe, idle));
        }
    }
    writeln!(
        out,
        "build (medians)                   first (s)  all open (s)  KiB/session  open-file errors  idle CPU %"
    )?;
    for (binary, runs) in binaries.iter().zip(&results) {
        let m = |f: &dyn Fn(&(ProcessRun, ProcessRun)) -> f64| {
            median(&runs.iter().map(f).collect::<Vec<_>>())
        };
        let name = binary
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        // A round where not every session connected is "never", not a figure.
        let opened: Vec<f64> = runs.iter().filter_map(|r| r.0.all_s).collect();
        let all_open = match opened.len() {
            0 => "never".to_owned(),
            k if k < runs.len() => format!("{:.2}, {} never", median(&opened), runs.len() - k),
            _ => format!("{:.2}", median(&opened)),
        };
        writeln!(
            out,
            "{name:<32}  {:>9.2}  {all_open:>12}  {:>11.1}  {:>16.0}  {:>10.2}",
            m(&|r| r.0.first_s),
            m(&|r| r.0.kib_per_session),
            m(&|r| r.0.open_file_errors as f64),
            m(&|r| r.1.cpu_percent.unwrap_or(0.0)),
        )?;
    }
    let bare_cpu = median(
        &bares
            .iter()
            .map(|r| r.cpu_percent.unwrap_or(0.0))
            .collect::<Vec<_>>(),
    );
    writeln!(
        out,
        "{:<32}  {:>9}  {:>12.2}  {:>11.1}  {:>16}  {:>10.2}",
        "bare idle client (reference)",
        "",
        median(
            &bares
                .iter()
                .map(|r| r.all_s.unwrap_or(f64::INFINITY))
                .collect::<Vec<_>>()
        ),
        median(&bares.iter().map(|r| r.kib_per_session).collect::<Vec<_>>()),
        "",
        bare_cpu,
    )?;
    for (binary, runs) in binaries.iter().zip(&results) {
        let idle = median(
            &runs
                .iter()
                .map(|r| r.1.cpu_percent.unwrap_or(0.0))
                .collect::<Vec<_>>(),
        );
        writeln!(
            out,
            "{}: idle CPU {:.2}x the bare client's",
            binary.display(),
            idle / bare_cpu.max(f64::MIN_POSITIVE)
        )?;
    }
    writeln!(
        out,
        "targets: all open < 2 s, <= 32 KiB a session, no open-file errors, idle <= 2 % of a core"
    )?;
    Ok(())
}

fn shown(all_s: Option<f64>, connected: u64, n: u32) -> String {
    match all_s {
        Some(s) => format!("{s:.2} s"),
        None => format!("only {connected} of {n} connected"),
    }
}

/// One run of `binary headless` with `n` sessions doing `load`.
async fn measure(
    binary: &Path,
    args: &ScaleArgs,
    load: Load,
    n: u32,
    no_record: bool,
) -> anyhow::Result<ProcessRun> {
    let profile = SimProfile {
        ttft_p50_ms: 1.0,
        ttft_p99_ms: 1.0,
        tokens_per_second: 0.0,
        tokens_per_response: args.chunks,
        ..SimProfile::default()
    };
    let sim = SimServer::start(([127, 0, 0, 1], 0).into(), profile).await?;
    let tmp = tempfile::Builder::new()
        .prefix("relaytop-bench-scale-")
        .tempdir()?;
    let config = tmp.path().join("scale.toml");
    let (workload, interval) = match load {
        Load::Probe => ("probe", format!("interval_s = {}\n", args.probe_interval_s)),
        Load::Idle => ("chat", String::new()),
    };
    std::fs::write(
        &config,
        format!(
            "[defaults]\nheartbeat_s = {hb}\ndead_after_s = {dead}\n\n[[providers]]\nname = \"sim\"\n\
             url = \"{url}\"\napi_key_env = \"RELAYTOP_BENCH_KEY\"\nmodel = \"bench\"\n\
             max_connections = {n}\nrequests_per_minute = {rpm}\n\n\
             [[sessions]]\nname = \"s\"\nprovider = \"sim\"\nworkload = \"{workload}\"\ncount = {n}\n{interval}",
            hb = args.heartbeat_s,
            dead = (args.heartbeat_s * 4.0).max(30.0),
            url = sim.url(),
            // Room for every session at once, and for all their probes twice over.
            rpm = (f64::from(n) * 120.0 / args.probe_interval_s.max(0.1)).ceil() as u64,
        ),
    )?;
    let mut command = Command::new(binary);
    command
        .env("RELAYTOP_BENCH_KEY", relaytop_core::world::SIMULATOR_KEY)
        .env("HOME", tmp.path())
        .env("XDG_CONFIG_HOME", tmp.path().join("config"))
        .env("XDG_STATE_HOME", tmp.path().join("state"))
        .env_remove("RUST_LOG")
        .arg("--log-dir")
        .arg(tmp.path().join("logs"))
        .arg("--record-dir")
        .arg(tmp.path().join("rec"));
    if no_record {
        command.arg("--no-record");
    }
    command
        .args([
            "headless",
            "--format",
            "json",
            "--duration",
            "10m",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (started, mut child) = spawn(&mut command, binary)?;
    let mut run = observe(&sim, &mut child, started, args, load, n).await?;
    child.stop(Duration::from_secs(60));
    sim.stop().await;
    run.open_file_errors = count_in_logs(&tmp.path().join("logs"), "Too many open files");
    run.files = recorded_files(&tmp.path().join("rec"));
    Ok(run)
}

/// The reference for the idle case: `relaytop bench bare --idle N` (this build), N bare
/// tokio-tungstenite connections sending the same pings as relaytop's idle sessions, against
/// the same simulated relay, measured as `measure` measures relaytop.
async fn measure_bare_idle(args: &ScaleArgs, n: u32) -> anyhow::Result<ProcessRun> {
    let sim = SimServer::start(([127, 0, 0, 1], 0).into(), SimProfile::default()).await?;
    let binary = std::env::current_exe().context("cannot find relaytop's own executable")?;
    let mut command = Command::new(&binary);
    command
        .args(["bench", "bare", "--idle"])
        .arg(n.to_string())
        .arg("--heartbeat-s")
        .arg(args.heartbeat_s.to_string())
        .arg(sim.url())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let (started, mut child) = spawn(&mut command, &binary)?;
    let run = observe(&sim, &mut child, started, args, Load::Idle, n).await;
    child.stop(Duration::from_secs(5));
    sim.stop().await;
    run
}

/// Starts `command` (`binary`'s): when, and the child, stopped however the measurement ends.
fn spawn(command: &mut Command, binary: &Path) -> anyhow::Result<(Instant, ChildGuard)> {
    let started = Instant::now();
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    Ok((started, ChildGuard(child)))
}

/// Watches `child` connect `n` sessions to `sim`, then reads its memory and (idle, n > 1)
/// its CPU over `--idle-s`.
async fn observe(
    sim: &SimServer,
    child: &mut ChildGuard,
    started: Instant,
    args: &ScaleArgs,
    load: Load,
    n: u32,
) -> anyhow::Result<ProcessRun> {
    let pid = child.0.id();

    // Connections, as the relay counts the upgrades it answered.
    let mut run = ProcessRun::default();
    let deadline = started + Duration::from_secs(60);
    let mut first = None;
    loop {
        let accepted = sim.stats().connections_accepted;
        if first.is_none() && accepted > 0 {
            first = Some(started.elapsed().as_secs_f64());
        }
        if accepted >= u64::from(n) {
            run.all_s = Some(started.elapsed().as_secs_f64());
            break;
        }
        if Instant::now() >= deadline || child.0.try_wait()?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run.first_s = first.unwrap_or(f64::INFINITY);
    // The first heartbeats go round (and the recorder writes) before memory is read.
    tokio::time::sleep(Duration::from_secs_f64(args.heartbeat_s.max(1.0) + 1.0)).await;
    run.connected = sim.stats().connections_accepted;
    run.kib_per_session = resident_kib(pid) / f64::from(n);
    if load == Load::Idle && n > 1 {
        let before = cpu_ticks(pid);
        let idle_started = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(args.idle_s)).await;
        run.cpu_percent = Some(
            (cpu_ticks(pid) - before) / clock_ticks_per_s() / idle_started.elapsed().as_secs_f64()
                * 100.0,
        );
    }
    Ok(run)
}

/// The child, stopped (SIGTERM, then SIGKILL) however the measurement ends.
struct ChildGuard(Child);

impl ChildGuard {
    /// Asks the run to end as a user's Ctrl-C does (it then finishes its recording), and
    /// waits for it up to `grace`.
    fn stop(&mut self, grace: Duration) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill only sends a signal to our own child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Resident memory of process `pid` in KiB.
fn resident_kib(pid: u32) -> f64 {
    resident_bytes_in(&format!("/proc/{pid}/statm")) / 1024.0
}

/// User and system CPU ticks of process `pid` (/proc/PID/stat).
fn cpu_ticks(pid: u32) -> f64 {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default())
}

/// Lines holding `needle` in the log files under `dir`.
fn count_in_logs(dir: &Path, needle: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|text| text.lines().filter(|l| l.contains(needle)).count() as u64)
        .sum()
}

/// The session files of the one run recorded under `root`, and those its run.json names.
fn recorded_files(root: &Path) -> (usize, usize) {
    let Some(dir) = std::fs::read_dir(root)
        .ok()
        .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path())))
    else {
        return (0, 0);
    };
    let on_disk = std::fs::read_dir(&dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".jsonl"))
            .count()
    });
    let listed = std::fs::read_to_string(dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<relaytop_core::record::format::RunManifest>(&t).ok())
        .map_or(0, |m| m.files.len());
    (on_disk, listed)
}

/// The system's load average over the last minute (/proc/loadavg).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
