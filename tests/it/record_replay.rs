//! Replaying a recording: seeking lands in the state that playing there reaches, markers are
//! found and jumped to in order, and damaged files (a torn last line, malformed lines in the
//! middle, blank and `#` lines) replay what they still hold and say what they skipped, and a
//! session rotated into several files replays as one.
//!
//! One recording of a simulated run (1.5 s, loopback, port 0) is made once and shared; each
//! test that damages it works on its own copy. Rotation uses a synthetic session (no network).

use crate::support;

use crate::tapped;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use relaytop_core::record::{MarkerTarget, RecordOptions, Replay};
use relaytop_core::report::Report;
use relaytop_core::session::{EventKind, RunClock, SessionEvent};
use relaytop_core::supervisor::Supervisor;
use relaytop_core::world::World;
use relaytop_sim::{DropMode, SimProfile};
use support::{probe_config, sim};

const USER_MARK: &str = "mark from the test";

/// The shared recording's run directory.
fn recording() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        // Recordings of earlier runs (an hour old: no run of this file is still using them).
        for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600));
            if old
                && entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("record_replay-")
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let root = tmp.join(format!("record_replay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(record_a_run(&root))
    })
}

async fn record_a_run(root: &Path) -> PathBuf {
    let relay = sim(SimProfile {
        ttft_p50_ms: 20.0,
        ttft_p99_ms: 60.0,
        rate_limit_rate: 0.15,
        rate_limit_retry_after_ms: 60,
        drop_rate: 0.12,
        drop_mode: DropMode::Close(1012),
        malformed_rate: 0.02,
        seed: 5,
        ..SimProfile::default()
    })
    .await;
    let config = probe_config(&relay.url(), 3, "replay.toml");
    let mut world = World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("world");
    world.recording = Some(RecordOptions::new(root));
    let clock = RunClock::new();
    let recorder = world
        .start_recording(chrono::Utc::now(), clock)
        .expect("recording starts")
        .expect("recording is on");
    let (mut supervisor, mut events) = Supervisor::new(clock);
    for spec in world.session_specs(Some(&recorder)).expect("specs") {
        supervisor.start(spec);
    }
    let mut marked = false;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    loop {
        tokio::select! {
            _ = events.recv() => {}
            _ = tokio::time::sleep_until(deadline) => break,
        }
        if !marked && clock.now() > Duration::from_millis(700) {
            recorder.marker(MarkerTarget::All, USER_MARK);
            marked = true;
        }
    }
    let duration = clock.now();
    supervisor
        .shutdown(Duration::from_secs(2), &mut events, |_| {})
        .await;
    let dir = recorder.finish("test over", duration).expect("finish");
    world.stop().await;
    relay.stop().await;
    dir
}

/// A copy of the recording to damage.
fn copy_of_recording(name: &str) -> PathBuf {
    let to = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("record_replay-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&to);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(recording()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
    to
}

fn open(dir: &Path) -> Replay {
    Replay::open(&[dir.to_path_buf()]).expect("replay opens")
}

fn play_all(replay: &mut Replay) -> Vec<SessionEvent> {
    std::iter::from_fn(|| replay.next_event()).collect()
}

fn report(replay: &Replay) -> Report {
    Report::build(replay.metrics(), replay.run_info())
}

/// The state and the next events after playing everything before `target`.
fn played_to(target: u64) -> (Report, Vec<SessionEvent>) {
    let mut r = open(recording());
    while r.next_time().is_some_and(|t| t < target) {
        r.next_event();
    }
    (report(&r), (0..25).filter_map(|_| r.next_event()).collect())
}

fn session_file(dir: &Path) -> PathBuf {
    dir.join("probe-2.jsonl")
}

#[test]
fn the_recording_holds_frames_events_markers_and_an_end() {
    let text = std::fs::read_to_string(session_file(recording())).unwrap();
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(r#"{"format":"relaytop-recording","version":1,"app":"relaytop "#),
        "{first}"
    );
    assert!(first.contains(r#""api_key_env":"RELAYTOP_TEST_KEY""#));
    for needle in [
        r#","=","state",{"to":"connecting","attempt":1}]"#,
        r#","<","upgrade",{"status":101}]"#,
        r#","<","text","{\"type\":\"chunk\""#,
        r#","<","text","{\"type\":\"pong\"}"]"#,
        r#","=","event",{"type":"request_sent""#,
        &format!(r#","=","marker","{USER_MARK}"]"#),
    ] {
        assert!(text.contains(needle), "no {needle} in\n{text}");
    }
    let last = text.lines().last().unwrap();
    assert!(last.contains(r#","=","end",{"reason":"#), "{last}");
    // Times never go back.
    let times: Vec<u64> = text
        .lines()
        .skip(1)
        .map(|l| l[1..l.find(',').unwrap()].parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(recording().join("run.json")).unwrap())
            .unwrap();
    assert_eq!(run["format"], "relaytop-run");
    assert_eq!(run["files"].as_array().unwrap().len(), 3);
    assert_eq!(run["ended_by"], "test over");
}

#[test]
fn seeking_lands_where_playing_gets() {
    let mut all = open(recording());
    let events = play_all(&mut all);
    let end = all.end_us();
    assert!(events.len() > 100, "a busy recording: {}", events.len());
    let mut targets = vec![0, 1, end / 4, end / 3, end / 2, 2 * end / 3, end, end + 1];
    targets.push(events[events.len() / 2].at_us);
    targets.push(events[events.len() / 2].at_us + 1);

    // Cold (no index yet), indexed with checkpoints every 40 lines, and backwards from the end.
    let mut indexed = open(recording());
    indexed.set_checkpoint_lines(40);
    indexed.wait_indexed();
    let progress = indexed.indexing();
    assert!(progress.done && progress.checkpoints > 3, "{progress:?}");
    for &target in &targets {
        let (want_report, want_next) = played_to(target);
        let now = Duration::from_secs(1);

        let mut cold = open(recording());
        cold.seek_to(now, target);
        let mut backwards = open(recording());
        play_all(&mut backwards);
        backwards.seek_to(now, target);
        indexed.seek_to(now, target);

        for (how, r) in [
            ("cold", &mut cold),
            ("indexed", &mut indexed),
            ("backwards", &mut backwards),
        ] {
            assert_eq!(r.position_us(now), target, "{how} position at {target}");
            assert_eq!(report(r), want_report, "{how} state at {target}");
            let next: Vec<SessionEvent> = (0..25).filter_map(|_| r.next_event()).collect();
            assert_eq!(next, want_next, "{how} next events at {target}");
        }
    }

    // Relative seeks and the ends.
    let mut r = open(recording());
    let now = Duration::ZERO;
    r.seek_by(now, 500_000);
    assert_eq!(r.position_us(now), 500_000);
    r.seek_by(now, -200_000);
    assert_eq!(r.position_us(now), 300_000);
    assert_eq!(report(&r), played_to(300_000).0);
    r.seek_by(now, -10_000_000);
    assert_eq!(r.position_us(now), 0);
    r.seek_to_end(now);
    assert!(r.next_event().is_none());
    assert_eq!(report(&r), report(&all));
    r.seek_to_start(now);
    assert_eq!(play_all(&mut r), events);
}

#[test]
fn markers_are_found_and_jumped_to_in_order() {
    let mut r = open(recording());
    r.wait_indexed();
    let markers = r.markers();
    let labels: Vec<&str> = markers.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(
        labels.iter().filter(|l| **l == USER_MARK).count(),
        3,
        "the user's marker on every session: {labels:?}"
    );
    assert!(
        labels.iter().any(|l| l.starts_with("reconnect ")),
        "a reconnect: {labels:?}"
    );
    assert!(
        labels.iter().any(|l| l.starts_with("rate limited")),
        "a rate-limit wait: {labels:?}"
    );
    assert!(markers.windows(2).all(|w| w[0].at_us <= w[1].at_us));
    // Markers are navigation, never session events.
    let events = play_all(&mut open(recording()));
    let marker_events = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Marker { .. }))
        .count();
    assert_eq!(marker_events, 0);

    let mut times: Vec<u64> = markers.iter().map(|m| m.at_us).collect();
    times.dedup();
    let now = Duration::from_secs(3);
    let mut visited = Vec::new();
    r.seek_to_start(now);
    while let Some(m) = r.next_marker(now) {
        assert_eq!(r.position_us(now), m.at_us);
        assert_eq!(
            report(&r),
            played_to(m.at_us).0,
            "state at marker {}",
            m.label
        );
        visited.push(m.at_us);
    }
    assert_eq!(visited, times);
    let mut back = Vec::new();
    while let Some(m) = r.previous_marker(now) {
        back.push(m.at_us);
    }
    back.reverse();
    assert_eq!(back, times[..times.len() - 1]);

    // Before any indexing, the next marker is read ahead.
    let mut fresh = open(recording());
    let first = fresh.next_marker(now).expect("a first marker");
    assert_eq!(first.at_us, times[0]);
}

#[test]
fn a_torn_last_line_plays_what_comes_before_it_and_says_where() {
    let dir = copy_of_recording("torn");
    let path = session_file(&dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Cut the file in the middle of its 4th line from the end, as a crash mid-write would.
    let keep = lines.len() - 4;
    let whole: String = lines[..keep].iter().map(|l| format!("{l}\n")).collect();
    let torn = format!("{whole}{}", &lines[keep][..lines[keep].len() / 2]);
    std::fs::write(&path, &torn).unwrap();

    let mut r = open(&dir);
    play_all(&mut r);
    let stats = r.read_stats().clone();
    assert_eq!(stats.torn.len(), 1, "{stats:?}");
    assert_eq!(stats.torn[0].line, keep as u64 + 1);
    assert_eq!(stats.torn[0].offset, whole.len() as u64);
    assert!(stats.torn[0].file.ends_with("probe-2.jsonl"));
    assert_eq!(stats.malformed, 0);
    let warnings = r.read_stats().warnings();
    assert!(
        warnings[0].contains(&format!(
            "stopped at line {} (byte {})",
            keep + 1,
            whole.len()
        )),
        "{warnings:?}"
    );

    // The same as a file that simply ends before that line.
    std::fs::write(&path, &whole).unwrap();
    let mut clean = open(&dir);
    play_all(&mut clean);
    assert!(clean.read_stats().torn.is_empty());
    assert_eq!(report(&r), report(&clean));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_middle_lines_are_counted_and_skipped() {
    let dir = copy_of_recording("malformed");
    let path = session_file(&dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let junk = [
        "{not json",
        r#"[12,"?","text","x"]"#,
        r#"[13,"<","close",{"code":"loud"}]"#,
        "\u{1}\u{2}binary junk",
        r#"["late","=","marker","x"]"#,
    ];
    let mut junk_lines = Vec::new();
    for (i, j) in junk.iter().enumerate() {
        let at = 5 + i * (lines.len() / 8);
        lines.insert(at, (*j).to_owned());
        junk_lines.push(at as u64 + 1);
    }
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();

    let mut r = open(&dir);
    play_all(&mut r);
    let stats = r.read_stats();
    assert_eq!(stats.malformed, junk.len() as u64, "{stats:?}");
    assert!(stats.torn.is_empty());
    let found: Vec<u64> = stats.first_malformed.iter().map(|p| p.line).collect();
    assert_eq!(found, junk_lines);
    let mut original = open(recording());
    play_all(&mut original);
    assert_eq!(report(&r), report(&original));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn blank_and_comment_lines_are_skipped() {
    let dir = copy_of_recording("comments");
    let path = session_file(&dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::from("# recorded by a test\n\n");
    for (i, line) in text.lines().enumerate() {
        out.push_str(line);
        out.push('\n');
        if i % 7 == 3 {
            out.push_str("\n   \n# a note between lines\n");
        }
    }
    std::fs::write(&path, out).unwrap();
    let mut r = open(&dir);
    let events = play_all(&mut r);
    assert_eq!(r.read_stats().malformed, 0);
    assert!(r.read_stats().warnings().is_empty());
    assert_eq!(events, play_all(&mut open(recording())));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn paced_playback_keeps_the_recorded_gaps() {
    use relaytop_core::record::Speed;
    let mut r = open(recording());
    let t0 = Duration::from_secs(100);
    r.set_speed(t0, Speed::Times(4.0));
    // The first poll anchors the clock; events come when their time, divided by 4, is due.
    let mut last_at = 0;
    let mut now = t0;
    let mut played = 0;
    while played < 300 {
        match r.poll(now) {
            Some(e) => {
                assert!(e.at_us >= last_at);
                // Never early (beyond rounding to the nanosecond along the way).
                let due = t0 + Duration::from_micros(e.at_us / 4);
                assert!(
                    now + Duration::from_micros(10) >= due,
                    "early: {now:?} < {due:?}"
                );
                assert!(r.position_us(now) >= e.at_us.saturating_sub(40));
                last_at = e.at_us;
                played += 1;
            }
            None => match r.next_wake(now) {
                Some(wake) => {
                    assert!(wake > now, "nothing due yet, so the wake is later");
                    now = wake;
                }
                None => break,
            },
        }
    }
    assert_eq!(played, 300);
    r.pause(now);
    assert_eq!(r.next_wake(now), None);
    assert!(r.poll(now + Duration::from_secs(3600)).is_none());
    let before = r.position_us(now);
    let stepped = r.step(now).expect("step one event while paused");
    assert!(stepped.at_us >= before);
    assert_eq!(r.position_us(now), stepped.at_us);
}

/// Writes a synthetic relay/v1 session through `tap`: `requests` responses of 5 chunks.
fn synthetic_session(
    tap: &relaytop_core::session::tap::TapHandle,
    recorder: &relaytop_core::record::Recorder,
    requests: u64,
) {
    use relaytop_core::session::SessionState;
    use relaytop_core::session::tap::{Direction, Wire};
    let ms = |t: u64| Duration::from_millis(t);
    tap.0.event(
        ms(0),
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
        tapped::tap_request(
            tap,
            r,
            t,
            r#"{"type":"chat.completion","model":"gpt-4.1","messages":[],"stream":true}"#,
            "word ",
            100 + r,
        );
        if r % 10 == 0 {
            recorder.flush();
        }
    }
}

#[test]
fn rotated_files_replay_as_one() {
    use relaytop_core::record::{Recorder, RunMeta};
    use relaytop_core::session::{Protocol, SessionInfo, Timing};
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("record_replay-{}-rotation", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let info = SessionInfo {
        id: 0,
        name: "synthetic".into(),
        provider: "p".into(),
        model: "gpt-4.1".into(),
        protocol: Protocol::RelayV1,
        url: "ws://127.0.0.1:1/v1/stream".into(),
        workload: "probe".into(),
    };
    let mut dirs = Vec::new();
    for rotate_bytes in [u64::MAX, 4096] {
        let options = RecordOptions {
            rotate_bytes,
            ..RecordOptions::new(root.join(rotate_bytes.to_string()))
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
        synthetic_session(&tap, &recorder, 60);
        dirs.push(recorder.finish("done", Duration::from_secs(61)).unwrap());
    }
    let rotated = &dirs[1];
    assert!(rotated.ends_with("2026-11-25T03-00-00Z"));
    let parts: Vec<String> = (1..4)
        .map(|n| format!("synthetic.{n}.jsonl"))
        .filter(|p| rotated.join(p).is_file())
        .collect();
    assert_eq!(parts.len(), 3, "rotated into parts: {parts:?}");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rotated.join("run.json")).unwrap()).unwrap();
    let listed: Vec<&str> = run["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        listed.len() >= 4 && listed[0] == "synthetic.jsonl",
        "{listed:?}"
    );
    let second = std::fs::read_to_string(rotated.join("synthetic.1.jsonl")).unwrap();
    assert!(second.starts_with(r#"{"format":"relaytop-recording""#));
    assert!(second.lines().next().unwrap().contains(r#""part":1"#));

    let whole = play_all(&mut open(&dirs[0]));
    let done = whole
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Done(_)))
        .count();
    assert_eq!(done, 60);
    assert_eq!(play_all(&mut open(rotated)), whole);
    // The first part alone still finds its rotated siblings.
    let mut first = Replay::open(&[rotated.join("synthetic.jsonl")]).unwrap();
    assert_eq!(play_all(&mut first), whole);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn reading_ahead_on_its_own_thread_plays_what_reading_in_place_plays() {
    // A damaged copy: malformed lines in one session, a torn end in another, markers.
    let dir = copy_of_recording("ahead");
    let path = session_file(&dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.insert(7, "{not json".into());
    lines.insert(
        lines.len() / 2,
        r#"[13,"<","close",{"code":"loud"}]"#.into(),
    );
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let other = dir.join("probe-1.jsonl");
    let text = std::fs::read_to_string(&other).unwrap();
    std::fs::write(&other, &text[..text.len() - 20]).unwrap();

    let mut in_place = open(&dir);
    let expected = play_all(&mut in_place);
    let mut ahead = open(&dir);
    ahead.play_forward_only();
    let got = play_all(&mut ahead);
    assert!(expected.len() > 100, "{}", expected.len());
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the events differ");
    assert_eq!(ahead.read_stats(), in_place.read_stats());
    assert_eq!(ahead.read_stats().malformed, 2);
    assert_eq!(ahead.read_stats().torn.len(), 1);
    assert_eq!(report(&ahead), report(&in_place));
    assert_eq!(ahead.markers(), in_place.markers());
    assert!(
        ahead.markers().iter().any(|m| m.label == USER_MARK),
        "{:?}",
        ahead.markers()
    );

    // A seek forward folds on; a seek back starts reading again from the start.
    let mut sought = open(&dir);
    sought.play_forward_only();
    let middle = expected[expected.len() / 2].at_us;
    sought.seek_to(Duration::ZERO, middle);
    let first_after = expected.iter().find(|e| e.at_us >= middle).cloned();
    assert_eq!(sought.next_event(), first_after);
    sought.seek_to_start(Duration::ZERO);
    let replayed = play_all(&mut sought);
    assert!(
        replayed == expected,
        "a replay read again from the start differs"
    );
    assert_eq!(report(&sought), report(&in_place));

    // Played to the end by reference: the same events, figures, statistics and markers, read
    // ahead or in place; an error stops it, and the events after it are still handed out.
    for forward_only in [true, false] {
        let mut lent = open(&dir);
        if forward_only {
            lent.play_forward_only();
        }
        let mut seen = Vec::new();
        let stopped = lent.play_to_end(|e| {
            seen.push(e.clone());
            if seen.len() == 50 {
                Err("stop")
            } else {
                Ok(())
            }
        });
        assert_eq!(stopped, Err("stop"));
        assert_eq!(lent.next_event().as_ref(), expected.get(50));
        seen.extend(expected.get(50).cloned());
        lent.play_to_end(|e| {
            seen.push(e.clone());
            Ok::<(), ()>(())
        })
        .unwrap();
        assert!(seen == expected, "the events lent differ");
        assert!(lent.at_end());
        assert_eq!(lent.read_stats(), in_place.read_stats());
        assert_eq!(report(&lent), report(&in_place));
        assert_eq!(lent.markers(), in_place.markers());
    }

    // Dropped halfway, the reading thread goes with it.
    let mut dropped = open(&dir);
    dropped.play_forward_only();
    for _ in 0..10 {
        dropped.next_event();
    }
    drop(dropped);
    std::fs::remove_dir_all(&dir).unwrap();
}
