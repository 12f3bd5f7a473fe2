//! `relaytop bench dashboard`: the dashboard's own CPU. The relaytop binary is started as a
//! person starts it, in a pseudo-terminal of a fixed size whose output is drained, and its
//! CPU is read from /proc (the process, and each thread by name) over a fixed time after a
//! warm-up; the reference, measured in the same run just before, is the same world run
//! headless, so dashboard minus headless is what the screen costs. Cases: the default world,
//! 1,000 probe sessions, 10 sessions probing once a minute.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::bench::BenchOptions;
use crate::bench::scale::clock_ticks_per_s;

/// `relaytop bench dashboard`.
#[derive(clap::Args, Debug, Clone)]
pub struct DashboardArgs {
    /// The relaytop binary to measure (repeat to measure several builds, interleaved; default:
    /// this one).
    #[arg(long, value_name = "PATH")]
    pub binary: Vec<PathBuf>,
    /// Seconds measured in each run, after the warm-up.
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0)]
    pub seconds: f64,
    /// Seconds each process runs before it is measured.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub warm_up: f64,
    /// The cases to run (default: all three).
    #[arg(long, value_enum, value_name = "CASE")]
    pub case: Vec<DashboardCase>,
    /// Rounds: each round measures every binary once in each case, headless then dashboard.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub runs: usize,
    /// The pseudo-terminal's size, COLUMNSxROWS.
    #[arg(long, value_name = "COLSxROWS", default_value = "200x50", value_parser = parse_size)]
    pub size: (u16, u16),
}

/// A world the dashboard shows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DashboardCase {
    /// The default world: 40 sessions on three simulated stations, streaming every second or two.
    Default,
    /// 1,000 probe sessions on one simulated relay, a probe every 5 s each.
    Probes1000,
    /// 10 probe sessions on one simulated relay, a probe a minute each.
    Idle10,
}

impl DashboardCase {
    const ALL: [DashboardCase; 3] = [
        DashboardCase::Default,
        DashboardCase::Probes1000,
        DashboardCase::Idle10,
    ];

    fn label(self) -> &'static str {
        match self {
            DashboardCase::Default => "default world (40 sessions)",
            DashboardCase::Probes1000 => "1,000 probe sessions",
            DashboardCase::Idle10 => "10 sessions, a probe a minute",
        }
    }

    /// The issue's target for the dashboard's own cost, % of one core.
    fn target(self) -> &'static str {
        match self {
            DashboardCase::Default => "<= 3",
            DashboardCase::Probes1000 => "<= 5",
            DashboardCase::Idle10 => "keep",
        }
    }

    /// The configuration the case runs.
    pub fn config(self) -> String {
        match self {
            DashboardCase::Default => relaytop_core::world::DEFAULT_WORLD.to_owned(),
            DashboardCase::Probes1000 => probes_config(1_000, 5),
            DashboardCase::Idle10 => probes_config(10, 60),
        }
    }
}

/// `count` probe sessions on one simulated relay/v1 relay, one prompt every `interval_s`.
fn probes_config(count: u32, interval_s: u32) -> String {
    format!(
        r#"# relaytop bench dashboard: {count} probe sessions, a prompt every {interval_s} s each.
[[providers]]
name = "sim"
simulate = "holysheep"
model = "gpt-4.1"
requests_per_minute = 1000000
max_connections = {count}

[[sessions]]
name = "probe"
provider = "sim"
count = {count}
interval_s = {interval_s}
max_tokens = 25
"#
    )
}

fn parse_size(text: &str) -> Result<(u16, u16), String> {
    let (cols, rows) = text
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{text}: expected COLSxROWS, e.g. 200x50"))?;
    let parse = |n: &str| n.trim().parse::<u16>().ok().filter(|n| *n >= 10);
    match (parse(cols), parse(rows)) {
        (Some(c), Some(r)) => Ok((c, r)),
        _ => Err(format!("{text}: expected COLSxROWS of at least 10 each")),
    }
}

/// User and system clock ticks from a /proc `stat` line (fields 14 and 15; the command name
/// in parentheses may hold spaces and parentheses).
pub fn stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A process's CPU at one moment: the whole process and each live thread.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuSample {
    pub process: u64,
    /// Thread id → (group name, ticks).
    pub threads: BTreeMap<u32, (String, u64)>,
}

/// The group a thread's CPU is shown under: the main thread (the dashboard's loop and the
/// event fold, or the headless consumer) by itself, the others by name.
pub fn thread_group(pid: u32, tid: u32, comm: &str) -> String {
    if tid == pid {
        "main".to_owned()
    } else {
        comm.trim().to_owned()
    }
}

fn sample(pid: u32) -> anyhow::Result<CpuSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    let process = stat_ticks(&stat).context("unreadable /proc/PID/stat")?;
    let mut threads = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let (Ok(stat), Ok(comm)) = (
            std::fs::read_to_string(dir.join("stat")),
            std::fs::read_to_string(dir.join("comm")),
        ) else {
            continue; // the thread ended meanwhile
        };
        if let Some(ticks) = stat_ticks(&stat) {
            threads.insert(tid, (thread_group(pid, tid, &comm), ticks));
        }
    }
    Ok(CpuSample { process, threads })
}

/// CPU between two samples, in ticks: the whole process, and by thread group (a thread born
/// after the first sample counts from zero; one that ended is only in the process figure).
pub fn cpu_between(before: &CpuSample, after: &CpuSample) -> (u64, BTreeMap<String, u64>) {
    let mut groups: BTreeMap<String, u64> = BTreeMap::new();
    for (tid, (group, ticks)) in &after.threads {
        let was = before.threads.get(tid).map_or(0, |(_, t)| *t);
        *groups.entry(group.clone()).or_default() += ticks.saturating_sub(was);
    }
    (after.process.saturating_sub(before.process), groups)
}

/// Ticks over `seconds` as % of one core.
pub fn percent_of_core(ticks: u64, seconds: f64, ticks_per_s: f64) -> f64 {
    if seconds <= 0.0 || ticks_per_s <= 0.0 {
        return 0.0;
    }
    ticks as f64 / ticks_per_s / seconds * 100.0
}

/// What one measured process used, % of one core.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub total: f64,
    pub groups: BTreeMap<String, f64>,
    /// Bytes a second written to the terminal (0 headless).
    pub terminal_bytes_per_s: f64,
}

impl Usage {
    fn group(&self, name: &str) -> f64 {
        self.groups.get(name).copied().unwrap_or(0.0)
    }

    /// Every group but the main thread and the runtime's workers.
    fn other(&self) -> f64 {
        self.groups
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "main" | WORKERS))
            .map(|(_, v)| v)
            .sum()
    }
}

/// Tokio's worker threads' name (as /proc shows it: 15 bytes).
const WORKERS: &str = "tokio-rt-worker";

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Running {
    child: Child,
    /// The pty's output reader, and the bytes it read.
    reader: Option<std::thread::JoinHandle<()>>,
    bytes: Arc<AtomicU64>,
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn stop(&mut self) {
        if self.exited().is_none() {
            // SIGTERM lets the dashboard give its terminal back and finish its recording.
            if let Ok(pid) = i32::try_from(self.child.id()) {
                // SAFETY: kill only sends a signal to our own child.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where one run's recording and logs go; removed afterwards.
struct Scratch {
    dir: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The arguments every run gets (before the subcommand, if any).
fn common_args(
    config: &Path,
    scratch: &Path,
    options: &BenchOptions,
    run: usize,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec!["--config".into(), config.into()];
    args.push("--log-dir".into());
    args.push(scratch.join("logs").into());
    if options.no_record {
        args.push("--no-record".into());
    } else {
        let root = options
            .record_dir
            .clone()
            .unwrap_or_else(|| scratch.join("recordings"));
        args.push("--record-dir".into());
        args.push(root.join(format!("run-{run}")).into());
    }
    args
}

fn base_command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG");
    command
}

/// Starts `binary headless` with stdout to nowhere.
fn start_headless(binary: &Path, args: &[std::ffi::OsString]) -> anyhow::Result<Running> {
    let child = base_command(binary)
        .arg("headless")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {} headless", binary.display()))?;
    Ok(Running {
        child,
        reader: None,
        bytes: Arc::new(AtomicU64::new(0)),
    })
}

/// Starts `binary` as a person does, on a new pseudo-terminal of `size` that is its
/// controlling terminal; a thread drains (and counts) what it writes.
fn start_dashboard(
    binary: &Path,
    args: &[std::ffi::OsString],
    (cols, rows): (u16, u16),
) -> anyhow::Result<Running> {
    let mut master: libc::c_int = -1;
    let mut slave: libc::c_int = -1;
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors it opened into the two integers we own.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    if opened != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot open a pseudo-terminal");
    }
    // SAFETY: both descriptors were just opened by openpty and nothing else owns them.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut command = base_command(binary);
    command
        .args(args)
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave.try_clone()?));
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    // The child holds the terminal now; our copy would keep it open after the child exits.
    drop(slave);
    let bytes = Arc::new(AtomicU64::new(0));
    let counted = bytes.clone();
    let mut file = std::fs::File::from(master);
    let reader = std::thread::Builder::new()
        .name("bench-pty".into())
        .spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            // Ends with EIO once the child and its descendants closed the terminal.
            while let Ok(n) = file.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                counted.fetch_add(n as u64, Ordering::Relaxed);
            }
        })?;
    Ok(Running {
        child,
        reader: Some(reader),
        bytes,
    })
}

/// Warms `running` up, then measures it for `seconds`.
async fn measure(mut running: Running, args: &DashboardArgs) -> anyhow::Result<Usage> {
    tokio::time::sleep(Duration::from_secs_f64(args.warm_up)).await;
    if let Some(status) = running.exited() {
        anyhow::bail!("relaytop ended during the warm-up ({status})");
    }
    let pid = running.pid();
    let before = sample(pid)?;
    let bytes_before = running.bytes.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    let after = sample(pid)?;
    let elapsed = started.elapsed().as_secs_f64();
    let bytes = running.bytes.load(Ordering::Relaxed) - bytes_before;
    if let Some(status) = running.exited() {
        anyhow::bail!("relaytop ended while it was measured ({status})");
    }
    running.stop();
    let ticks_per_s = clock_ticks_per_s();
    let (total, groups) = cpu_between(&before, &after);
    Ok(Usage {
        total: percent_of_core(total, elapsed, ticks_per_s),
        groups: groups
            .into_iter()
            .map(|(name, ticks)| (name, percent_of_core(ticks, elapsed, ticks_per_s)))
            .collect(),
        terminal_bytes_per_s: bytes as f64 / elapsed,
    })
}

/// One case, one binary: the headless reference and the dashboard.
#[derive(Clone, Debug)]
pub struct Measured {
    pub case: DashboardCase,
    pub binary: PathBuf,
    pub headless: Usage,
    pub dashboard: Usage,
}

impl Measured {
    /// What the screen costs: the dashboard's process minus the headless one's.
    pub fn dashboard_only(&self) -> f64 {
        self.dashboard.total - self.headless.total
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Runs the cases and prints their table.
pub async fn run(
    args: &DashboardArgs,
    options: &BenchOptions,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Vec<Measured>> {
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be > 0");
    let binaries = if args.binary.is_empty() {
        vec![std::env::current_exe().context("cannot find relaytop's own executable")?]
    } else {
        args.binary.clone()
    };
    let cases = if args.case.is_empty() {
        DashboardCase::ALL.to_vec()
    } else {
        args.case.clone()
    };
    let scratch = Scratch {
        dir: std::env::temp_dir().join(format!("relaytop-bench-dashboard-{}", std::process::id())),
    };
    std::fs::create_dir_all(&scratch.dir)?;
    writeln!(
        out,
        "dashboard: a {}x{} pseudo-terminal; {:.0} s measured after {:.0} s warm-up; headless \
         first, same config; load average {}",
        args.size.0,
        args.size.1,
        args.seconds,
        args.warm_up,
        load_average()
    )?;
    let mut results = Vec::new();
    let mut run = 0;
    for round in 0..args.runs.max(1) {
        for &case in &cases {
            let config = scratch.dir.join(format!("{case:?}.toml"));
            std::fs::write(&config, case.config())?;
            for binary in &binaries {
                run += 1;
                let common = common_args(&config, &scratch.dir, options, run);
                let headless = measure(start_headless(binary, &common)?, args)
                    .await
                    .with_context(|| format!("{} headless, {}", binary.display(), case.label()))?;
                run += 1;
                let common = common_args(&config, &scratch.dir, options, run);
                let dashboard = measure(start_dashboard(binary, &common, args.size)?, args)
                    .await
                    .with_context(|| format!("{} dashboard, {}", binary.display(), case.label()))?;
                let measured = Measured {
                    case,
                    binary: binary.clone(),
                    headless,
                    dashboard,
                };
                writeln!(
                    out,
                    "  round {} {:<30} {:<40} dashboard {:>5.1} %  headless {:>5.1} %  (load {})",
                    round + 1,
                    case.label(),
                    binary.display(),
                    measured.dashboard.total,
                    measured.headless.total,
                    load_average()
                )?;
                results.push(measured);
            }
        }
    }
    print_table(&results, out)?;
    Ok(results)
}

fn print_table(results: &[Measured], out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    writeln!(
        out,
        "\n% of one core                    binary                         dashboard  headless  \
         dash-only  target   main d/h    workers d/h  other d/h   terminal KiB/s"
    )?;
    for m in results {
        let name = m.binary.file_name().map_or_else(
            || m.binary.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let (d, h) = (&m.dashboard, &m.headless);
        writeln!(
            out,
            "{:<32} {:<30} {:>9.2} {:>9.2} {:>10.2}  {:<6} {:>5.2}/{:<5.2} {:>6.2}/{:<5.2} {:>5.2}/{:<5.2} {:>10.1}",
            m.case.label(),
            name,
            d.total,
            h.total,
            m.dashboard_only(),
            m.case.target(),
            d.group("main"),
            h.group("main"),
            d.group(WORKERS),
            h.group(WORKERS),
            d.other(),
            h.other(),
            d.terminal_bytes_per_s / 1024.0,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_reads_utime_and_stime_past_a_name_with_spaces() {
        let line = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 \
                    8 0 100 0 0";
        assert_eq!(stat_ticks(line), Some(1290));
        assert_eq!(stat_ticks("garbage"), None);
    }

    #[test]
    fn cpu_between_counts_new_threads_from_zero_and_groups_by_name() {
        let before = CpuSample {
            process: 100,
            threads: BTreeMap::from([
                (10, ("main".into(), 40)),
                (11, (WORKERS.into(), 30)),
                (12, (WORKERS.into(), 30)),
            ]),
        };
        let after = CpuSample {
            process: 190,
            threads: BTreeMap::from([
                (10, ("main".into(), 60)),
                (11, (WORKERS.into(), 50)),
                (12, (WORKERS.into(), 40)),
                (13, ("relaytop-record".into(), 5)),
            ]),
        };
        let (total, groups) = cpu_between(&before, &after);
        assert_eq!(total, 90);
        assert_eq!(groups["main"], 20);
        assert_eq!(groups[WORKERS], 30);
        assert_eq!(groups["relaytop-record"], 5);
    }

    #[test]
    fn the_main_thread_is_told_apart_by_its_id() {
        assert_eq!(thread_group(7, 7, "relaytop\n"), "main");
        assert_eq!(thread_group(7, 8, "tokio-rt-worker\n"), WORKERS);
    }

    #[test]
    fn percent_of_one_core() {
        assert_eq!(percent_of_core(200, 20.0, 100.0), 10.0);
        assert_eq!(percent_of_core(5, 0.0, 100.0), 0.0);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("200x50"), Ok((200, 50)));
        assert!(parse_size("200").is_err());
        assert!(parse_size("5x5").is_err());
    }

    #[test]
    fn every_case_is_a_valid_configuration() {
        for case in DashboardCase::ALL {
            let text = case.config();
            let config = relaytop_core::config::file::parse(&text, "bench", &|_| {
                panic!("the bench's worlds read no key")
            });
            let config = config.unwrap_or_else(|e| panic!("{case:?}: {e}"));
            let sessions = config.sessions.len();
            let expected = match case {
                DashboardCase::Default => 40,
                DashboardCase::Probes1000 => 1_000,
                DashboardCase::Idle10 => 10,
            };
            assert_eq!(sessions, expected, "{case:?}");
        }
    }
}
