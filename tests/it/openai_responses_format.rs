//! openai-responses: fixtures of the documented event sequence and of what relays bend (data-only
//! SSE, a `[DONE]` appended, unknown events, incomplete and failed responses, a top-level
//! `error`, a `sequence_number` gap, cached/reasoning/cost usage, a function call, a truncated
//! body), each fed whole, in 1-byte and in 7-byte pieces, giving the same events; then the
//! simulator streaming it to a live session, and a stream it drops reported as cut.

use crate::formats::{Fixtures, count, done_of, text_of};
use crate::support;

use std::time::Duration;

use relaytop_core::protocol::openai_responses::decode::{
    ResponsesDecoder, ResponsesFormat, SseInbound,
};
use relaytop_core::session::tap::Wire;
use relaytop_core::session::{
    Completed, ErrorKind, EventKind, Protocol, SessionCommand, SessionSpec, SessionState, Tokens,
    Workload,
};
use relaytop_sim::{SimProfile, SimServer};
use support::*;

const RESPONSES: Fixtures<ResponsesFormat> = Fixtures::new("openai_responses", "gpt-4.1");

/// When the event holding `needle` was complete, fed in `piece`-byte pieces (see `run`):
/// its blank line's last byte arrived.
fn arrival_us(name: &str, needle: &str, piece: usize) -> u64 {
    let body = String::from_utf8(RESPONSES.fixture(name)).unwrap();
    let at = body
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} in {name}"));
    let end = at + body[at..].find("\n\n").unwrap() + 1;
    10_000 * (end / piece) as u64 + 10_000
}

fn tokens(input: u64, output: u64, cached: u64, reasoning: u64) -> Tokens {
    Tokens {
        input,
        output,
        cached_input: cached,
        cache_write_input: 0,
        reasoning_output: reasoning,
        estimated: false,
    }
}

fn clean(events: &[EventKind]) -> bool {
    count(events, |e| {
        matches!(
            e,
            EventKind::Malformed { .. } | EventKind::UnknownFrame { .. }
        )
    }) == 0
}

#[test]
fn responses_reference_stream() {
    let name = "reference.sse";
    RESPONSES.every_split(name, |r, piece| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "Hi there!");
        let done = done_of(&r.events);
        assert_eq!(done.tokens, tokens(37, 11, 0, 0));
        assert_eq!(done.cost, None);
        assert_eq!(done.finish.as_deref(), Some("completed"));
        // Never response.created: the first output_text delta.
        assert_eq!(
            done.ttft_us,
            Some(arrival_us(name, "\"delta\":\"Hi\"", piece)),
            "{piece}"
        );
        assert_eq!(done.answer_us, None, "no thinking before the answer");
        assert_eq!(r.data.len(), 11, "every event's data is shown to the tap");
        assert_eq!(
            count(&r.events, |e| matches!(e, EventKind::FirstToken { .. })),
            1
        );
        assert!(clean(&r.events), "{:?}", r.events);
    });
}

#[test]
fn responses_reasoning_summary_then_text() {
    let name = "reasoning_then_text.sse";
    RESPONSES.every_split(name, |r, piece| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "Hello!", "thinking is never the answer");
        let done = done_of(&r.events);
        assert_eq!(done.tokens, tokens(20, 142, 0, 128));
        let first_thought = arrival_us(name, "\"delta\":\"**Greeting**\"", piece);
        let first_answer = arrival_us(name, "\"delta\":\"Hello\"", piece);
        assert_eq!(done.ttft_us, Some(first_thought), "{piece}");
        assert_eq!(done.answer_us, Some(first_answer), "{piece}");
        if piece < 1 << 20 {
            assert!(first_thought < first_answer);
        }
        assert!(r.events.iter().any(|e| matches!(
            e,
            EventKind::FirstToken { ttft_us, .. } if *ttft_us == first_thought
        )));
        assert!(clean(&r.events), "{:?}", r.events);
    });
}

#[test]
fn responses_data_only_with_a_done_line() {
    RESPONSES.every_split("data_only.sse", |r, _| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "Bonjour été");
        let done = done_of(&r.events);
        assert_eq!(done.tokens, tokens(12, 4, 0, 0));
        assert_eq!(done.finish.as_deref(), Some("completed"));
        assert!(clean(&r.events), "{:?}", r.events);
    });
}

#[test]
fn responses_unknown_events_are_counted_not_fatal() {
    RESPONSES.every_split("unknown_events.sse", |r, _| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "Ok");
        let unknown: Vec<_> = r
            .events
            .iter()
            .filter_map(|e| match e {
                EventKind::UnknownFrame { frame_type } => Some(frame_type.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(unknown, ["response.brand_new_event", "relay.debug"]);
        assert_eq!(done_of(&r.events).tokens, tokens(8, 1, 0, 0));
        assert_eq!(
            count(&r.events, |e| matches!(e, EventKind::Malformed { .. })),
            0,
            "the comment is framing, the sequence has no gap"
        );
    });
}

#[test]
fn responses_incomplete_is_done_with_its_reason() {
    RESPONSES.every_split("incomplete.sse", |r, _| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "Once upon a time");
        let done = done_of(&r.events);
        assert_eq!(done.tokens, tokens(15, 16, 0, 0));
        assert_eq!(done.finish.as_deref(), Some("max_output_tokens"));
    });
}

#[test]
fn responses_failed_fails_the_request() {
    RESPONSES.every_split("failed.sse", |r, _| {
        assert_eq!(
            r.inbounds,
            [SseInbound::ResponseFailed {
                kind: ErrorKind::Upstream,
                message: "The model produced invalid content. (server_error)".into(),
                fatal: false,
            }]
        );
        assert_eq!(text_of(&r.events), "Partial");
        assert_eq!(
            count(&r.events, |e| matches!(
                e,
                EventKind::RequestFailed {
                    kind: ErrorKind::Upstream,
                    ..
                }
            )),
            1
        );
        assert_eq!(
            count(&r.events, |e| matches!(
                e,
                EventKind::Error {
                    retryable: true,
                    ..
                }
            )),
            1
        );
        assert_eq!(count(&r.events, |e| matches!(e, EventKind::Done(_))), 0);
    });
}

#[test]
fn responses_top_level_error_event() {
    RESPONSES.every_split("error_event.sse", |r, _| {
        assert!(
            matches!(
                &r.inbounds[..],
                [SseInbound::ResponseFailed {
                    kind: ErrorKind::RateLimited,
                    fatal: false,
                    message,
                }] if message.contains("Rate limit reached") && message.contains("rate_limit_exceeded")
            ),
            "{:?}",
            r.inbounds
        );
        assert_eq!(count(&r.events, |e| matches!(e, EventKind::Done(_))), 0);
        assert_eq!(
            count(&r.events, |e| matches!(e, EventKind::FirstToken { .. })),
            0,
            "response.created is never a first token"
        );
    });
}

#[test]
fn responses_sequence_gap_is_counted_and_the_response_goes_on() {
    RESPONSES.every_split("sequence_gap.sse", |r, _| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "one two three");
        let malformed: Vec<_> = r
            .events
            .iter()
            .filter_map(|e| match e {
                EventKind::Malformed { reason } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            malformed,
            ["events were lost: sequence_number jumped from 4 to 7"]
        );
        assert_eq!(done_of(&r.events).tokens, tokens(10, 3, 0, 0));
    });
}

#[test]
fn responses_usage_with_cached_reasoning_and_cost() {
    let name = "usage_cached_reasoning_cost.sse";
    RESPONSES.every_split(name, |r, piece| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "Cached answer");
        let done = done_of(&r.events);
        assert_eq!(done.tokens, tokens(2048, 300, 1920, 256));
        assert_eq!(done.cost, Some(0.00123));
        assert_eq!(
            done.ttft_us,
            Some(arrival_us(name, "response.reasoning_text.delta\",", piece)),
            "raw reasoning text is the first token"
        );
        assert!(done.answer_us.is_some());
        assert!(clean(&r.events), "{:?}", r.events);
    });
}

#[test]
fn responses_function_call_arguments_count_for_ttft_not_as_text() {
    let name = "function_call.sse";
    RESPONSES.every_split(name, |r, piece| {
        assert_eq!(r.inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(&r.events), "", "arguments are not answer text");
        let done = done_of(&r.events);
        assert_eq!(done.tokens, tokens(500, 24, 0, 0));
        assert_eq!(
            done.ttft_us,
            Some(arrival_us(
                name,
                "response.function_call_arguments.delta\",",
                piece
            ))
        );
        assert!(clean(&r.events), "{:?}", r.events);
    });
}

#[test]
fn responses_truncated_stream_is_cut() {
    RESPONSES.every_split("truncated.sse", |r, _| {
        assert_eq!(r.inbounds, [SseInbound::StreamCut]);
        assert_eq!(text_of(&r.events), "The answer is forty");
        assert_eq!(count(&r.events, |e| matches!(e, EventKind::Done(_))), 0);
        assert_eq!(
            count(&r.events, |e| matches!(e, EventKind::Malformed { .. })),
            1,
            "the half event the body ended in"
        );
    });
}

#[test]
fn responses_replayed_events_give_the_live_events() {
    // What the tap saw, handed back event by event (as a replay does), gives the same events.
    let body = RESPONSES.fixture("reasoning_then_text.sse");
    let mut live = ResponsesDecoder::new();
    live.request_sent(Duration::ZERO, "m", 1);
    let mut live_events = Vec::new();
    let mut recorded: Vec<(Option<String>, String)> = Vec::new();
    live.on_bytes(
        Duration::from_millis(5),
        &body,
        &mut |e| live_events.push(e),
        &mut |w| match w {
            Wire::SseEvent { event, data } => {
                recorded.push((Some(event.to_owned()), data.to_owned()))
            }
            Wire::Text(data) => recorded.push((None, data.to_owned())),
            _ => {}
        },
    );
    let mut replay = ResponsesDecoder::new();
    replay.request_sent(Duration::ZERO, "m", 1);
    let mut replay_events = Vec::new();
    for (event, data) in &recorded {
        replay.on_event(Duration::from_millis(5), event.as_deref(), data, &mut |e| {
            replay_events.push(e)
        });
    }
    assert_eq!(replay_events, live_events);
    assert_eq!(recorded.len(), 17);
}

// ------------------------------------------------------------------------------------------
// Against the simulator (127.0.0.1, port 0)
// ------------------------------------------------------------------------------------------

const LONG: Duration = Duration::from_secs(10);

fn quick(ttft_ms: f64, tokens: u32) -> SimProfile {
    SimProfile {
        ttft_p50_ms: ttft_ms,
        ttft_p99_ms: ttft_ms,
        tokens_per_response: tokens,
        tokens_per_second: 1000.0,
        ..SimProfile::default()
    }
}

/// A session on the simulator's Responses route; `path` after the host picks how the
/// configured URL is written (`/v1`, nothing, `/v1/responses`).
fn responses_spec(server: &SimServer, workload: Workload, path: &str) -> SessionSpec {
    let base = server.sse_base_url();
    let host = base.strip_suffix("/v1").unwrap_or(&base);
    let url = format!("{host}{path}");
    let mut spec = spec(&url, workload, fast_timing());
    spec.info.protocol = Protocol::OpenaiResponses;
    spec.info.model = "gpt-5-mini".into();
    spec
}

fn is_done(k: &EventKind) -> bool {
    matches!(k, EventKind::Done(_))
}

#[tokio::test]
async fn responses_session_against_the_simulator() {
    let server = sim(SimProfile {
        thinking_tokens: 2,
        cached_prompt_fraction: 0.5,
        usage_cost_per_mtok: Some(5.0),
        ..quick(120.0, 6)
    })
    .await;
    let mut s = watch(responses_spec(&server, probe(100), "/v1"));
    let done = s
        .wait_for(LONG, is_done)
        .await
        .unwrap_or_else(|| panic!("no response:\n{}", s.story()));
    let EventKind::Done(completed) = done.kind else {
        unreachable!()
    };
    let Completed {
        ttft_us,
        answer_us,
        tokens,
        reported_cost_usd,
        finish_reason,
        chunks,
        ..
    } = *completed;
    // The simulator thinks 2 tokens, then answers 4, after 120 ms.
    let ttft_ms = ttft_us.expect("a first token") as f64 / 1000.0;
    assert!(
        (120.0..600.0).contains(&ttft_ms),
        "TTFT {ttft_ms} ms for 120 ms"
    );
    let answer_ms = answer_us.expect("thinking came first") as f64 / 1000.0;
    assert!(answer_ms >= ttft_ms, "{answer_ms} < {ttft_ms}");
    assert_eq!(chunks, 4, "thinking is not answer chunks");
    assert_eq!((tokens.output, tokens.reasoning_output), (6, 2));
    assert!(tokens.input > 0 && !tokens.estimated, "{tokens:?}");
    assert_eq!(tokens.cached_input, tokens.input / 2);
    let expected = (tokens.input + tokens.output) as f64 * 5.0 / 1e6;
    assert!(
        (reported_cost_usd.expect("usage.cost") - expected).abs() < 1e-12,
        "{reported_cost_usd:?} vs {expected}"
    );
    assert_eq!(finish_reason.as_deref(), Some("completed"));
    assert_eq!(
        s.count(|k| matches!(
            k,
            EventKind::Malformed { .. } | EventKind::UnknownFrame { .. } | EventKind::Error { .. }
        )),
        0,
        "{}",
        s.story()
    );
    assert!(
        s.count(|k| matches!(
            k,
            EventKind::RateLimitStatus(status) if status.requests_limit.is_some()
        )) >= 1,
        "{}",
        s.story()
    );
    // A second response on the same pooled connection.
    s.wait_for(LONG, is_done).await.expect("a second response");
    assert_eq!(s.count(|k| matches!(k, EventKind::Connected { .. })), 1);
    server.stop().await;
}

#[tokio::test]
async fn responses_any_base_url_form_reaches_the_route() {
    let server = sim(quick(10.0, 3)).await;
    for base in ["", "/v1/responses"] {
        let mut s = watch(responses_spec(&server, probe(100), base));
        s.wait_for(LONG, is_done)
            .await
            .unwrap_or_else(|| panic!("{base}: no response:\n{}", s.story()));
        s.handle.commands.send(SessionCommand::Close).await.unwrap();
        s.wait_for(LONG, |k| {
            matches!(k, EventKind::State(SessionState::Closed))
        })
        .await
        .expect("closed");
    }
    server.stop().await;
}

// ------------------------------------------------------------------------------------------
// Any input
// ------------------------------------------------------------------------------------------

const FIXTURES: [&str; 11] = [
    "reference.sse",
    "reasoning_then_text.sse",
    "data_only.sse",
    "unknown_events.sse",
    "incomplete.sse",
    "failed.sse",
    "error_event.sse",
    "sequence_gap.sse",
    "usage_cached_reasoning_cost.sse",
    "function_call.sse",
    "truncated.sse",
];

mod any_input {
    use super::*;
    use proptest::prelude::*;

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 128,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn responses_any_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..768),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            RESPONSES.feed_cut(&data, &cuts);
        }

        #[test]
        fn responses_fixtures_cut_anywhere_give_the_same_events(
            which in 0..FIXTURES.len(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let body = RESPONSES.fixture(FIXTURES[which]);
            prop_assert_eq!(RESPONSES.feed_cut(&body, &cuts), RESPONSES.feed_cut(&body, &[]));
        }

        #[test]
        fn responses_fixtures_with_a_byte_changed_never_panic(
            which in 0..FIXTURES.len(),
            at in any::<usize>(),
            byte in any::<u8>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
        ) {
            let mut body = RESPONSES.fixture(FIXTURES[which]);
            let n = at % body.len();
            body[n] = byte;
            RESPONSES.feed_cut(&body, &cuts);
        }
    }
}
