//! anthropic-messages: fixtures of the documented event sequence and of what relays bend
//! (data-only SSE, pings, comments, unknown types, thinking, tool calls, cache usage, the
//! cumulative `message_delta`, a mid-stream `overloaded_error`, a missing `message_stop`, a
//! cut stream) fed whole, in 1-byte and in 7-byte pieces, each time the same events; what the
//! tap saw replays to the same events; and sessions against the simulator.

use std::time::Duration;

use relaytop_core::protocol::anthropic_messages::decode::{
    MessagesDecoder, MessagesFormat, SseInbound,
};
use relaytop_core::session::{ErrorKind, EventKind, Tokens};

use crate::formats::{self, Fixtures, count, text_of, timeless};

const MESSAGES: Fixtures<MessagesFormat> = Fixtures::new("anthropic_messages", "claude-sonnet-4-5");

/// The time (µs) a piece of `piece` bytes holding the end of the first event whose data
/// contains `needle` arrives: 10 ms a piece, as `run` feeds them.
fn event_at(body: &[u8], needle: &str, piece: usize) -> u64 {
    let text = std::str::from_utf8(body).unwrap();
    let start = text.find(needle).unwrap_or_else(|| panic!("no {needle}"));
    let end = start + text[start..].find("\n\n").unwrap() + 2;
    let n = (end - 1) / piece;
    10_000 * (n as u64 + 1)
}

/// The `Done`: its tokens, finish reason, TTFT and time to the first answer token.
fn done_of(events: &[EventKind]) -> (Tokens, Option<String>, Option<u64>, Option<u64>) {
    let d = formats::done_of(events);
    (d.tokens, d.finish, d.ttft_us, d.answer_us)
}

fn tokens(input: u64, output: u64, cached: u64, cache_write: u64) -> Tokens {
    Tokens {
        input,
        output,
        cached_input: cached,
        cache_write_input: cache_write,
        reasoning_output: 0,
        estimated: false,
    }
}

#[test]
fn the_documented_reference_sequence() {
    MESSAGES.every_split("reference.sse", |r, piece| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "Hello!");
        let (t, finish, ttft, answer) = done_of(&r.events);
        assert_eq!(t, tokens(25, 15, 0, 0), "the last output count");
        assert_eq!(finish.as_deref(), Some("end_turn"));
        let body = MESSAGES.fixture("reference.sse");
        assert_eq!(ttft, Some(event_at(&body, "\"Hello\"", piece)));
        assert_eq!(answer, None, "no thinking came first");
        assert_eq!(r.tapped.len(), 8, "every event is shown to the tap");
        assert!(r.tapped.iter().all(|(name, _)| name.is_some()));
        assert_eq!(
            count(&r.events, |e| matches!(e, EventKind::FirstToken { .. })),
            1
        );
        assert_eq!(
            count(&r.events, |e| matches!(
                e,
                EventKind::UnknownFrame { .. } | EventKind::Malformed { .. }
            )),
            0,
            "{:?}",
            r.events
        );
    });
}

#[test]
fn data_only_sse_reads_the_same() {
    let reference = timeless(&MESSAGES.run("reference.sse", 1 << 20).events);
    MESSAGES.every_split("data_only.sse", |r, _| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(
            timeless(&r.events),
            reference,
            "no `event:` lines, CRLF line ends"
        );
        assert!(r.tapped.iter().all(|(name, _)| name.is_none()));
    });
}

#[test]
fn thinking_then_text() {
    MESSAGES.every_split("thinking_then_text.sse", |r, piece| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(
            text_of(&r.events),
            "Hi there, été!",
            "thinking is never answer"
        );
        let (t, finish, ttft, answer) = done_of(&r.events);
        assert_eq!(t, tokens(42, 38, 0, 0));
        assert_eq!(finish.as_deref(), Some("end_turn"));
        let body = MESSAGES.fixture("thinking_then_text.sse");
        let first_thought = event_at(&body, "thinking_delta", piece);
        let first_text = event_at(&body, "text_delta", piece);
        assert_eq!(ttft, Some(first_thought), "the first thinking delta");
        assert_eq!(answer, Some(first_text), "the first text delta");
        let first = r.events.iter().find_map(|e| match e {
            EventKind::FirstToken { ttft_us, .. } => Some(*ttft_us),
            _ => None,
        });
        assert_eq!(first, Some(first_thought));
        if piece == 1 {
            assert!(first_text > first_thought);
        }
    });
}

#[test]
fn a_tool_call_counts_for_the_first_token_not_the_answer() {
    MESSAGES.every_split("tool_use.sse", |r, piece| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "");
        let (t, finish, ttft, _) = done_of(&r.events);
        assert_eq!(t, tokens(400, 20, 0, 0));
        assert_eq!(finish.as_deref(), Some("tool_use"));
        let body = MESSAGES.fixture("tool_use.sse");
        // The empty first `partial_json` is not a token.
        assert_eq!(ttft, Some(event_at(&body, "{\\\"city", piece)));
    });
}

#[test]
fn pings_comments_and_unknown_types_are_counted_never_fatal() {
    MESSAGES.every_split("pings_comments_unknown.sse", |r, _| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "Ok");
        let (t, finish, _, _) = done_of(&r.events);
        assert_eq!(t, tokens(12, 2, 0, 0), "numbers as strings and floats");
        assert_eq!(finish.as_deref(), Some("max_tokens"));
        let unknown: Vec<&str> = r
            .events
            .iter()
            .filter_map(|e| match e {
                EventKind::UnknownFrame { frame_type } => Some(frame_type.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            unknown,
            ["future_event", "content_block_delta/hologram_delta"]
        );
        assert_eq!(
            count(&r.events, |e| matches!(e, EventKind::Malformed { .. })),
            1
        );
        assert_eq!(r.tapped.len(), 13, "comments never reach the tap");
    });
}

#[test]
fn a_mid_stream_overloaded_error_fails_the_response() {
    MESSAGES.every_split("mid_stream_overloaded.sse", |r, _| {
        assert_eq!(
            r.inbounds,
            [SseInbound::ResponseFailed {
                kind: ErrorKind::Overloaded,
                message: "overloaded_error: Overloaded".into(),
                fatal: false,
            }]
        );
        assert_eq!(text_of(&r.events), "Part", "nothing after the error");
        assert!(
            r.events.iter().any(|e| matches!(
                e,
                EventKind::RequestFailed { kind: ErrorKind::Overloaded, reason, .. }
                    if reason == "overloaded_error: Overloaded"
            )),
            "{:?}",
            r.events
        );
        assert!(r.events.iter().any(|e| matches!(
            e,
            EventKind::Error {
                kind: ErrorKind::Overloaded,
                retryable: true,
                ..
            }
        )));
        assert_eq!(count(&r.events, |e| matches!(e, EventKind::Done(_))), 0);
    });
}

#[test]
fn cumulative_message_deltas_keep_the_last_count() {
    MESSAGES.every_split("cumulative_message_delta.sse", |r, _| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "One, two.");
        let (t, finish, _, _) = done_of(&r.events);
        assert_eq!(
            t,
            tokens(31, 12, 0, 0),
            "12, not 5 + 12; the input repeated"
        );
        assert_eq!(finish.as_deref(), Some("end_turn"));
    });
}

#[test]
fn cache_reads_and_writes_are_part_of_the_input() {
    MESSAGES.every_split("cache_usage.sse", |r, _| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        let (t, _, _, _) = done_of(&r.events);
        assert_eq!(t, tokens(1210, 30, 1000, 200));
    });
}

#[test]
fn a_truncated_stream_is_cut_not_done() {
    MESSAGES.every_split("truncated.sse", |r, _| {
        assert_eq!(r.inbounds, [SseInbound::StreamCut]);
        assert_eq!(count(&r.events, |e| matches!(e, EventKind::Done(_))), 0);
        assert!(text_of(&r.events).starts_with("Once upon"));
        assert!(r.end_us > 0);
    });
}

#[test]
fn a_stream_without_message_stop_is_done_when_the_stop_reason_came() {
    MESSAGES.every_split("no_message_stop.sse", |r, _| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "Done anyway");
        let (t, finish, _, _) = done_of(&r.events);
        assert_eq!(t, tokens(7, 3, 0, 0));
        assert_eq!(finish.as_deref(), Some("end_turn"));
        let done_at = r.events.iter().find_map(|e| match e {
            EventKind::Done(done) => Some(done.total_us),
            _ => None,
        });
        assert_eq!(done_at, Some(r.end_us), "done at the body's end");
    });
}

#[test]
fn a_new_request_forgets_the_last_response() {
    let mut d = MessagesDecoder::new();
    let mut events = Vec::new();
    d.request_sent(Duration::ZERO, "m", 1);
    // A stop reason and usage, then a cut: the next request must not inherit them.
    let first = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n";
    d.on_bytes(Duration::ZERO, first, &mut |e| events.push(e), &mut |_| {});
    d.fail(ErrorKind::Network, "dropped");
    d.request_sent(Duration::from_millis(5), "m", 1);
    let second = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n";
    d.on_bytes(
        Duration::from_millis(6),
        second,
        &mut |e| events.push(e),
        &mut |_| {},
    );
    let end = d.on_end(
        Duration::from_millis(7),
        &mut |e| events.push(e),
        &mut |_| {},
    );
    assert_eq!(end, SseInbound::StreamCut, "{events:?}");
}

/// Every fixture decoded through a recorder's tap as the live transport writes it (request
/// events, the decoder's taps, a cut reported by the session), then replayed from the
/// recording: the same events at the same times.
#[test]
fn a_recording_replays_to_the_same_events() {
    use relaytop_core::record::{RecordOptions, Recorder, Replay, RunMeta};
    use relaytop_core::session::tap::Direction;
    use relaytop_core::session::{Protocol, RunClock, SessionInfo, SessionState, Timing};

    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic_messages"
    );
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let root = tempfile::tempdir().unwrap();
    let meta = RunMeta {
        started_at: chrono::Utc::now(),
        source: "anthropic fixtures".into(),
        pricing: Default::default(),
        secrets: Vec::new(),
        slo: Default::default(),
    };
    let recorder =
        Recorder::start(&RecordOptions::new(root.path()), meta, RunClock::new()).unwrap();
    let info = SessionInfo {
        id: 0,
        name: "messages".into(),
        provider: "anthropic".into(),
        model: "claude-sonnet-4-5".into(),
        protocol: Protocol::AnthropicMessages,
        url: "http://127.0.0.1:9".into(),
        workload: "probe".into(),
    };
    let tap = recorder.tap(&info, &Timing::default(), None).unwrap();
    let mut live: Vec<(u64, EventKind)> = Vec::new();
    let ms = Duration::from_millis;
    let report = |live: &mut Vec<(u64, EventKind)>, at: Duration, kind: EventKind| {
        tap.0.event(at, &kind);
        live.push((at.as_micros() as u64, kind));
    };
    report(&mut live, ms(0), EventKind::State(SessionState::Open));
    let mut d = MessagesDecoder::new();
    let mut at = ms(0);
    for file in &files {
        let body = std::fs::read(file).unwrap();
        at += ms(1000);
        let (_, sent) = d.request_sent(at, "claude-sonnet-4-5", 9);
        report(&mut live, at, sent);
        let mut end = None;
        for piece in body.chunks(61) {
            at += ms(1);
            let mut derived = Vec::new();
            let inbound = d.on_bytes(at, piece, &mut |e| derived.push(e), &mut |w| {
                tap.0.wire(at, Direction::FromRelay, w)
            });
            live.extend(derived.into_iter().map(|e| (at.as_micros() as u64, e)));
            if !matches!(inbound, SseInbound::Nothing | SseInbound::Text) {
                end = Some(inbound);
                break;
            }
        }
        let end = end.unwrap_or_else(|| {
            at += ms(1);
            let mut derived = Vec::new();
            let inbound = d.on_end(at, &mut |e| derived.push(e), &mut |w| {
                tap.0.wire(at, Direction::FromRelay, w)
            });
            live.extend(derived.into_iter().map(|e| (at.as_micros() as u64, e)));
            inbound
        });
        if end == SseInbound::StreamCut
            && let Some(failed) = d.fail(ErrorKind::Network, "cut")
        {
            report(&mut live, at, failed);
        }
    }
    let dir = recorder.finish("done", at + ms(1)).unwrap();
    let dones = live
        .iter()
        .filter(|(_, e)| matches!(e, EventKind::Done(_)))
        .count();
    assert_eq!(dones, files.len() - 2, "all but the cut and the overloaded");

    let mut replay = Replay::open(&[dir]).unwrap();
    let replayed: Vec<(u64, EventKind)> = std::iter::from_fn(|| replay.next_event())
        .map(|e| (e.at_us, e.kind))
        .collect();
    assert!(replay.read_stats().warnings().is_empty());
    assert_eq!(replayed.len(), live.len());
    for (i, (l, r)) in live.iter().zip(&replayed).enumerate() {
        assert_eq!(l, r, "event {i}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const FIXTURES: [&str; 10] = [
        "reference.sse",
        "data_only.sse",
        "thinking_then_text.sse",
        "tool_use.sse",
        "pings_comments_unknown.sse",
        "mid_stream_overloaded.sse",
        "cumulative_message_delta.sse",
        "cache_usage.sse",
        "truncated.sse",
        "no_message_stop.sse",
    ];

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_split_of_a_fixture_gives_the_same_events(
            which in 0..FIXTURES.len(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let body = MESSAGES.fixture(FIXTURES[which]);
            prop_assert_eq!(MESSAGES.feed_cut(&body, &cuts), MESSAGES.feed_cut(&body, &[]));
        }

        #[test]
        fn any_bytes_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let _ = MESSAGES.feed_cut(&body, &cuts);
        }

        #[test]
        fn any_event_text_never_panics(
            name in proptest::option::of("[a-z_]{0,20}"),
            data in "[{}\\[\\]\":,a-z_0-9 .\\-]{0,80}",
        ) {
            let mut d = MessagesDecoder::new();
            d.request_sent(Duration::ZERO, "m", 1);
            d.on_event(Duration::ZERO, name.as_deref(), &data, &mut |_| {});
            d.on_body_end(Duration::ZERO, &mut |_| {});
        }
    }
}

// ------------------------------------------------------------------------------------------
// Sessions against the simulator (and one hand-made relay), on 127.0.0.1
// ------------------------------------------------------------------------------------------

mod sessions {
    use std::time::Duration;

    use relaytop_core::config::secret::Secret;
    use relaytop_core::session::{
        AuthStyle, Completed, ErrorKind, EventKind, Protocol, SessionCommand, SessionSpec, Workload,
    };
    use relaytop_sim::SimProfile;
    use tokio::io::AsyncWriteExt as _;

    use crate::support::{fast_timing, sim, spec, watch};

    const LONG: Duration = Duration::from_secs(10);
    /// An Anthropic-shaped key (the simulator checks the shape).
    const KEY: &str = "sk-ant-api03-relaytopTESTkey0001";

    /// 400 characters: 100 prompt tokens for the simulator.
    fn prompt() -> String {
        "abcd".repeat(100)
    }

    fn messages_spec(url: &str, auth: AuthStyle) -> SessionSpec {
        let workload = Workload::Probe {
            interval: Duration::from_millis(100),
            prompt: prompt(),
            max_tokens: None,
        };
        let mut spec = spec(url, workload, fast_timing());
        spec.info.protocol = Protocol::AnthropicMessages;
        spec.info.model = "claude-sonnet-4-5".into();
        spec.api_key = Some(Secret::new(KEY));
        spec.auth = auth;
        spec
    }

    fn quick(ttft_ms: f64, tokens: u32) -> SimProfile {
        SimProfile {
            ttft_p50_ms: ttft_ms,
            ttft_p99_ms: ttft_ms,
            tokens_per_response: tokens,
            tokens_per_second: 1000.0,
            ..SimProfile::default()
        }
    }

    fn is_done(k: &EventKind) -> bool {
        matches!(k, EventKind::Done(_))
    }

    #[tokio::test]
    async fn a_session_gets_what_the_simulator_sent() {
        let server = sim(SimProfile {
            cached_prompt_fraction: 0.5,
            cache_write_fraction: 0.25,
            thinking_tokens: 2,
            ..quick(120.0, 8)
        })
        .await;
        for (auth, url) in [
            (AuthStyle::Native, server.sse_base_url()),
            (
                AuthStyle::Bearer,
                format!("{}/messages", server.sse_base_url()),
            ),
        ] {
            let mut s = watch(messages_spec(&url, auth));
            let done = s
                .wait_for(LONG, is_done)
                .await
                .unwrap_or_else(|| panic!("{auth:?}: no response:\n{}", s.story()));
            let EventKind::Done(completed) = done.kind else {
                unreachable!()
            };
            let Completed {
                ttft_us,
                answer_us,
                tokens,
                finish_reason,
                chunks,
                ..
            } = *completed;
            let ttft_ms = ttft_us.unwrap() as f64 / 1000.0;
            assert!(
                (120.0..600.0).contains(&ttft_ms),
                "{auth:?}: TTFT {ttft_ms} ms for 120 ms"
            );
            let answer_ms = answer_us.expect("thinking came first") as f64 / 1000.0;
            assert!(answer_ms > ttft_ms, "{answer_ms} after {ttft_ms}");
            assert_eq!(chunks, 6, "8 tokens, 2 of them thinking");
            assert_eq!(
                (
                    tokens.input,
                    tokens.cached_input,
                    tokens.cache_write_input,
                    tokens.output,
                    tokens.estimated
                ),
                (100, 50, 25, 8, false),
                "{auth:?}"
            );
            assert_eq!(finish_reason.as_deref(), Some("end_turn"));
            let limits = s.seen.iter().find_map(|e| match &e.kind {
                EventKind::RateLimitStatus(status) => Some((
                    status.requests_limit,
                    status.requests_reset_ms,
                    status.tokens_limit,
                )),
                _ => None,
            });
            let (requests, reset, tokens_limit) =
                limits.unwrap_or_else(|| panic!("no rate limits:\n{}", s.story()));
            assert_eq!(requests, Some(4000));
            assert_eq!(tokens_limit, Some(2_400_000));
            assert!(reset.is_some_and(|ms| ms <= 61_000), "{reset:?}");
            assert_eq!(
                s.count(|k| matches!(
                    k,
                    EventKind::Malformed { .. }
                        | EventKind::Error { .. }
                        | EventKind::UnknownFrame { .. }
                )),
                0,
                "{auth:?}:\n{}",
                s.story()
            );
            let _ = s.handle.commands.send(SessionCommand::Close).await;
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn a_429_in_anthropic_words_is_a_rate_limit_retried() {
        let server = sim(SimProfile {
            rate_limit_rate: 1.0,
            rate_limit_retry_after_ms: 100,
            ..quick(10.0, 3)
        })
        .await;
        let mut s = watch(messages_spec(&server.sse_base_url(), AuthStyle::Native));
        let error = s
            .wait_for(LONG, |k| {
                matches!(
                    k,
                    EventKind::Error {
                        kind: ErrorKind::RateLimited,
                        ..
                    }
                )
            })
            .await
            .unwrap_or_else(|| panic!("no 429:\n{}", s.story()));
        let EventKind::Error {
            message, retryable, ..
        } = error.kind
        else {
            unreachable!()
        };
        assert!(
            message.starts_with("POST /v1/messages answered 429: rate_limit_error: "),
            "{message}"
        );
        assert!(retryable, "{}", s.story());
        server.stop().await;
    }

    /// A relay that answers the check, then streams `body` whole (a clean HTTP end) to every
    /// request; one connection per request.
    async fn fixed_relay(body: &'static [u8]) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Some(head) = crate::support::rogue::read_one_request(&mut tcp).await else {
                        return;
                    };
                    let answer = if head.starts_with("get") {
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"data\":[]}".to_vec()
                    } else {
                        let mut a = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        a.extend_from_slice(body);
                        a
                    };
                    let _ = tcp.write_all(&answer).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn a_clean_end_without_message_stop_is_a_cut() {
        let body = include_bytes!("../fixtures/anthropic_messages/truncated.sse");
        let (url, task) = fixed_relay(body).await;
        let mut s = watch(messages_spec(&url, AuthStyle::Native));
        s.wait_for(LONG, |k| {
            matches!(
                k,
                EventKind::Closed {
                    requested: false,
                    code: 1006,
                    ..
                }
            )
        })
        .await
        .unwrap_or_else(|| panic!("no cut:\n{}", s.story()));
        assert!(
            s.seen.iter().any(|e| matches!(
                &e.kind,
                EventKind::RequestFailed { reason, .. }
                    if reason == "the stream ended before the response finished"
            )),
            "{}",
            s.story()
        );
        assert_eq!(s.count(is_done), 0);
        let _ = s.handle.commands.send(SessionCommand::Close).await;
        task.abort();
    }

    #[tokio::test]
    async fn a_clean_end_after_the_stop_reason_is_done() {
        let body = include_bytes!("../fixtures/anthropic_messages/no_message_stop.sse");
        let (url, task) = fixed_relay(body).await;
        let mut s = watch(messages_spec(&url, AuthStyle::Native));
        let done = s
            .wait_for(LONG, is_done)
            .await
            .unwrap_or_else(|| panic!("no done:\n{}", s.story()));
        let EventKind::Done(completed) = done.kind else {
            unreachable!()
        };
        let Completed {
            tokens,
            finish_reason,
            ..
        } = *completed;
        assert_eq!((tokens.input, tokens.output), (7, 3));
        assert_eq!(finish_reason.as_deref(), Some("end_turn"));
        assert_eq!(s.count(|k| matches!(k, EventKind::Closed { .. })), 0);
        let _ = s.handle.commands.send(SessionCommand::Close).await;
        task.abort();
    }
}
