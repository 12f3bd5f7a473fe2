//! No key is ever recorded: a session whose key is a recognizable test key, a chat turn with
//! the key pasted into it, a marker and error text carrying it, and not one written file (the
//! session files and run.json) contains it. The header names the key's variable, never its
//! value.

use crate::support;

use std::path::Path;
use std::time::Duration;

use relaytop_core::config::file;
use relaytop_core::config::secret::{Secret, SecretError};
use relaytop_core::record::{MarkerTarget, RecordOptions};
use relaytop_core::session::tap::{Direction, Wire};
use relaytop_core::session::{ErrorKind, EventKind, RunClock, SessionCommand};
use relaytop_core::supervisor::Supervisor;
use relaytop_core::world::World;
use relaytop_sim::SimProfile;
use support::{TEST_KEY, sim};

fn every_file(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_never_hold_a_key() {
    let relay = sim(SimProfile {
        accepted_keys: Some(vec![TEST_KEY.into()]),
        ..SimProfile::default()
    })
    .await;
    let text = format!(
        r#"
[defaults]
heartbeat_s = 0.2

[[providers]]
name = "good"
url = "{}"
api_key_env = "RELAYTOP_TEST_KEY"
model = "gpt-4.1"

[[sessions]]
name = "probe"
provider = "good"
interval_s = 0.1

[[sessions]]
name = "chat"
provider = "good"
workload = "chat"
"#,
        relay.url()
    );
    // The key arrives as users' keys do: with a trailing newline.
    let read_key = |var: &str| match var {
        "RELAYTOP_TEST_KEY" => Ok(Secret::new(format!("{TEST_KEY}\n"))),
        other => Err(SecretError::NotSet { var: other.into() }),
    };
    let config = file::parse(&text, "redaction.toml", &read_key).expect("config");
    let mut world = World::start(config, &relaytop_sim::Embedded)
        .await
        .expect("world");
    let root = tempfile::tempdir().unwrap();
    world.recording = Some(RecordOptions::new(root.path()));
    let clock = RunClock::new();
    let recorder = world
        .start_recording(chrono::Utc::now(), clock)
        .unwrap()
        .expect("recording is on");
    let (mut supervisor, mut events) = Supervisor::new(clock);
    let specs = world.session_specs(Some(&recorder)).unwrap();
    let chat = specs.iter().position(|s| s.info.name == "chat").unwrap() as u32;
    for spec in specs {
        supervisor.start(spec);
    }
    assert!(supervisor.command(
        chat,
        SessionCommand::Chat {
            text: format!("here is my key: {TEST_KEY} (do not tell anyone)"),
        }
    ));
    recorder.marker(MarkerTarget::All, &format!("pasted {TEST_KEY} by mistake"));
    recorder.event(
        chat,
        clock.now(),
        &EventKind::Error {
            kind: ErrorKind::Auth,
            message: format!("the relay said: bad key {TEST_KEY}"),
            retryable: false,
            retry_after_ms: None,
        },
    );

    // Wait for the chat's answer (bounded), then a little traffic more.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut answered = false;
    while !answered {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) => {
                answered = e.session == chat && matches!(e.kind, EventKind::Done(_));
            }
            _ => break,
        }
    }
    assert!(answered, "the chat turn was answered");
    supervisor
        .shutdown(Duration::from_secs(2), &mut events, |_| {})
        .await;
    let dir = recorder.finish("test over", clock.now()).unwrap();
    world.stop().await;
    relay.stop().await;

    // A tap used after the end writes nothing.
    let files = every_file(&dir);
    assert!(files.len() >= 3, "two sessions and run.json: {files:?}");
    let mut redacted = 0;
    for (name, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(TEST_KEY), "{name} holds the key:\n{text}");
        assert!(
            !text.contains("TESTKEYrelaytop"),
            "{name} holds part of the key:\n{text}"
        );
        redacted += text.matches("[REDACTED]").count();
    }
    let chat_file = String::from_utf8(std::fs::read(dir.join("chat.jsonl")).unwrap()).unwrap();
    assert!(
        chat_file.contains(r#"here is my key: [REDACTED] (do not tell anyone)"#),
        "the chat turn is recorded, scrubbed:\n{chat_file}"
    );
    assert!(chat_file.contains(r#""api_key_env":"RELAYTOP_TEST_KEY""#));
    assert!(chat_file.contains("bad key [REDACTED]"));
    assert!(redacted >= 4, "chat turn, markers, error: {redacted}");
}

#[test]
fn a_tap_scrubs_every_kind_of_line() {
    use relaytop_core::record::{Recorder, RunMeta};
    use relaytop_core::session::{Protocol, SessionInfo, Timing};
    let root = tempfile::tempdir().unwrap();
    let recorder = Recorder::start(
        &RecordOptions::new(root.path()),
        RunMeta {
            started_at: chrono::Utc::now(),
            source: format!("config with {TEST_KEY} in its path"),
            pricing: Default::default(),
            secrets: vec![Secret::new(TEST_KEY), Secret::new("")],
            slo: Default::default(),
        },
        RunClock::new(),
    )
    .unwrap();
    let info = SessionInfo {
        id: 0,
        name: "s".into(),
        provider: "p".into(),
        model: "m".into(),
        protocol: Protocol::RelayV1,
        url: format!("wss://relay.example/v1?key={TEST_KEY}"),
        workload: "chat".into(),
    };
    let tap = recorder
        .tap(&info, &Timing::default(), Some("KEY_VAR"))
        .unwrap();
    let at = Duration::from_millis(5);
    let frame = format!(
        r#"{{"type":"chat.completion","messages":[{{"role":"user","content":"key \"{TEST_KEY}\""}}]}}"#
    );
    tap.0.wire(at, Direction::ToRelay, Wire::Text(&frame));
    tap.0.wire(
        at,
        Direction::FromRelay,
        Wire::Text(&format!("echo {TEST_KEY}")),
    );
    tap.0.wire(
        at,
        Direction::FromRelay,
        Wire::Close {
            code: 1008,
            reason: &format!("key {TEST_KEY} revoked"),
        },
    );
    tap.0
        .wire(at, Direction::FromRelay, Wire::Binary(TEST_KEY.as_bytes()));
    tap.0.event(
        at,
        &EventKind::Closed {
            code: 1008,
            reason: TEST_KEY.into(),
            requested: false,
        },
    );
    let dir = recorder.finish("done", at).unwrap();
    // After the end, taps write nothing more.
    tap.0.wire(at, Direction::ToRelay, Wire::Text(TEST_KEY));
    for (name, bytes) in every_file(&dir) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(TEST_KEY), "{name} holds the key:\n{text}");
    }
    let text = std::fs::read_to_string(dir.join("s.jsonl")).unwrap();
    // Header (url, source), the two frames, the close and the closed event.
    assert_eq!(text.matches("[REDACTED]").count(), 6, "{text}");
    // A binary body is scrubbed before it is encoded; its length stays the original's.
    use base64::Engine as _;
    let line = text.lines().find(|l| l.contains(r#""binary""#)).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v[3]["len"], TEST_KEY.len());
    let body = base64::engine::general_purpose::STANDARD
        .decode(v[3]["b64"].as_str().unwrap())
        .unwrap();
    assert_eq!(body, b"[REDACTED]");
}
