//! A scripted chat against the simulator, through the engine and the chat pane: two turns
//! carrying the history and the system prompt, a cancel mid-stream, a drop mid-reply marked
//! as cut and retried after the reconnect; and transcriptions of a generated WAV through the
//! library and the `relaytop transcribe` binary, with the errors a person gets for a missing
//! or non-WAV file.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use relaytop_core::cost::ProviderPricing;
use relaytop_core::protocol::relay_v1::{ClientFrame, Role};
use relaytop_core::session::tap::{Direction, Tap, TapHandle, Wire};
use relaytop_core::session::{Completed, EventKind, Protocol, SessionCommand, Workload};
use relaytop_sim::SimProfile;
use relaytop_tui::chat::{ChatPane, ReplyStatus};
use support::{TEST_KEY, fast_timing, sim, spec, watch};

const WAIT: Duration = Duration::from_secs(5);

/// Keeps every `chat.completion` and `audio.transcription` the session sent, and counts
/// binary frames.
#[derive(Default)]
struct Sent {
    frames: Mutex<Vec<ClientFrame>>,
    binary: Mutex<usize>,
}

impl Tap for Sent {
    fn wire(&self, _at: Duration, direction: Direction, wire: Wire<'_>) {
        if direction != Direction::ToRelay {
            return;
        }
        match wire {
            Wire::Text(text) => {
                if let Ok(
                    frame @ (ClientFrame::ChatCompletion { .. }
                    | ClientFrame::AudioTranscription { .. }
                    | ClientFrame::AudioEnd),
                ) = ClientFrame::parse(text)
                {
                    self.frames.lock().unwrap().push(frame);
                }
            }
            Wire::Binary(_) => *self.binary.lock().unwrap() += 1,
            _ => {}
        }
    }

    fn event(&self, _at: Duration, _kind: &EventKind) {}
}

impl Sent {
    /// The messages of each chat.completion sent, as (role, content).
    fn conversations(&self) -> Vec<Vec<(Role, String)>> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter_map(|f| match f {
                ClientFrame::ChatCompletion { messages, .. } => Some(
                    messages
                        .iter()
                        .map(|m| (m.role, m.content.clone()))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }
}

fn chat_spec(
    url: &str,
    system: Option<&str>,
    tap: Arc<Sent>,
) -> relaytop_core::session::SessionSpec {
    let mut spec = spec(
        url,
        Workload::Chat {
            system: system.map(str::to_owned),
        },
        fast_timing(),
    );
    spec.info.workload = "chat".into();
    spec.tap = Some(TapHandle(tap));
    spec
}

fn pane() -> ChatPane {
    let info = spec(
        "ws://unused",
        Workload::Chat { system: None },
        fast_timing(),
    )
    .info;
    ChatPane::new(0, &info, None, ProviderPricing::default())
}

fn is_done(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Done(_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_turns_carry_the_history_and_the_system_prompt() {
    let relay = sim(SimProfile {
        tokens_per_response: 6,
        ..SimProfile::default()
    })
    .await;
    let sent = Arc::new(Sent::default());
    let mut session = watch(chat_spec(&relay.url(), Some("Be brief."), sent.clone()));
    for (n, question) in ["What is a relay?", "And a heartbeat?"].iter().enumerate() {
        session
            .handle
            .commands
            .send(SessionCommand::Chat {
                text: (*question).into(),
            })
            .await
            .unwrap();
        assert!(
            session.wait_for(WAIT, is_done).await.is_some(),
            "turn {n}: {}",
            session.story()
        );
    }
    let conversations = sent.conversations();
    assert_eq!(conversations.len(), 2, "{conversations:?}");
    let second = &conversations[1];
    let roles: Vec<Role> = second.iter().map(|(r, _)| *r).collect();
    assert_eq!(
        roles,
        [Role::System, Role::User, Role::Assistant, Role::User],
        "{second:?}"
    );
    assert_eq!(second[0].1, "Be brief.");
    assert_eq!(second[1].1, "What is a relay?");
    let first_reply: String = session
        .seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Chunk { request: 1, text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(second[2].1, first_reply, "the reply as it streamed");
    assert_eq!(second[3].1, "And a heartbeat?");
    let _ = session.handle.commands.send(SessionCommand::Close).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pane_shows_a_scripted_chat_as_it_streams() {
    let relay = sim(SimProfile {
        tokens_per_response: 5,
        ..SimProfile::default()
    })
    .await;
    let sent = Arc::new(Sent::default());
    let mut session = watch(chat_spec(&relay.url(), None, sent));
    let mut pane = pane();
    for c in "hello".chars() {
        pane.handle_key(crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::Char(c),
        ));
    }
    let Some(relaytop_tui::chat::ChatEffect::Send(commands)) = pane.handle_key(
        crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Enter),
    ) else {
        panic!("Enter sends")
    };
    for command in commands {
        session.handle.commands.send(command).await.unwrap();
    }
    assert!(session.wait_for(WAIT, is_done).await.is_some());
    for event in &session.seen {
        pane.apply(event);
    }
    let turn = pane.turns().next().unwrap();
    assert_eq!(turn.status, ReplyStatus::Done);
    let stats = turn.stats.as_ref().expect("figures under the reply");
    assert!(stats.ttft_us.is_some() && stats.total_us > 0);
    assert_eq!(stats.tokens.output, 5, "usage from the relay");
    assert!(!turn.reply.is_empty());
    let _ = session.handle.commands.send(SessionCommand::Close).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esc_cancels_a_long_reply_mid_stream() {
    let relay = sim(SimProfile {
        tokens_per_second: 20.0,
        tokens_per_response: 400,
        ..SimProfile::default()
    })
    .await;
    let sent = Arc::new(Sent::default());
    let mut session = watch(chat_spec(&relay.url(), None, sent));
    session
        .handle
        .commands
        .send(SessionCommand::Chat {
            text: "a long story, please".into(),
        })
        .await
        .unwrap();
    assert!(
        session
            .wait_for(WAIT, |k| matches!(k, EventKind::Chunk { .. }))
            .await
            .is_some()
    );
    session
        .handle
        .commands
        .send(SessionCommand::Cancel)
        .await
        .unwrap();
    let done = session
        .wait_for(Duration::from_secs(2), is_done)
        .await
        .expect("the relay ends a cancelled reply with done, long before its 20 s");
    let EventKind::Done(completed) = done.kind else {
        unreachable!()
    };
    let Completed {
        finish_reason,
        chunks,
        ..
    } = *completed;
    assert_eq!(finish_reason.as_deref(), Some("cancelled"));
    assert!(chunks < 100, "stopped early: {chunks} chunks");
    let mut pane = pane();
    pane.handle_paste("a long story, please");
    pane.handle_key(crossterm::event::KeyEvent::from(
        crossterm::event::KeyCode::Enter,
    ));
    for event in &session.seen {
        pane.apply(event);
    }
    assert_eq!(pane.turns().next().unwrap().status, ReplyStatus::Cancelled);
    let _ = session.handle.commands.send(SessionCommand::Close).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_cut_by_a_drop_is_marked_and_retried_after_the_reconnect() {
    let relay = sim(SimProfile {
        tokens_per_second: 40.0,
        tokens_per_response: 40,
        ..SimProfile::default()
    })
    .await;
    let sent = Arc::new(Sent::default());
    let mut session = watch(chat_spec(&relay.url(), Some("sys"), sent.clone()));
    let mut pane = pane();
    pane.handle_paste("explain backoff");
    let enter = crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Enter);
    let Some(relaytop_tui::chat::ChatEffect::Send(commands)) = pane.handle_key(enter) else {
        panic!("Enter sends")
    };
    for command in commands {
        session.handle.commands.send(command).await.unwrap();
    }
    assert!(
        session
            .wait_for(WAIT, |k| matches!(k, EventKind::Chunk { .. }))
            .await
            .is_some()
    );
    relay.kill_connections();
    assert!(
        session
            .wait_for(WAIT, |k| matches!(k, EventKind::RequestFailed { .. }))
            .await
            .is_some(),
        "{}",
        session.story()
    );
    for event in &session.seen {
        pane.apply(event);
    }
    let applied = session.seen.len();
    assert!(
        matches!(pane.turns().next().unwrap().status, ReplyStatus::Cut { .. }),
        "{:?}",
        pane.turns().next().unwrap().status
    );
    // `r` on an empty input retries.
    let Some(relaytop_tui::chat::ChatEffect::Send(commands)) = pane.handle_key(
        crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Char('r')),
    ) else {
        panic!("r retries a cut reply")
    };
    assert_eq!(commands, [SessionCommand::Retry]);
    for command in commands {
        session.handle.commands.send(command).await.unwrap();
    }
    assert!(
        session.wait_for(WAIT, is_done).await.is_some(),
        "{}",
        session.story()
    );
    assert!(
        session.count(|k| matches!(k, EventKind::Connected { .. })) >= 2,
        "reconnected: {}",
        session.story()
    );
    for event in &session.seen[applied..] {
        pane.apply(event);
    }
    let turn = pane.turns().next().unwrap();
    assert_eq!(turn.status, ReplyStatus::Done, "{}", session.story());
    let conversations = sent.conversations();
    assert_eq!(conversations.len(), 2);
    assert_eq!(
        conversations[1],
        [
            (Role::System, "sys".to_owned()),
            (Role::User, "explain backoff".to_owned())
        ],
        "the cut turn again, once, without the cut reply"
    );
    let _ = session.handle.commands.send(SessionCommand::Close).await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_wav_is_transcribed_through_the_library_and_a_chat_session() {
    let relay = sim(SimProfile::default()).await;
    let wav = relaytop_sim::tone_wav(16_000, 1, 1500);
    let expected = relaytop_sim::transcript_text(&wav);
    let transcript = relaytop_core::transcribe::transcribe(
        spec(&relay.url(), Workload::OnDemand, fast_timing()),
        wav.clone(),
        "whisper-1".into(),
        WAIT,
    )
    .await
    .expect("a transcript");
    assert_eq!(transcript.text, expected);

    // In a chat session (`/transcribe`), large audio goes in several binary frames.
    let sent = Arc::new(Sent::default());
    let mut session = watch(chat_spec(&relay.url(), None, sent.clone()));
    let long = relaytop_sim::tone_wav(16_000, 2, 3000);
    session
        .handle
        .commands
        .send(SessionCommand::Transcribe {
            audio: long.clone(),
            model: "whisper-1".into(),
        })
        .await
        .unwrap();
    let got = session
        .wait_for(WAIT, |k| matches!(k, EventKind::Transcript { .. }))
        .await
        .expect("a transcript");
    assert_eq!(
        got.kind,
        EventKind::Transcript {
            request: 1,
            text: relaytop_sim::transcript_text(&long),
            is_final: true
        }
    );
    assert!(session.wait_for(WAIT, is_done).await.is_some());
    assert_eq!(*sent.binary.lock().unwrap(), long.len().div_ceil(64 * 1024));
    assert!(matches!(
        sent.frames.lock().unwrap().last(),
        Some(ClientFrame::AudioEnd)
    ));
    assert_eq!(relay.stats().transcriptions, 2);

    // Not on another protocol: said so, nothing sent.
    let mut sse = spec(&relay.sse_base_url(), Workload::OnDemand, fast_timing());
    sse.info.protocol = Protocol::OpenaiSse;
    let error = relaytop_core::transcribe::transcribe(sse, wav, "whisper-1".into(), WAIT)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("needs a relay-v1 provider"), "{error}");
    let _ = session.handle.commands.send(SessionCommand::Close).await;
    relay.stop().await;
}

#[test]
fn a_key_pasted_into_a_message_never_reaches_a_saved_conversation() {
    use relaytop_core::config::secret::Secret;
    use relaytop_tui::chat::run::{After, perform};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.md");
    let mut pane = pane();
    pane.handle_paste(&format!("my key is {TEST_KEY}, is it valid?"));
    let enter = crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Enter);
    let mut sent = Vec::new();
    let effect = pane.handle_key(enter).expect("sent");
    perform(
        &mut pane,
        effect,
        &mut |c| {
            sent.push(c);
            true
        },
        &[Secret::new(TEST_KEY)],
    );
    pane.handle_paste(&format!("/save {}", path.display()));
    let effect = pane.handle_key(enter).expect("saved");
    let after = perform(&mut pane, effect, &mut |_| true, &[Secret::new(TEST_KEY)]);
    assert_eq!(after, After::Stay);
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(
        saved.contains("my key is [REDACTED], is it valid?"),
        "{saved}"
    );
    assert!(!saved.contains(TEST_KEY));
    // The message itself went to the session as typed: the recorder redacts it
    // (tests/record_redaction.rs sends such a chat turn).
    assert!(matches!(&sent[0], SessionCommand::Chat { text } if text.contains(TEST_KEY)));
}

fn binary(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    crate::support::without_tool_variables(&mut std::process::Command::new(env!(
        "CARGO_BIN_EXE_relaytop"
    )))
    .args(args)
    .arg("--log-dir")
    .arg(dir.join("logs"))
    .env("RELAYTOP_TEST_KEY", TEST_KEY)
    .env_remove("RUST_LOG")
    .output()
    .expect("relaytop runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaytop_transcribe_prints_the_transcript_and_says_what_is_wrong_with_a_file() {
    let relay = sim(SimProfile::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relays.toml");
    std::fs::write(
        &config,
        format!(
            "[[providers]]\nname = \"local\"\nurl = \"{}\"\napi_key_env = \"RELAYTOP_TEST_KEY\"\nmodel = \"gpt-4.1\"\n",
            relay.url()
        ),
    )
    .unwrap();
    let wav = dir.path().join("t.wav");
    let audio = relaytop_sim::tone_wav(16_000, 1, 1500);
    std::fs::write(&wav, &audio).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let run = |file: std::path::PathBuf| {
        let dir = dir.path().to_owned();
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            binary(
                &dir,
                &[
                    "--config",
                    &config,
                    "transcribe",
                    file.to_str().unwrap(),
                    "--timeout",
                    "10s",
                ],
            )
        })
    };
    let out = run(wav).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        relaytop_sim::transcript_text(&audio)
    );
    assert!(
        stderr.contains("1.50 s of audio (16000 Hz, mono, 16-bit)"),
        "{stderr}"
    );
    assert!(!stderr.contains(TEST_KEY) && !String::from_utf8_lossy(&out.stdout).contains(TEST_KEY));

    let out = run(dir.path().join("missing.wav")).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("missing.wav: no such file: give the path of a WAV file"),
        "{stderr}"
    );

    let mp3 = dir.path().join("song.mp3");
    std::fs::write(&mp3, b"ID3\x04\x00\x00\x00\x00\x00\x00 not audio").unwrap();
    let out = run(mp3).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("song.mp3 is not a WAV file") && stderr.contains("convert it first"),
        "{stderr}"
    );
    relay.stop().await;
}
