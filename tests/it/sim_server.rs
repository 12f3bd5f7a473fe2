//! The embedded relay simulator as a client sees it: real sockets on 127.0.0.1 (port 0), a
//! tokio-tungstenite client, every test bounded by a short timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use relaytop_core::protocol::relay_v1::{ChatMessage, ClientFrame, Role, ServerFrame, Usage};
use relaytop_sim::{DropMode, SimProfile, SimServer, UpgradeRejection, tone_wav};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A well-shaped key (the default profile accepts any such key).
const KEY: &str = "hs_live_simtestkey000001";

/// Every test runs within this.
const TEST_LIMIT: Duration = Duration::from_secs(15);
/// How long a test waits for a frame it expects.
const FRAME_WAIT: Duration = Duration::from_secs(3);

async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_LIMIT, test)
        .await
        .expect("test took too long");
}

/// A quick profile: first token after 2 to 5 ms, 1,000 tokens a second.
fn quick() -> SimProfile {
    SimProfile {
        ttft_p50_ms: 2.0,
        ttft_p99_ms: 5.0,
        tokens_per_second: 1_000.0,
        ..SimProfile::default()
    }
}

async fn start(profile: SimProfile) -> SimServer {
    SimServer::start("127.0.0.1:0".parse().unwrap(), profile)
        .await
        .unwrap()
}

async fn try_connect(
    server: &SimServer,
    authorization: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut request = server.url().into_client_request().unwrap();
    if let Some(value) = authorization {
        request
            .headers_mut()
            .insert("Authorization", value.parse().unwrap());
    }
    request
        .headers_mut()
        .insert("X-Model", "gpt-4.1".parse().unwrap());
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _response)| ws)
}

async fn connect(server: &SimServer) -> Ws {
    try_connect(server, Some(&format!("Bearer {KEY}")))
        .await
        .unwrap()
}

/// The next message, or `None` when the stream ended or failed. Panics after `FRAME_WAIT`.
async fn next_message(ws: &mut Ws) -> Option<Message> {
    match tokio::time::timeout(FRAME_WAIT, ws.next()).await {
        Ok(Some(Ok(message))) => Some(message),
        Ok(Some(Err(_)) | None) => None,
        Err(_) => panic!("no frame within {FRAME_WAIT:?}"),
    }
}

/// The next text frame (Pings and Pongs skipped).
async fn next_text(ws: &mut Ws) -> String {
    loop {
        match next_message(ws).await {
            Some(Message::Text(text)) => return text.as_str().to_owned(),
            Some(Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Nothing at all arrives for `quiet`.
async fn assert_silent(ws: &mut Ws, quiet: Duration) {
    if let Ok(message) = tokio::time::timeout(quiet, ws.next()).await {
        panic!("expected silence, got {message:?}");
    }
}

/// How the connection ended: `Some(code)` for a close frame, `None` for an abrupt end.
async fn ending(ws: &mut Ws) -> Option<CloseCode> {
    loop {
        match next_message(ws).await {
            None => return None,
            Some(Message::Close(frame)) => return frame.map(|f| f.code),
            Some(_) => continue,
        }
    }
}

async fn send(ws: &mut Ws, frame: ClientFrame) {
    ws.send(Message::text(frame.to_text())).await.unwrap();
}

fn chat(id: &str, content: &str, max_tokens: Option<u32>) -> ClientFrame {
    ClientFrame::ChatCompletion {
        model: "gpt-4.1".into(),
        messages: vec![ChatMessage::new(Role::User, content)],
        stream: true,
        temperature: None,
        max_tokens,
        id: Some(id.into()),
    }
}

/// Reads a whole completion: its chunk texts and the closing frame's text.
async fn read_completion(ws: &mut Ws) -> (Vec<String>, String) {
    let mut chunks = Vec::new();
    loop {
        let text = next_text(ws).await;
        match ServerFrame::parse(&text).unwrap() {
            ServerFrame::Chunk { content, .. } => chunks.push(content.into_owned()),
            _ => return (chunks, text),
        }
    }
}

/// Waits until `condition` holds for the server's stats (they trail what a client sees when
/// the server still waits on the client, e.g. for its close frame).
async fn eventually(server: &SimServer, condition: impl Fn(&relaytop_sim::SimStats) -> bool) {
    let deadline = tokio::time::Instant::now() + FRAME_WAIT;
    while !condition(&server.stats()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats never got there: {:?}",
            server.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain HTTP GET; returns the status, the head and the body.
async fn http_get(addr: SocketAddr, path: &str, key: Option<&str>) -> (u16, String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn a_completion_streams_its_chunks_then_done_with_usage() {
    bounded(async {
        let profile = SimProfile {
            tokens_per_response: 7,
            chunk_words: vec![" one".into(), " two".into(), " three".into()],
            ..quick()
        };
        let server = start(profile).await;
        let mut ws = connect(&server).await;

        send(&mut ws, chat("r1", "hello world!", None)).await;
        let (chunks, end) = read_completion(&mut ws).await;
        assert_eq!(chunks.concat(), " one two three one two three one");
        assert_eq!(
            ServerFrame::parse(&end).unwrap(),
            ServerFrame::Done {
                usage: Some(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 7
                }),
                id: Some("r1".into()),
                finish_reason: Some("stop".into()),
            }
        );

        // Every chunk carries the request's id; `max_tokens` caps the response.
        send(&mut ws, chat("r2", "hi", Some(3))).await;
        let first = next_text(&mut ws).await;
        assert_eq!(first, r#"{"type":"chunk","content":" one","id":"r2"}"#);
        let (chunks, end) = read_completion(&mut ws).await;
        assert_eq!(chunks.len(), 2);
        assert!(matches!(
            ServerFrame::parse(&end).unwrap(),
            ServerFrame::Done { usage: Some(Usage { completion_tokens: 3, .. }), finish_reason: Some(r), .. } if r == "length"
        ));

        let stats = server.stats();
        assert_eq!(stats.connections_accepted, 1);
        assert_eq!(stats.requests, 2);
        assert_eq!(stats.responses_completed, 2);
        assert_eq!(stats.open_connections, 1);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn usage_can_be_left_out() {
    bounded(async {
        let server = start(SimProfile {
            send_usage: false,
            tokens_per_response: 2,
            tokens_per_second: 0.0,
            ..quick()
        })
        .await;
        let mut ws = connect(&server).await;
        send(&mut ws, chat("r", "x", None)).await;
        let (chunks, end) = read_completion(&mut ws).await;
        assert_eq!(chunks.len(), 2);
        assert_eq!(end, r#"{"type":"done","id":"r","finish_reason":"stop"}"#);
    })
    .await;
}

#[tokio::test]
async fn a_second_request_while_one_runs_is_refused() {
    bounded(async {
        let server = start(SimProfile {
            tokens_per_response: 5,
            // Long enough that the second request surely comes while the first runs.
            tokens_per_second: 20.0,
            ..quick()
        })
        .await;
        let mut ws = connect(&server).await;
        send(&mut ws, chat("first", "a", None)).await;
        send(&mut ws, chat("second", "b", None)).await;
        let (mut chunks, mut refusals) = (0, 0);
        loop {
            let text = next_text(&mut ws).await;
            match ServerFrame::parse(&text).unwrap() {
                ServerFrame::Chunk { id, .. } if id.as_deref() == Some("first") => chunks += 1,
                ServerFrame::Error { code, id, .. }
                    if code.as_deref() == Some("invalid_request")
                        && id.as_deref() == Some("second") =>
                {
                    refusals += 1
                }
                ServerFrame::Done { id, .. } if id.as_deref() == Some("first") => break,
                _ => panic!("unexpected {text}"),
            }
        }
        assert_eq!((chunks, refusals), (5, 1));
        assert_eq!(server.stats().requests, 2);
    })
    .await;
}

#[tokio::test]
async fn pings_are_answered() {
    bounded(async {
        let server = start(quick()).await;
        let mut ws = connect(&server).await;
        send(&mut ws, ClientFrame::Ping).await;
        assert_eq!(next_text(&mut ws).await, r#"{"type":"pong"}"#);
        ws.send(Message::Ping(b"hb".to_vec().into())).await.unwrap();
        assert_eq!(
            next_message(&mut ws).await,
            Some(Message::Pong(b"hb".to_vec().into()))
        );
        assert_eq!(server.stats().pings_answered, 2);
    })
    .await;
}

#[tokio::test]
async fn a_silent_peer_answers_no_ping_but_still_serves_requests() {
    bounded(async {
        let server = start(SimProfile {
            answer_pings: false,
            tokens_per_response: 3,
            ..quick()
        })
        .await;
        let mut ws = connect(&server).await;
        send(&mut ws, ClientFrame::Ping).await;
        ws.send(Message::Ping(b"hb".to_vec().into())).await.unwrap();
        assert_silent(&mut ws, Duration::from_millis(400)).await;
        assert_eq!(server.stats().pings_answered, 0);

        // The swallowed Pong did not disturb the stream.
        send(&mut ws, chat("r", "a", None)).await;
        let (chunks, end) = read_completion(&mut ws).await;
        assert_eq!(chunks.len(), 3);
        assert!(end.contains("done"), "{end}");

        // Live: a new profile that answers pings takes effect from the next frame.
        server.set_profile(quick());
        send(&mut ws, ClientFrame::Ping).await;
        assert_eq!(next_text(&mut ws).await, r#"{"type":"pong"}"#);
    })
    .await;
}

#[tokio::test]
async fn bad_keys_get_401_with_the_reason() {
    bounded(async {
        let server = start(SimProfile {
            accepted_keys: Some(vec![KEY.into()]),
            ..quick()
        })
        .await;
        let cases = [
            (None, "missing Authorization"),
            (Some("Bearer hs_live_short"), "malformed API key"),
            (Some("Token abc"), "Bearer"),
            (Some("Bearer hs_live_simtestkey000002"), "unknown API key"),
        ];
        for (authorization, reason) in cases {
            match try_connect(&server, authorization).await {
                Err(tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), 401);
                    assert_eq!(
                        response.headers()["content-type"],
                        "application/json",
                        "{authorization:?}"
                    );
                    let body: serde_json::Value =
                        serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                    let message = body["error"]["message"].as_str().unwrap();
                    assert!(message.contains(reason), "{authorization:?}: {message}");
                }
                other => panic!("{authorization:?}: expected a 401, got {other:?}"),
            }
        }
        assert!(
            try_connect(&server, Some(&format!("Bearer {KEY}")))
                .await
                .is_ok()
        );
        let stats = server.stats();
        assert_eq!(
            (stats.upgrades_rejected, stats.connections_accepted),
            (4, 1)
        );
    })
    .await;
}

#[tokio::test]
async fn upgrades_are_rejected_with_429_and_retry_after() {
    bounded(async {
        let server = start(SimProfile {
            reject_upgrades: Some(UpgradeRejection {
                first: Some(2),
                status: 429,
                retry_after: Some("2".into()),
                message: None,
            }),
            ..quick()
        })
        .await;
        for _ in 0..2 {
            match try_connect(&server, Some(&format!("Bearer {KEY}"))).await {
                Err(tungstenite::Error::Http(response)) => {
                    assert_eq!(response.status(), 429);
                    assert_eq!(response.headers()["retry-after"], "2");
                    let body: serde_json::Value =
                        serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                    assert!(body["error"]["message"].is_string(), "{body}");
                }
                other => panic!("expected a 429, got {other:?}"),
            }
        }
        // The third upgrade goes through.
        let mut ws = connect(&server).await;
        send(&mut ws, ClientFrame::Ping).await;
        assert_eq!(next_text(&mut ws).await, r#"{"type":"pong"}"#);

        // A new profile counts afresh; an HTTP date is passed through as given.
        let date = "Wed, 21 Oct 2026 07:28:00 GMT";
        server.set_profile(SimProfile {
            reject_upgrades: Some(UpgradeRejection {
                first: None,
                status: 503,
                retry_after: Some(date.into()),
                message: Some("maintenance".into()),
            }),
            ..quick()
        });
        match try_connect(&server, Some(&format!("Bearer {KEY}"))).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 503);
                assert_eq!(response.headers()["retry-after"], date);
                assert_eq!(
                    response.body().as_deref(),
                    Some(&br#"{"error":{"message":"maintenance"}}"#[..])
                );
            }
            other => panic!("expected a 503, got {other:?}"),
        }
        let stats = server.stats();
        assert_eq!(
            (stats.upgrades_rejected, stats.connections_accepted),
            (3, 1)
        );
    })
    .await;
}

#[tokio::test]
async fn the_idle_cutoff_ends_a_silent_client_but_not_a_heartbeating_one() {
    bounded(async {
        let server = start(SimProfile {
            idle_cutoff_ms: Some(200),
            ..quick()
        })
        .await;
        let started = tokio::time::Instant::now();
        let mut silent = connect(&server).await;
        let mut beating = connect(&server).await;
        let beats = async {
            for _ in 0..12 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                send(&mut beating, ClientFrame::Ping).await;
            }
        };
        let (end, ()) = tokio::join!(ending(&mut silent), beats);
        assert_eq!(end, None, "the cut-off sends no close frame");
        assert!(started.elapsed() >= Duration::from_millis(200));
        // The heartbeating client lived through 600 ms, three cut-off periods.
        send(&mut beating, chat("r", "a", Some(1))).await;
        let mut pongs = 0;
        loop {
            let text = next_text(&mut beating).await;
            if text.contains("pong") {
                pongs += 1;
            } else if text.contains("done") {
                break;
            }
        }
        assert_eq!(pongs, 12);
    })
    .await;
}

#[tokio::test]
async fn kill_connections_ends_them_without_a_close_frame_and_keeps_listening() {
    bounded(async {
        let server = start(SimProfile {
            tokens_per_second: 5.0,
            ..quick()
        })
        .await;
        let mut idle = connect(&server).await;
        let mut streaming = connect(&server).await;
        send(&mut streaming, chat("r", "a", None)).await;
        assert!(next_text(&mut streaming).await.contains("chunk"));
        server.kill_connections();
        assert_eq!(ending(&mut idle).await, None);
        assert_eq!(ending(&mut streaming).await, None);
        let mut again = connect(&server).await;
        send(&mut again, ClientFrame::Ping).await;
        assert_eq!(next_text(&mut again).await, r#"{"type":"pong"}"#);
        let stats = server.stats();
        assert_eq!(stats.open_connections, 1);
        assert_eq!(stats.responses_dropped, 1);
    })
    .await;
}

#[tokio::test]
async fn stop_frees_the_address_for_a_new_server() {
    bounded(async {
        let server = start(quick()).await;
        let addr = server.addr();
        let mut ws = connect(&server).await;
        send(&mut ws, ClientFrame::Ping).await;
        assert_eq!(next_text(&mut ws).await, r#"{"type":"pong"}"#);
        server.stop().await;
        assert_eq!(ending(&mut ws).await, None);
        assert!(TcpStream::connect(addr).await.is_err(), "nothing listens");

        let server = SimServer::start(addr, quick()).await.unwrap();
        assert_eq!(server.addr(), addr);
        assert_eq!(server.url(), format!("ws://{addr}/v1/stream"));
        let mut ws = connect(&server).await;
        send(&mut ws, ClientFrame::Ping).await;
        assert_eq!(next_text(&mut ws).await, r#"{"type":"pong"}"#);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn errors_and_rate_limits_at_rate_one() {
    bounded(async {
        let server = start(SimProfile {
            error_rate: 1.0,
            ..quick()
        })
        .await;
        let mut ws = connect(&server).await;
        send(&mut ws, chat("e1", "a", None)).await;
        let text = next_text(&mut ws).await;
        let frame = ServerFrame::parse(&text).unwrap();
        assert!(
            matches!(&frame, ServerFrame::Error { code: Some(c), id: Some(i), retry_after_ms: None, .. } if c == "upstream_error" && i == "e1"),
            "{text}"
        );

        server.set_profile(SimProfile {
            rate_limit_rate: 1.0,
            rate_limit_retry_after_ms: 1_500,
            ..quick()
        });
        send(&mut ws, chat("e2", "a", None)).await;
        let text = next_text(&mut ws).await;
        let frame = ServerFrame::parse(&text).unwrap();
        assert!(
            matches!(&frame, ServerFrame::Error { code: Some(c), retry_after_ms: Some(1_500), id: Some(i), .. } if c == "rate_limited" && i == "e2"),
            "{text}"
        );

        // The connection stays open after both.
        send(&mut ws, ClientFrame::Ping).await;
        assert_eq!(next_text(&mut ws).await, r#"{"type":"pong"}"#);
        let stats = server.stats();
        assert_eq!((stats.requests, stats.responses_completed), (2, 0));
    })
    .await;
}

#[tokio::test]
async fn malformed_frames_at_rate_one() {
    bounded(async {
        let server = start(SimProfile {
            malformed_rate: 1.0,
            tokens_per_response: 4,
            ..quick()
        })
        .await;
        let mut ws = connect(&server).await;
        send(&mut ws, chat("r", "a", None)).await;
        let mut kinds = Vec::new();
        loop {
            let text = next_text(&mut ws).await;
            let kind = match ServerFrame::parse(&text) {
                Ok(ServerFrame::Chunk { .. }) => "chunk",
                Ok(ServerFrame::Unknown { .. }) => "unknown",
                Ok(ServerFrame::Done { .. }) => "done",
                Err(_) => "broken",
                Ok(other) => panic!("unexpected {other:?}"),
            };
            kinds.push(kind);
            if kind == "done" {
                break;
            }
        }
        assert_eq!(
            kinds,
            [
                "chunk", "broken", "chunk", "unknown", "chunk", "broken", "chunk", "unknown",
                "done"
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn cancel_ends_the_completion_with_done() {
    bounded(async {
        let server = start(SimProfile {
            tokens_per_second: 20.0,
            tokens_per_response: 1_000,
            ..quick()
        })
        .await;
        let mut ws = connect(&server).await;
        send(&mut ws, chat("long", "a", None)).await;
        assert!(next_text(&mut ws).await.contains("chunk"));
        send(&mut ws, ClientFrame::Cancel { id: None }).await;
        let (chunks, end) = read_completion(&mut ws).await;
        match ServerFrame::parse(&end).unwrap() {
            ServerFrame::Done {
                usage: Some(usage),
                id,
                finish_reason,
            } => {
                assert_eq!(finish_reason.as_deref(), Some("cancelled"));
                assert_eq!(id.as_deref(), Some("long"));
                assert_eq!(usage.completion_tokens, 1 + chunks.len() as u64);
                assert!(usage.completion_tokens < 10);
            }
            other => panic!("expected done, got {other:?}"),
        }
        // Nothing more comes for the cancelled completion, and a cancel with nothing under
        // way is ignored.
        send(&mut ws, ClientFrame::Cancel { id: None }).await;
        assert_silent(&mut ws, Duration::from_millis(200)).await;
        assert_eq!(server.stats().responses_completed, 1);
    })
    .await;
}

#[tokio::test]
async fn drops_mid_stream_abruptly_or_with_a_close_code() {
    bounded(async {
        let profile = SimProfile {
            drop_rate: 1.0,
            tokens_per_response: 10,
            tokens_per_second: 0.0,
            ..quick()
        };
        let server = start(profile.clone()).await;
        let mut ws = connect(&server).await;
        send(&mut ws, chat("r", "a", None)).await;
        let mut chunks = 0;
        let end = loop {
            match next_message(&mut ws).await {
                Some(Message::Text(_)) => chunks += 1,
                Some(Message::Close(frame)) => break frame.map(|f| f.code),
                None => break None,
                Some(_) => {}
            }
        };
        assert_eq!(end, None, "an abrupt drop has no close frame");
        assert!((1..10).contains(&chunks), "{chunks} chunks before the drop");

        server.set_profile(SimProfile {
            drop_mode: DropMode::Close(1012),
            ..profile
        });
        let mut ws = connect(&server).await;
        send(&mut ws, chat("r", "a", None)).await;
        assert_eq!(ending(&mut ws).await, Some(CloseCode::Restart));
        eventually(&server, |stats| stats.responses_dropped == 2).await;
    })
    .await;
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults() {
    async fn pattern(seed: u64) -> String {
        let server = start(SimProfile {
            seed,
            error_rate: 0.5,
            tokens_per_response: 1,
            ..quick()
        })
        .await;
        let mut ws = connect(&server).await;
        let mut pattern = String::new();
        for i in 0..16 {
            send(&mut ws, chat(&i.to_string(), "a", None)).await;
            let (_, end) = read_completion(&mut ws).await;
            pattern.push(if end.contains("error") { 'E' } else { '.' });
        }
        server.stop().await;
        pattern
    }
    bounded(async {
        let first = pattern(11).await;
        assert_eq!(first, pattern(11).await);
        assert!(first.contains('E') && first.contains('.'), "{first}");
    })
    .await;
}

#[tokio::test]
async fn a_small_wav_is_transcribed() {
    bounded(async {
        let server = start(quick()).await;
        let mut ws = connect(&server).await;
        let wav = tone_wav(16_000, 1, 500);
        let transcription = ClientFrame::AudioTranscription {
            model: "whisper-1".into(),
            stream: true,
            id: Some("t1".into()),
        };
        send(&mut ws, transcription.clone()).await;
        let (head, tail) = wav.split_at(1_000);
        ws.send(Message::binary(head.to_vec())).await.unwrap();
        ws.send(Message::binary(tail.to_vec())).await.unwrap();
        send(&mut ws, ClientFrame::AudioEnd).await;
        let text = next_text(&mut ws).await;
        assert_eq!(
            ServerFrame::parse(&text).unwrap(),
            ServerFrame::Transcript {
                text: "Simulated transcript of 0.50 s of audio (16000 Hz, 1 channel, 16-bit)."
                    .into(),
                is_final: true,
                id: Some("t1".into()),
            }
        );
        let done = next_text(&mut ws).await;
        assert!(
            matches!(ServerFrame::parse(&done).unwrap(), ServerFrame::Done { usage: Some(u), .. } if u.completion_tokens > 0),
            "{done}"
        );

        // One binary frame and no `audio.end`: transcribed after 300 ms of quiet.
        send(&mut ws, transcription).await;
        ws.send(Message::binary(vec![7u8; 321])).await.unwrap();
        let text = next_text(&mut ws).await;
        assert!(text.contains("321 bytes of audio"), "{text}");
        assert!(next_text(&mut ws).await.contains("done"));
        assert_eq!(server.stats().transcriptions, 2);
    })
    .await;
}

#[tokio::test]
async fn models_beside_the_stream() {
    bounded(async {
        let server = start(quick()).await;
        let (status, head, body) = http_get(server.addr(), "/v1/models", Some(KEY)).await;
        assert_eq!(status, 200);
        assert!(head.contains("Content-Type: application/json"), "{head}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["object"], "list");
        assert!(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["id"] == "gpt-4.1")
        );

        let (status, _, body) = http_get(server.addr(), "/v1/models", Some("hs_live_nope")).await;
        assert_eq!(status, 401);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("malformed")
        );
        let (status, _, _) = http_get(server.addr(), "/v1/models", None).await;
        assert_eq!(status, 401);

        let (status, _, _) = http_get(server.addr(), "/elsewhere", Some(KEY)).await;
        assert_eq!(status, 404);
        let (status, _, _) = http_get(server.addr(), "/v1/stream", Some(KEY)).await;
        assert_eq!(status, 426);
        assert_eq!(
            server.models_url(),
            format!("http://{}/v1/models", server.addr())
        );
    })
    .await;
}

#[tokio::test]
async fn bytes_sent_right_after_the_upgrade_request_are_not_lost() {
    bounded(async {
        let server = start(quick()).await;
        let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
        let mut bytes = format!(
            "GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Authorization: Bearer {KEY}\r\n\r\n"
        )
        .into_bytes();
        // A masked text frame with `{"type":"ping"}`, in the same write as the head.
        let payload = br#"{"type":"ping"}"#;
        let mask = [1u8, 2, 3, 4];
        bytes.extend_from_slice(&[0x81, 0x80 | payload.len() as u8]);
        bytes.extend_from_slice(&mask);
        bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        tcp.write_all(&bytes).await.unwrap();

        let mut answer = Vec::new();
        let expected_pong = br#"{"type":"pong"}"#;
        while !answer.ends_with(expected_pong) {
            let mut buf = [0u8; 512];
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    })
    .await;
}
