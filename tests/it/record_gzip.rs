//! Gzip recordings (`--record-gzip`): the same synthetic session written plain and gzipped
//! (with and without rotation) replays to the same events and report, and a gzip file cut
//! short (a `kill -9` between two quarter-second writes) replays its prefix and says so.

use crate::tapped;

use std::path::{Path, PathBuf};
use std::time::Duration;

use relaytop_core::record::{RecordOptions, Recorder, Replay, RunMeta};
use relaytop_core::report::Report;
use relaytop_core::session::tap::{Direction, TapHandle, Wire};
use relaytop_core::session::{
    EventKind, Protocol, RunClock, SessionEvent, SessionInfo, SessionState, Timing,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `requests` requests of a relay/v1 session, each answered in five chunks.
fn synthetic_session(tap: &TapHandle, recorder: &Recorder, requests: u64) {
    tap.0.event(
        ms(1),
        &EventKind::State(SessionState::Connecting { attempt: 1 }),
    );
    tap.0
        .wire(ms(3), Direction::FromRelay, Wire::Upgrade { status: 101 });
    tap.0.event(
        ms(3),
        &EventKind::Connected {
            attempt: 1,
            handshake_us: 3000,
        },
    );
    tap.0.event(ms(3), &EventKind::State(SessionState::Open));
    for r in 1..=requests {
        let t = r * 1000;
        let body = format!(
            r#"{{"type":"chat.completion","model":"gpt-4.1","messages":[{{"role":"user","content":"question {r}"}}],"stream":true}}"#
        );
        tapped::tap_request(tap, r, t, &body, "word ", 100 + r);
        if r % 10 == 0 {
            recorder.flush();
        }
    }
}

fn record(root: &Path, gzip: bool, rotate_bytes: u64, requests: u64) -> PathBuf {
    let info = SessionInfo {
        id: 0,
        name: "synthetic".into(),
        provider: "p".into(),
        model: "gpt-4.1".into(),
        protocol: Protocol::RelayV1,
        url: "ws://127.0.0.1:1/v1/stream".into(),
        workload: "probe".into(),
    };
    let options = RecordOptions {
        gzip,
        rotate_bytes,
        ..RecordOptions::new(root)
    };
    let meta = RunMeta {
        started_at: chrono::DateTime::parse_from_rfc3339("2026-11-25T03:00:00Z")
            .unwrap()
            .into(),
        source: "synthetic".into(),
        pricing: Default::default(),
        secrets: Vec::new(),
        slo: Default::default(),
    };
    let recorder = Recorder::start(&options, meta, RunClock::new()).unwrap();
    let tap = recorder.tap(&info, &Timing::default(), None).unwrap();
    synthetic_session(&tap, &recorder, requests);
    recorder
        .finish("done", Duration::from_secs(requests + 1))
        .unwrap()
}

fn play(paths: &[PathBuf]) -> (Vec<SessionEvent>, Report, Vec<String>) {
    let mut replay = Replay::open(paths).expect("opens");
    let events: Vec<SessionEvent> = std::iter::from_fn(|| replay.next_event()).collect();
    let report = Report::build(replay.metrics(), replay.run_info());
    (events, report, replay.read_stats().warnings())
}

#[test]
fn gzip_recordings_read_back_equal_to_plain_ones_rotated_or_not() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = record(&tmp.path().join("plain"), false, u64::MAX, 60);
    let gz = record(&tmp.path().join("gz"), true, u64::MAX, 60);
    let rotated = record(&tmp.path().join("rotated"), true, 4096, 60);
    assert!(gz.join("synthetic.jsonl.gz").is_file());
    assert!(!gz.join("synthetic.jsonl").exists());
    let whole = std::fs::read(gz.join("synthetic.jsonl.gz")).unwrap();
    assert_eq!(&whole[..2], [0x1f, 0x8b], "a gzip file");
    assert!(rotated.join("synthetic.1.jsonl.gz").is_file(), "rotated");
    assert!(rotated.join("synthetic.2.jsonl.gz").is_file());
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rotated.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["files"][1]["path"], "synthetic.1.jsonl.gz");

    let (events, report, warnings) = play(&[plain]);
    assert!(warnings.is_empty(), "{warnings:?}");
    let done = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Done(_)))
        .count();
    assert_eq!(done, 60);
    for dir in [&gz, &rotated] {
        let (e, r, w) = play(std::slice::from_ref(dir));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(e, events, "{}", dir.display());
        assert_eq!(r, report);
    }
    // A session's first gzip file alone finds its rotated parts.
    let (e, _, _) = play(&[rotated.join("synthetic.jsonl.gz")]);
    assert_eq!(e, events);
    // replay --against reads the request bodies out of gzip files too.
    let recorded = relaytop::against::read_recording(&[rotated]).unwrap();
    assert_eq!(recorded.requests.len(), 60);
    assert_eq!(recorded.requests[59].messages[0].content, "question 60");
}

#[test]
fn a_gzip_file_cut_short_replays_its_prefix_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let gz = record(&tmp.path().join("gz"), true, u64::MAX, 60);
    let (all, _, _) = play(std::slice::from_ref(&gz));
    // Cut the file in the middle of its compressed stream (no trailer, a partial block).
    let file = gz.join("synthetic.jsonl.gz");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (events, _, warnings) = play(&[gz]);
    assert!(
        !events.is_empty() && events.len() < all.len(),
        "{} of {} events",
        events.len(),
        all.len()
    );
    assert_eq!(events[..], all[..events.len()], "a prefix of the run");
    assert!(
        warnings.iter().any(|w| w.contains("ends early")),
        "{warnings:?}"
    );
}
