//! Crash safety: a recorded run killed with SIGKILL keeps everything up to its last flush
//! (the recorder writes every quarter second) and replays, a torn last line reported with its
//! place; and the dashboard, run in a pseudo-terminal, gives the terminal back (main screen,
//! cursor, cooked mode) on SIGTERM and on a panic, whose message comes after the restore.

use crate::pty;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use relaytop_core::record::Replay;
use relaytop_core::record::reader::{self, Item, LineReader, Position};
use relaytop_core::record::writer::FLUSH_EVERY;
use support::TEST_KEY;

const ENTER_ALTERNATE_SCREEN: &[u8] = b"\x1b[?1049h";
const LEAVE_ALTERNATE_SCREEN: &[u8] = b"\x1b[?1049l";
const SHOW_CURSOR: &[u8] = b"\x1b[?25h";

/// relaytop with its config, state and logs inside `tmp` (never the user's own).
fn relaytop(tmp: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relaytop"));
    support::without_tool_variables(&mut command)
        .env("HOME", tmp)
        .env("XDG_CONFIG_HOME", tmp.join("config"))
        .env("XDG_STATE_HOME", tmp.join("state"))
        .env_remove("RUST_LOG")
        .arg("--log-dir")
        .arg(tmp.join("logs"))
        .arg("--record-dir")
        .arg(tmp.join("rec"));
    command
}

/// The one run directory under `rec`, once there is one.
fn run_dir(rec: &Path) -> Option<PathBuf> {
    std::fs::read_dir(rec)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_dir())
}

/// The latest event time written to any session file of `dir` so far.
fn latest_time(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .filter_map(|p| reader::last_time(&p).ok().flatten())
        .max()
}

/// Every session of a run read to its end: (records, latest time, torn positions).
fn read_all(dir: &Path) -> (u64, u64, Vec<(PathBuf, Position)>) {
    let recordings = reader::discover(&[dir.to_owned()]).expect("the run's files open");
    assert!(!recordings.sessions.is_empty());
    let (mut records, mut latest, mut torn) = (0, 0, Vec::new());
    // Raw times, as `reader::last_time` reads them (one run: one clock).
    for session in &recordings.sessions {
        let mut lines = LineReader::new(session.parts.clone(), Position::START);
        loop {
            match lines.next_item().expect("reading goes on") {
                Item::Record { record, .. } => {
                    records += 1;
                    latest = latest.max(record.t_us);
                }
                Item::Malformed { at, reason } => {
                    panic!(
                        "a killed run left a malformed line in {:?} at {at:?}: {reason}",
                        session.parts
                    )
                }
                Item::Torn { at } => {
                    torn.push((session.parts[at.part].clone(), at));
                    assert_eq!(lines.next_item().unwrap(), Item::End);
                    break;
                }
                Item::End => break,
            }
        }
    }
    (records, latest, torn)
}

#[test]
fn a_run_killed_with_sigkill_keeps_all_but_the_last_quarter_second() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = relaytop(tmp.path())
        .args(["headless", "--duration", "60s", "--format", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("relaytop starts");

    // Wait (bounded) until a second of the run is on disk.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (dir, seen_at, seen_us) = loop {
        assert!(Instant::now() < deadline, "no recording after 30 s");
        if let Some(dir) = run_dir(&tmp.path().join("rec"))
            && let Some(t) = latest_time(&dir)
            && t > 1_000_000
        {
            break (dir, Instant::now(), t);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(1500));
    let killed_after = seen_at.elapsed();
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    child.wait().unwrap();

    let (records, latest, torn) = read_all(&dir);
    // The run's clock went on for `killed_after` after `seen_us` was on disk; all of it but
    // the last flush interval (and some scheduling slack on a busy machine) must be there.
    let killed_at_us = seen_us + killed_after.as_micros() as u64;
    let slack = Duration::from_millis(750);
    let lost = killed_at_us.saturating_sub(latest);
    eprintln!(
        "killed {} ms after {seen_us} µs was on disk: {records} records, the last at {latest} µs \
         ({lost} µs lost), {} torn",
        killed_after.as_millis(),
        torn.len()
    );
    assert!(
        lost <= (FLUSH_EVERY + slack).as_micros() as u64,
        "the recording ends {lost} µs before the kill ({records} records, latest at {latest} µs)"
    );

    // The replay reads it all, says where each torn session stopped, and still succeeds.
    let mut replay = Replay::open(std::slice::from_ref(&dir)).expect("a killed run opens");
    let mut events = 0u64;
    while replay.next_event().is_some() {
        events += 1;
    }
    assert!(events > 0);
    let stats = replay.read_stats();
    assert_eq!(stats.malformed, 0, "{:?}", stats.first_malformed);
    assert_eq!(stats.torn.len(), torn.len(), "{:?} vs {torn:?}", stats.torn);
    for ((file, at), problem) in torn.iter().zip(&stats.torn) {
        assert_eq!(
            (&problem.file, problem.line, problem.offset),
            (file, at.line, at.offset)
        );
    }
    let out = relaytop(tmp.path())
        .args(["replay", "--headless", "--format", "json"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert!(report.is_object());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (file, at) in &torn {
        let said = format!(
            "{}: stopped at line {} (byte {})",
            file.display(),
            at.line,
            at.offset
        );
        assert!(stderr.contains(&said), "{said} not in {stderr}");
    }
}

#[test]
fn a_torn_last_line_is_reported_with_its_place_and_the_rest_replays() {
    let tmp = tempfile::tempdir().unwrap();
    let out = relaytop(tmp.path())
        .args(["headless", "--duration", "2s", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let dir = run_dir(&tmp.path().join("rec")).expect("a run directory");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a session file");
    let whole = std::fs::read(&file).unwrap();
    let lines = whole.iter().filter(|b| **b == b'\n').count() as u64;
    let count = |paths: &[PathBuf]| {
        let mut replay = Replay::open(paths).unwrap();
        let mut n = 0;
        while replay.next_event().is_some() {
            n += 1;
        }
        (n, replay.read_stats().clone())
    };
    let (before, stats) = count(std::slice::from_ref(&file));
    assert!(stats.torn.is_empty());

    // What a kill mid-write leaves: half an event line after the last whole one.
    let mut torn = whole.clone();
    torn.extend_from_slice(br#"[99999999,"<","text","{\"type\":\"chu"#);
    std::fs::write(&file, &torn).unwrap();
    let (after, stats) = count(std::slice::from_ref(&file));
    assert_eq!(after, before, "every whole line still replays");
    assert_eq!(stats.torn.len(), 1);
    assert_eq!(stats.torn[0].line, lines + 1);
    assert_eq!(stats.torn[0].offset, whole.len() as u64);
    let out = relaytop(tmp.path())
        .args(["replay", "--headless", "--format", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "stopped at line {} (byte {})",
            lines + 1,
            whole.len()
        )),
        "{stderr}"
    );
}

/// The dashboard on a 100x30 pseudo-terminal, its first frame drawn, the terminal raw.
fn dashboard(tmp: &Path, configure: impl FnOnce(&mut Command)) -> pty::PtyChild {
    let mut command = relaytop(tmp);
    configure(&mut command);
    let child = pty::PtyChild::spawn(command, 100, 30);
    assert!(
        child.wait_for(b"Sessions", Duration::from_secs(30)),
        "no dashboard: {}",
        String::from_utf8_lossy(&child.output())
    );
    assert!(child.is_raw(), "the dashboard runs in raw mode");
    child
}

/// After the dashboard's last frame: the main screen and the cursor are back.
fn assert_restored(child: &pty::PtyChild) -> Vec<u8> {
    let output = child.output();
    let entered = pty::rfind(&output, ENTER_ALTERNATE_SCREEN).expect("the alternate screen");
    let tail = &output[entered..];
    let left = pty::rfind(tail, LEAVE_ALTERNATE_SCREEN).unwrap_or_else(|| {
        panic!(
            "never left the alternate screen: {:?}",
            String::from_utf8_lossy(&tail[tail.len().saturating_sub(400)..])
        )
    });
    assert!(
        pty::contains(&tail[left..], SHOW_CURSOR) || pty::contains(&tail[..left], SHOW_CURSOR),
        "the cursor is not shown again"
    );
    assert!(child.is_cooked(), "raw mode was not undone");
    tail[left..].to_vec()
}

#[test]
fn sigterm_gives_the_terminal_back() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = dashboard(tmp.path(), |_| {});
    child.signal(Signal::SIGTERM);
    let status = child
        .wait(Duration::from_secs(20))
        .expect("relaytop exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    let after = assert_restored(&child);
    assert!(
        pty::contains(&after, b"recorded to"),
        "{}",
        String::from_utf8_lossy(&after)
    );
    // The recording says the signal ended it, not a person quitting.
    let dir = run_dir(&tmp.path().join("rec")).expect("a recording");
    let meta = std::fs::read_to_string(dir.join("run.json")).expect("run.json");
    assert!(
        meta.contains(r#""ended_by": "terminated (SIGTERM)""#),
        "{meta}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_gives_the_terminal_back_then_says_what_happened_without_the_key() {
    let sim = support::sim(relaytop_sim::SimProfile::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("relaytop.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[providers]]
name = "relay"
url = "{}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1"

[[sessions]]
name = "probe"
provider = "relay"
count = 2
interval_s = 0.2
"#,
            sim.url()
        ),
    )
    .unwrap();
    let tmp_path = tmp.path().to_owned();
    let (status, after, output) = tokio::task::spawn_blocking(move || {
        let mut child = dashboard(&tmp_path, |c| {
            c.arg("--config")
                .arg(&config)
                .env("RELAYTOP_TEST_KEY", format!("{TEST_KEY}\n"))
                .env("RELAYTOP_TEST_PANIC_AFTER_MS", "1500");
        });
        let status = child
            .wait(Duration::from_secs(20))
            .expect("relaytop exits after the panic");
        let after = assert_restored(&child);
        (status, after, child.output())
    })
    .await
    .unwrap();
    assert!(!status.success());
    let after = String::from_utf8_lossy(&after);
    assert!(
        after.contains("panicked") && after.contains("RELAYTOP_TEST_PANIC_AFTER_MS"),
        "the panic message is not printed after the restore: {after}"
    );
    for needle in [TEST_KEY, &TEST_KEY[..12]] {
        assert!(
            !pty::contains(&output, needle.as_bytes()),
            "the key ({needle}) is on the terminal"
        );
    }
    sim.stop().await;
}

/// SIGTERM (systemd, docker, `timeout`) and SIGHUP end a headless run as Ctrl-C does: the
/// summary on stdout, the recording finished (`ended_by` names the signal), exit status 0.
#[test]
fn sigterm_and_sighup_end_a_headless_run_with_its_summary() {
    for (signal, words) in [
        (Signal::SIGTERM, "terminated (SIGTERM)"),
        (Signal::SIGHUP, "hung up (SIGHUP)"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let child = relaytop(tmp.path())
            .args(["headless", "--format", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("relaytop starts");
        // Wait for the run to be under way: its recording exists.
        let rec = tmp.path().join("rec");
        let started = std::time::Instant::now();
        while run_dir(&rec).and_then(|d| latest_time(&d)).is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no run started"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("the signal is sent");
        let output = child.wait_with_output().expect("relaytop exits");
        assert!(output.status.success(), "{signal:?}: {:?}", output.status);
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("the summary on stdout");
        assert_eq!(report["run"]["ended_by"], words, "{signal:?}");
        let dir = run_dir(&rec).expect("the run directory");
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        assert_eq!(run["ended_by"], words, "{signal:?}: run.json {run:#}");
    }
}
