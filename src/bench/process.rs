//! A child process measured as the user would run it: its wall time, the CPU it used (user
//! and system) from the kernel when it is reaped (`wait4`), and its peak resident memory.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// What a finished child cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    pub wall: Duration,
    /// User plus system CPU time.
    pub cpu: Duration,
    /// Peak resident memory (bytes).
    pub peak_rss: u64,
    /// It exited with status 0.
    pub success: bool,
    /// CPU the server it talked to used meanwhile, when the caller measured it (a server in
    /// the bench's own process: `relaytop bench ingest`'s blaster).
    pub server_cpu: Option<Duration>,
}

/// Runs `command` to its end and measures it.
pub fn run(command: &mut Command) -> std::io::Result<Cost> {
    let start = Instant::now();
    let child = command.spawn()?;
    reap(child, start)
}

/// Waits for `child` (spawned at `start`) and measures it. The child is reaped here: do not
/// wait for it again.
pub fn reap(child: Child, start: Instant) -> std::io::Result<Cost> {
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    // The kernel's own peak (`ru_maxrss`) counts this process's memory copied at the fork,
    // not the child's: its high-water mark is read from /proc while it runs instead.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(hwm) = high_water_mark(pid) {
                    peak = peak.max(hwm);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of the plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 writes only the status and the rusage passed, both owned here; `pid`
        // is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let wall = start.elapsed();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_rss = watcher.join().unwrap_or(0);
    drop(child);
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(Cost {
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        peak_rss,
        success: libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        server_cpu: None,
    })
}

/// The peak resident memory of process `pid` so far (`VmHWM`, bytes).
fn high_water_mark(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Each figure's median on its own (wall, CPU, peak memory) over `costs`.
pub fn median(costs: &[Cost]) -> Cost {
    let of = |f: &dyn Fn(&Cost) -> f64| super::median(&costs.iter().map(f).collect::<Vec<_>>());
    Cost {
        wall: Duration::from_secs_f64(of(&|c| c.wall.as_secs_f64())),
        cpu: Duration::from_secs_f64(of(&|c| c.cpu.as_secs_f64())),
        peak_rss: of(&|c| c.peak_rss as f64) as u64,
        success: costs.iter().all(|c| c.success),
        server_cpu: costs
            .iter()
            .all(|c| c.server_cpu.is_some())
            .then(|| {
                Duration::from_secs_f64(of(&|c| c.server_cpu.unwrap_or_default().as_secs_f64()))
            })
            .filter(|_| !costs.is_empty()),
    }
}
