//! Many sessions recorded at once: the recorder keeps at most its cap of files open (closing
//! the least recently written, reopening to append), gzip files so written are multi-member
//! and read back whole, `run.json` names every file before it exists, and a session file that
//! `run.json` does not name (a crash before it was rewritten) is still replayed.

use crate::tapped;

use std::path::{Path, PathBuf};
use std::time::Duration;

use relaytop_core::record::format::RunManifest;
use relaytop_core::record::{RecordOptions, Recorder, Replay, RunMeta};
use relaytop_core::report::Report;
use relaytop_core::session::tap::TapHandle;
use relaytop_core::session::{EventKind, Protocol, RunClock, SessionInfo, Timing};

const SESSIONS: u32 = 40;
const REQUESTS: u64 = 6;

fn info(id: u32) -> SessionInfo {
    SessionInfo {
        id,
        name: format!("s-{id}"),
        provider: "p".into(),
        model: "gpt-4.1".into(),
        protocol: Protocol::RelayV1,
        url: "ws://127.0.0.1:1/v1/stream".into(),
        workload: "probe".into(),
    }
}

/// This process's open files under `dir`.
fn open_in(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.filter_map(Result::ok)
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target.starts_with(dir))
                .count()
        })
        .unwrap_or(0)
}

fn manifest(dir: &Path) -> RunManifest {
    serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap()
}

/// Every session file in `dir` is named in its run.json.
fn every_file_is_named(dir: &Path) {
    let named: Vec<String> = manifest(dir).files.into_iter().map(|f| f.path).collect();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.contains(".jsonl") {
            assert!(
                named.contains(&name),
                "{name} is not in run.json: {named:?}"
            );
        }
    }
}

/// `SESSIONS` sessions, each making `REQUESTS` requests in turn, written out after every
/// round, with at most `open_files` files open. Returns the run directory.
fn record(root: &Path, gzip: bool, open_files: usize) -> PathBuf {
    let mut options = RecordOptions::new(root);
    (options.gzip, options.open_files) = (gzip, open_files);
    // Small enough that some sessions rotate.
    options.rotate_bytes = 2_500;
    let started_at = chrono::DateTime::parse_from_rfc3339("2026-12-06T03:00:00Z").unwrap();
    let meta = RunMeta {
        started_at: started_at.into(),
        source: "many sessions".into(),
        pricing: Default::default(),
        secrets: Vec::new(),
        slo: Default::default(),
    };
    let recorder = Recorder::start(&options, meta, RunClock::new()).unwrap();
    let dir = recorder.dir().to_owned();
    let taps: Vec<TapHandle> = (0..SESSIONS)
        .map(|id| recorder.tap(&info(id), &Timing::default(), None).unwrap())
        .collect();
    for r in 1..=REQUESTS {
        for (id, tap) in taps.iter().enumerate() {
            let body = format!(r#"{{"type":"chat.completion","n":{r},"s":{id}}}"#);
            tapped::tap_request(tap, r, r * 1000 + id as u64, &body, "word ", 50);
        }
        recorder.flush();
        assert!(
            open_in(&dir) <= open_files,
            "{} files open, at most {open_files} allowed",
            open_in(&dir)
        );
        every_file_is_named(&dir);
    }
    recorder
        .finish("done", Duration::from_secs(REQUESTS + 1))
        .unwrap();
    assert_eq!(open_in(&dir), 0, "files left open after the end");
    every_file_is_named(&dir);
    dir
}

fn play(paths: &[PathBuf]) -> (Vec<relaytop_core::session::SessionEvent>, Report) {
    let mut replay = Replay::open(paths).expect("opens");
    let events: Vec<_> = std::iter::from_fn(|| replay.next_event()).collect();
    let warnings = replay.read_stats().warnings();
    assert!(warnings.is_empty(), "{warnings:?}");
    (events, Report::build(replay.metrics(), replay.run_info()))
}

#[test]
fn files_closed_past_the_cap_and_reopened_keep_every_line_plain_and_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let all_open = record(&tmp.path().join("all"), false, 1_000);
    let few_open = record(&tmp.path().join("few"), false, 4);
    let gzip = record(&tmp.path().join("gz"), true, 4);

    let (events, report) = play(std::slice::from_ref(&all_open));
    let done = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Done(_)))
        .count();
    assert_eq!(done, (SESSIONS as u64 * REQUESTS) as usize);
    for dir in [&few_open, &gzip] {
        let (e, r) = play(std::slice::from_ref(dir));
        assert_eq!(e, events, "{}", dir.display());
        assert_eq!(r, report, "{}", dir.display());
    }
    // Reopened gzip files hold one member per write: several.
    let file = std::fs::read(gzip.join("s-0.jsonl.gz")).unwrap();
    let members = file.windows(4).filter(|w| *w == [0x1f, 0x8b, 8, 0]).count();
    assert!(members > 2, "{members} gzip members");
    // Some sessions rotated, and run.json names their parts.
    assert!(manifest(&few_open).files.iter().any(|f| f.part > 0));
}

#[test]
fn a_session_file_run_json_does_not_name_is_replayed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = record(tmp.path(), false, 1_000);
    let (events, _) = play(std::slice::from_ref(&dir));
    // As if relaytop died after making s-7's file, before run.json named it.
    let mut m = manifest(&dir);
    m.files.retain(|f| f.session != "s-7");
    std::fs::write(
        dir.join("run.json"),
        serde_json::to_string_pretty(&m).unwrap(),
    )
    .unwrap();
    let (replayed, _) = play(std::slice::from_ref(&dir));
    assert_eq!(replayed.len(), events.len());
    assert!(
        replayed
            .iter()
            .any(|e| e.session == 7 && matches!(e.kind, EventKind::Done(_)))
    );
}
