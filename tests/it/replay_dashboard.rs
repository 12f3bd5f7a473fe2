//! The dashboard's replay screen: the replay keys drive the replay, a seek lands the panes
//! where playing there gets them, a recording cut mid-line opens and says where it stopped,
//! the timeline is drawn (snapshots at 80x24 and 200x50), and the asciicast export is a valid
//! cast whose last screen shows the sessions.
//!
//! The recording is synthetic and deterministic (times written explicitly through the
//! recorder's taps, markers inserted in time order): two sessions over 30 s, one of which
//! drops at 12 s and reconnects.

use crate::tapped;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use relaytop_core::cost::ProviderPricing;
use relaytop_core::record::{RecordOptions, Recorder, Replay, RunMeta, Speed};
use relaytop_core::session::tap::{Direction, TapHandle, Wire};
use relaytop_core::session::{EventKind, Protocol, RunClock, SessionInfo, SessionState, Timing};
use relaytop_tui::app::{App, Effect};
use relaytop_tui::replay::{ReplayDriver, ReplayView};
use relaytop_tui::{asciicast, render};

const S: u64 = 1_000_000;
const MARKERS: [(u64, &str); 2] = [(10_000, "stage 2"), (20_000, "rollback")];

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

fn info(id: u32, name: &str) -> SessionInfo {
    SessionInfo {
        id,
        name: name.into(),
        provider: "relay".into(),
        model: "gpt-4.1".into(),
        protocol: Protocol::RelayV1,
        url: "ws://127.0.0.1:1/v1/stream".into(),
        workload: "probe".into(),
    }
}

/// One session's 30 s: a request every `every_ms`, five chunks each; a drop at 12 s and a
/// reconnect at 13 s when `drops`.
fn session(tap: &TapHandle, every_ms: u64, drops: bool) {
    let connect = |at: u64, attempt: u32| {
        tap.0.event(
            ms(at),
            &EventKind::State(SessionState::Connecting { attempt }),
        );
        tap.0.wire(
            ms(at + 3),
            Direction::FromRelay,
            Wire::Upgrade { status: 101 },
        );
        tap.0.event(
            ms(at + 3),
            &EventKind::Connected {
                attempt,
                handshake_us: 3000,
            },
        );
        tap.0
            .event(ms(at + 3), &EventKind::State(SessionState::Open));
    };
    connect(0, 1);
    let mut r = 0;
    let mut t = every_ms;
    let mut dropped = false;
    while t < 30_000 {
        if drops && !dropped && t >= 12_000 {
            dropped = true;
            tap.0.event(
                ms(12_000),
                &EventKind::Closed {
                    code: 1012,
                    reason: "restart".into(),
                    requested: false,
                },
            );
            tap.0.event(
                ms(12_000),
                &EventKind::BackingOff {
                    attempt: 1,
                    max_attempts: 10,
                    delay_ms: 1000,
                    cause: "close 1012".into(),
                },
            );
            connect(13_000, 2);
            t = 13_500;
        }
        r += 1;
        tapped::tap_request(
            tap,
            r,
            t,
            r#"{"type":"chat.completion","model":"gpt-4.1","messages":[],"stream":true}"#,
            "relay ",
            100,
        );
        t += every_ms;
    }
}

/// Inserts marker lines into a session file, in time order.
fn insert_markers(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut out = String::new();
    let mut pending: Vec<(u64, &str)> = MARKERS.to_vec();
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            let t: u64 = line[1..line.find(',').unwrap()].parse().unwrap();
            while let Some((at, label)) = pending.first().copied()
                && at * 1000 <= t
            {
                out.push_str(&format!("[{},\"=\",\"marker\",\"{label}\"]\n", at * 1000));
                pending.remove(0);
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    std::fs::write(file, out).unwrap();
}

/// The shared synthetic run's directory.
fn recording() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("replay_dashboard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let meta = RunMeta {
            started_at: DateTime::parse_from_rfc3339("2026-11-25T03:00:00Z")
                .unwrap()
                .into(),
            source: "synthetic".into(),
            pricing: [(
                "relay".to_string(),
                ProviderPricing {
                    per_1000_calls_usd: 2.0,
                    ..ProviderPricing::default()
                },
            )]
            .into(),
            secrets: Vec::new(),
            slo: Default::default(),
        };
        let recorder =
            Recorder::start(&RecordOptions::new(root.clone()), meta, RunClock::new()).unwrap();
        let timing = Timing {
            heartbeat: None,
            ..Timing::default()
        };
        let alpha = recorder.tap(&info(0, "alpha"), &timing, None).unwrap();
        let beta = recorder.tap(&info(1, "beta"), &timing, None).unwrap();
        session(&alpha, 1000, false);
        session(&beta, 1500, true);
        let dir = recorder.finish("done", Duration::from_secs(30)).unwrap();
        insert_markers(&dir.join("alpha.jsonl"));
        dir
    })
}

fn utc() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2026-11-25T03:00:00Z").unwrap()
}

fn driver(dir: &Path) -> (ReplayDriver, App) {
    let replay = Replay::open(&[dir.to_path_buf()]).expect("the recording opens");
    let mut driver = ReplayDriver::new(replay).unwrap();
    driver.replay_mut().set_checkpoint_lines(64);
    let app = driver.app_at(utc());
    (driver, app)
}

fn press(app: &mut App, driver: &mut ReplayDriver, code: KeyCode, now: Duration) -> ReplayView {
    match app.handle_key(KeyEvent::new(code, KeyModifiers::NONE)) {
        Some(Effect::Replay(action)) => driver.control(app, action, now),
        other => panic!("{code:?} is not a replay key here: {other:?}"),
    }
    app.replay().cloned().expect("a replay view")
}

fn draw(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| {
            app.prepare(frame.area());
            render::draw(frame, app);
        })
        .unwrap();
    terminal
}

fn screen_text(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

/// Plays every event into `app` (no clock), as fast as possible.
fn play_all(driver: &mut ReplayDriver, app: &mut App) {
    driver
        .replay_mut()
        .set_speed(Duration::ZERO, Speed::AsFastAsPossible);
    while driver.play(app, Duration::ZERO, 10_000) > 0 {}
    driver
        .replay_mut()
        .set_speed(Duration::ZERO, Speed::Times(1.0));
}

#[test]
fn replay_keys_drive_the_replay() {
    let (mut driver, mut app) = driver(recording());
    driver.replay_mut().wait_indexed();
    let t0 = Duration::from_secs(100);
    driver.play(&mut app, t0, usize::MAX);
    driver.sync(&mut app, t0);
    assert_eq!(app.replay().unwrap().position_us, 0);
    // Ours, and the recorder's own at beta's reconnect.
    let markers: Vec<(u64, String)> = driver
        .replay()
        .markers()
        .into_iter()
        .map(|m| (m.at_us, m.label))
        .collect();
    assert_eq!(
        markers,
        [
            (10 * S, "stage 2".to_string()),
            (12 * S, "reconnect 1".to_string()),
            (20 * S, "rollback".to_string())
        ]
    );
    assert_eq!(app.replay().unwrap().marker_count, 3);

    let v = press(&mut app, &mut driver, KeyCode::Char(' '), t0);
    assert!(v.paused);
    assert_eq!(app.notice(), Some("paused"));
    // Paused, time passes and nothing moves.
    let t1 = t0 + Duration::from_secs(5);
    assert_eq!(driver.play(&mut app, t1, usize::MAX), 0);
    let before = app.live().metrics.events_applied();
    let v = press(&mut app, &mut driver, KeyCode::Char('.'), t1);
    assert!(v.paused);
    assert_eq!(app.live().metrics.events_applied(), before + 1);
    assert!(v.position_us > 0, "a step moves to the next event");
    assert_eq!(v.position_us, 3_000);
    let notice = app.notice().unwrap_or_default();
    assert!(
        notice.starts_with("stepped to 03:00:00.003 alpha: connect connected (attempt 1"),
        "{notice}"
    );

    let v = press(&mut app, &mut driver, KeyCode::Char('>'), t1);
    assert_eq!(v.speed, Speed::Times(2.0));
    let v = press(&mut app, &mut driver, KeyCode::Char('<'), t1);
    let v2 = press(&mut app, &mut driver, KeyCode::Char('<'), t1);
    assert_eq!((v.speed, v2.speed), (Speed::Times(1.0), Speed::Times(0.5)));
    assert_eq!(app.notice(), Some("speed 0.5x"));

    let start = v2.position_us;
    let v = press(&mut app, &mut driver, KeyCode::Right, t1);
    assert_eq!(v.position_us, start + 10 * S);
    let v = press(&mut app, &mut driver, KeyCode::Left, t1);
    assert_eq!(v.position_us, start);

    let v = press(&mut app, &mut driver, KeyCode::Char(']'), t1);
    assert_eq!(v.position_us, 10 * S);
    assert_eq!(app.notice(), Some("marker: stage 2 (alpha)"));
    let v = press(&mut app, &mut driver, KeyCode::Char(']'), t1);
    assert_eq!(v.position_us, 12 * S);
    assert_eq!(app.notice(), Some("marker: reconnect 1 (beta)"));
    let v = press(&mut app, &mut driver, KeyCode::Char('['), t1);
    assert_eq!(v.position_us, 10 * S);

    let v = press(&mut app, &mut driver, KeyCode::Char('G'), t1);
    assert!(v.at_end);
    assert_eq!(v.position_us, v.end_us);
    assert!(app.live().model_costs.iter().map(|m| m.calls).sum::<u64>() > 40);
    // Playing on past the end, the clock stays there: back 10 s is 10 s before the end.
    press(&mut app, &mut driver, KeyCode::Char(' '), t1);
    let later = t1 + Duration::from_secs(3);
    driver.sync(&mut app, later);
    assert_eq!(app.replay().unwrap().position_us, v.end_us);
    let back = press(&mut app, &mut driver, KeyCode::Left, later);
    assert_eq!(back.position_us, v.end_us - 10 * S);
    let v = press(&mut app, &mut driver, KeyCode::Char('g'), t1);
    assert_eq!(v.position_us, 0);
    assert!(!v.at_end);
    assert_eq!(app.live().metrics.events_applied(), 0);

    // Outside a replay, the same keys are the live dashboard's (g: top, Right: sort).
    let mut live = App::new(&[], relaytop_core::cost::Pricing::new(), utc());
    assert_eq!(
        live.handle_key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE)),
        None
    );
    assert_eq!(
        live.handle_key(KeyEvent::new(KeyCode::Char('g'), KeyModifiers::NONE)),
        None
    );
}

#[test]
fn a_seek_lands_where_playing_gets() {
    let (mut ended, mut ended_app) = driver(recording());
    ended.replay_mut().wait_indexed();
    play_all(&mut ended, &mut ended_app);
    for target in [5_500_300, 12_250_700, 25_100_100, 2_000_100] {
        // Played there on the clock, from the start.
        let (mut played, mut played_app) = driver(recording());
        // Both know every marker (the timeline shows them).
        played.replay_mut().wait_indexed();
        let t0 = Duration::from_secs(1);
        played.play(&mut played_app, t0, usize::MAX);
        let t = t0 + Duration::from_micros(target);
        played.play(&mut played_app, t, usize::MAX);
        played.sync(&mut played_app, t);
        assert_eq!(played_app.replay().unwrap().position_us, target);

        // Sought there, back from the end (and on from where the last target left it).
        ended.seek_to(&mut ended_app, t, target);
        assert_eq!(ended_app.replay().unwrap().position_us, target);

        let (a, b) = (played_app.live(), ended_app.live());
        assert_eq!(
            a.metrics.events_applied(),
            b.metrics.events_applied(),
            "at {target}"
        );
        assert_eq!(a.model_costs, b.model_costs, "at {target}");
        for (x, y) in a.metrics.sessions().zip(b.metrics.sessions()) {
            assert_eq!(x.counts, y.counts, "at {target}");
            assert_eq!(x.state(), y.state(), "at {target}");
        }
        for (width, height) in [(200, 50), (80, 24)] {
            assert_eq!(
                screen_text(&draw(&mut played_app, width, height)),
                screen_text(&draw(&mut ended_app, width, height)),
                "what the panes show at {target}, {width}x{height}"
            );
        }
    }
}

#[test]
fn a_recording_cut_mid_line_replays_and_says_where_it_stopped() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("replay_dashboard-{}-torn", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(recording()).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    // The crash case: no run.json end, the last line half written.
    let file = dir.join("beta.jsonl");
    let mut text = std::fs::read_to_string(&file).unwrap();
    let whole_lines = text.lines().count() as u64;
    let whole_bytes = text.len();
    text.push_str(r#"[29990000,"<","text","{\"type\":\"chu"#);
    std::fs::write(&file, text).unwrap();

    let (mut whole, mut whole_app) = driver(recording());
    let (mut driver, mut app) = driver(&dir);
    play_all(&mut driver, &mut app);
    play_all(&mut whole, &mut whole_app);
    driver.sync(&mut app, Duration::ZERO);
    let view = app.replay().unwrap().clone();
    assert!(view.at_end);
    assert_eq!(
        view.torn,
        [format!(
            "beta.jsonl line {} (byte {whole_bytes})",
            whole_lines + 1
        )]
    );
    // Everything before the torn line played.
    assert_eq!(
        app.live().metrics.events_applied(),
        whole_app.live().metrics.events_applied()
    );
    let screen = screen_text(&draw(&mut app, 200, 50));
    assert!(
        screen.contains(&format!(
            "cut short: stopped at beta.jsonl line {}",
            whole_lines + 1
        )),
        "{screen}"
    );
}

/// The replay screen at a fixed point: paused at 13.25 s (beta reconnected at 13 s), every
/// marker known.
fn paused_at_13s() -> App {
    let (mut driver, mut app) = driver(recording());
    driver.replay_mut().wait_indexed();
    let now = Duration::from_secs(1);
    driver.replay_mut().pause(now);
    driver.seek_to(&mut app, now, 13_250_000);
    app
}

#[test]
fn the_replay_screen_at_80x24() {
    let mut app = paused_at_13s();
    insta::assert_snapshot!(draw(&mut app, 80, 24).backend());
}

#[test]
fn the_replay_screen_at_200x50() {
    let mut app = paused_at_13s();
    insta::assert_snapshot!(draw(&mut app, 200, 50).backend());
}

#[test]
fn the_help_lists_the_replay_keys_only_in_a_replay() {
    let mut app = paused_at_13s();
    app.act(relaytop_tui::keys::Action::Help);
    let replaying = screen_text(&draw(&mut app, 200, 50));
    assert!(replaying.contains("one event on (pauses)"), "{replaying}");
    let mut live = App::new(&[], relaytop_core::cost::Pricing::new(), utc());
    live.act(relaytop_tui::keys::Action::Help);
    let live = screen_text(&draw(&mut live, 200, 50));
    assert!(!live.contains("one event on (pauses)"), "{live}");
}

#[test]
fn the_asciicast_export_is_a_valid_cast_of_the_dashboard() {
    let mut replay = Replay::open(&[recording().to_path_buf()]).unwrap();
    let options = asciicast::CastOptions {
        width: 120,
        height: 36,
        ..Default::default()
    };
    let mut out = Vec::new();
    let summary = asciicast::export(&mut replay, &options, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let mut lines = text.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 120);
    assert_eq!(header["height"], 36);
    assert_eq!(header["timestamp"], utc().timestamp());
    assert_eq!(header["idle_time_limit"], 2.0);
    assert!(header["title"].as_str().unwrap().starts_with("relaytop"));
    let mut screen = vt100::Parser::new(
        std::num::NonZeroU16::new(36).unwrap(),
        std::num::NonZeroU16::new(120).unwrap(),
        0,
    );
    let mut last = -1.0;
    let mut frames = 0;
    for line in lines {
        let (t, kind, data): (f64, String, String) = serde_json::from_str(line).unwrap();
        assert_eq!(kind, "o");
        assert!(t >= last, "times never go back: {t} after {last}");
        last = t;
        screen.process(data.as_bytes());
        frames += 1;
    }
    assert_eq!(frames, summary.frames);
    assert!(
        frames > 30,
        "a frame at least every second of the 30 s run: {frames}"
    );
    // The run is 30 s with no silence over the idle limit: played as recorded.
    assert!((last - 30.0).abs() < 0.3, "{last}");
    let contents = screen.screen().contents();
    assert!(
        contents.contains("alpha") && contents.contains("beta"),
        "{contents}"
    );
    assert!(contents.contains("Sessions"), "{contents}");
    // The end of the run: the clock shows 03:00:30 (UTC start, recorded wall clock).
    assert!(contents.contains("0:30"), "{contents}");
}
