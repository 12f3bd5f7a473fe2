//! The openai-sse and openai-realtime decoders against fixtures of the shapes real relays
//! send (tests/fixtures/): the reference stream, a usage chunk with non-empty `choices` and a
//! `cost`, `content: null`, ids that change on every chunk, extra fields, no usage chunk,
//! usage on the finish chunk and no `[DONE]`, mid-stream errors, broken streams, malformed
//! events; Realtime's GA and beta names, cached tokens, failed, cancelled and incomplete
//! responses, rate limits, unknown and malformed events, and the fatal `invalid_api_key`.
//! Every fixture is also fed in one-byte pieces: the framing must not care where reads end.

use std::time::Duration;

use relaytop_core::protocol::openai_chat::decode::{ChatFormat, SseInbound};
use relaytop_core::protocol::openai_realtime::decode::{RealtimeDecoder, RealtimeInbound};
use relaytop_core::session::{ErrorKind, EventKind, RateLimits, Tokens};

use crate::formats::{self, Fixtures, fixture, text_of};

const CHAT: Fixtures<ChatFormat> = Fixtures::new("openai_sse", "gpt-4o-mini");

fn done_of(events: &[EventKind]) -> (Tokens, Option<f64>, Option<String>) {
    let done = formats::done_of(events);
    assert!(done.ttft_us.is_some(), "a done with text has a TTFT");
    (done.tokens, done.cost, done.finish)
}

/// The fixture whole, in 1-byte and in 7-byte pieces (`Fixtures::every_split`): each run's
/// weighty inbounds, events and the data the tap saw.
fn every_split(name: &str, check: impl Fn(&[SseInbound], &[EventKind], &[String])) {
    CHAT.every_split(name, |r, _| check(&r.inbounds, &r.events, &r.data));
}

#[test]
fn sse_reference_stream() {
    every_split("reference.sse", |inbounds, events, data| {
        assert_eq!(inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(events), "Hello");
        let (tokens, cost, finish) = done_of(events);
        assert_eq!(
            tokens,
            Tokens {
                input: 9,
                output: 12,
                cached_input: 0,
                cache_write_input: 0,
                reasoning_output: 0,
                estimated: false
            }
        );
        assert_eq!(cost, None);
        assert_eq!(finish.as_deref(), Some("stop"));
        assert_eq!(data.len(), 5, "every event's data is shown to the tap");
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, EventKind::FirstToken { .. }))
                .count(),
            1
        );
    });
}

#[test]
fn sse_usage_chunk_with_choices_cost_and_cached_tokens() {
    every_split(
        "usage_chunk_with_choices_and_cost.sse",
        |inbounds, events, _| {
            assert_eq!(inbounds, [SseInbound::ResponseDone]);
            assert_eq!(text_of(events), "Hi there");
            let (tokens, cost, finish) = done_of(events);
            assert_eq!(
                (tokens.input, tokens.output, tokens.cached_input),
                (14, 2, 8)
            );
            assert!(!tokens.estimated);
            assert_eq!(cost, Some(0.0000033), "usage.cost is preferred");
            assert_eq!(finish.as_deref(), Some("stop"));
        },
    );
}

#[test]
fn sse_null_content_changing_ids_and_extra_fields() {
    every_split(
        "null_content_changing_ids_extra_fields.sse",
        |inbounds, events, _| {
            assert_eq!(inbounds, [SseInbound::ResponseDone]);
            assert_eq!(text_of(events), "Bonjour été");
            let (tokens, _, finish) = done_of(events);
            assert_eq!((tokens.input, tokens.output), (11, 3));
            assert_eq!(finish.as_deref(), Some("length"));
            assert!(
                !events
                    .iter()
                    .any(|e| matches!(e, EventKind::Malformed { .. })),
                "{events:?}"
            );
        },
    );
}

#[test]
fn sse_without_a_usage_chunk_estimates() {
    every_split("no_usage_chunk.sse", |inbounds, events, _| {
        assert_eq!(inbounds, [SseInbound::ResponseDone]);
        let (tokens, cost, _) = done_of(events);
        assert!(tokens.estimated, "marked as an estimate");
        assert_eq!(tokens.input, 9, "the prompt estimate");
        assert_eq!(
            tokens.output,
            relaytop_core::tokenize::Counter::for_model("gpt-4.1")
                .count("Hello! How can I help?")
                .tokens,
            "the text counted with the model's tokenizer"
        );
        assert_eq!(cost, None);
    });
}

#[test]
fn sse_usage_on_the_finish_chunk_and_no_done() {
    every_split(
        "usage_on_the_finish_chunk_no_done.sse",
        |inbounds, events, _| {
            assert_eq!(
                inbounds,
                [SseInbound::ResponseDone],
                "the end of a finished stream"
            );
            let (tokens, _, finish) = done_of(events);
            assert_eq!(
                (tokens.input, tokens.output),
                (5, 2),
                "numbers as strings and floats"
            );
            assert!(!tokens.estimated);
            assert_eq!(finish.as_deref(), Some("stop"));
        },
    );
}

#[test]
fn sse_mid_stream_error() {
    every_split("mid_stream_error.sse", |inbounds, events, _| {
        assert!(
            matches!(
                inbounds,
                [SseInbound::ResponseFailed {
                    kind: ErrorKind::Upstream,
                    fatal: false,
                    ..
                }]
            ),
            "{inbounds:?}"
        );
        assert!(events.iter().any(|e| matches!(
            e,
            EventKind::RequestFailed {
                kind: ErrorKind::Upstream,
                ..
            }
        )));
        assert!(events.iter().any(|e| matches!(
            e,
            EventKind::Error {
                retryable: true,
                ..
            }
        )));
        assert!(!events.iter().any(|e| matches!(e, EventKind::Done(_))));
    });
}

#[test]
fn sse_broken_stream_is_cut() {
    every_split("broken_stream.sse", |inbounds, events, _| {
        assert_eq!(inbounds, [SseInbound::StreamCut]);
        assert_eq!(text_of(events), "The answer is forty");
        assert!(!events.iter().any(|e| matches!(e, EventKind::Done(_))));
    });
}

#[test]
fn sse_malformed_events_are_counted_and_comments_ignored() {
    every_split("malformed_and_comments.sse", |inbounds, events, _| {
        assert_eq!(inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(events), "AB");
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, EventKind::Malformed { .. }))
                .count(),
            1
        );
    });
}

/// Feeds a JSON-lines fixture of Realtime server events, 10 ms apart.
fn run_realtime(path: &str, request: bool) -> (Vec<RealtimeInbound>, Vec<EventKind>) {
    let text = String::from_utf8(fixture(path)).expect("UTF-8");
    let mut d = RealtimeDecoder::new();
    if request {
        d.request_sent(Duration::ZERO, "gpt-realtime", 3);
    }
    let mut inbounds = Vec::new();
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = Duration::from_millis(10 * (n as u64 + 1));
        let i = d.on_text(at, line, &mut |e| events.push(e));
        if i != RealtimeInbound::Nothing && i != RealtimeInbound::Text {
            inbounds.push(i);
        }
    }
    (inbounds, events)
}

#[test]
fn realtime_ga_text_exchange() {
    let (inbounds, events) = run_realtime("openai_realtime/ga_text.jsonl", true);
    assert_eq!(
        inbounds,
        [
            RealtimeInbound::OutputItem {
                item_id: "item_1".into()
            },
            RealtimeInbound::ResponseDone
        ]
    );
    assert_eq!(text_of(&events), "Hello! How can I help?");
    assert!(events.contains(&EventKind::FirstToken {
        request: 1,
        ttft_us: 80_000
    }));
    let (tokens, cost, finish) = done_of(&events);
    assert_eq!(
        tokens,
        Tokens {
            input: 12,
            output: 18,
            cached_input: 0,
            cache_write_input: 0,
            reasoning_output: 0,
            estimated: false
        }
    );
    assert_eq!(cost, None);
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(
        events.contains(&EventKind::RateLimitStatus(Box::new(RateLimits {
            requests_limit: Some(5000),
            requests_remaining: Some(4999),
            requests_reset_ms: Some(12),
            tokens_limit: Some(800_000),
            tokens_remaining: Some(799_970),
            tokens_reset_ms: Some(2),
        })))
    );
    assert!(
        !events.iter().any(|e| matches!(
            e,
            EventKind::UnknownFrame { .. } | EventKind::Malformed { .. }
        )),
        "{events:?}"
    );
}

#[test]
fn realtime_beta_names_and_cached_tokens() {
    let (inbounds, events) = run_realtime("openai_realtime/beta_names_cached_tokens.jsonl", true);
    assert_eq!(inbounds, [RealtimeInbound::ResponseDone]);
    assert_eq!(text_of(&events), "Sure, once more.");
    let (tokens, _, finish) = done_of(&events);
    assert_eq!(
        (tokens.input, tokens.cached_input, tokens.output),
        (1290, 1152, 10)
    );
    assert_eq!(
        finish.as_deref(),
        Some("length"),
        "incomplete: max_output_tokens"
    );
}

#[test]
fn realtime_failed_responses_errors_unknown_and_malformed() {
    let (inbounds, events) = run_realtime("openai_realtime/failed_and_errors.jsonl", true);
    assert_eq!(
        inbounds,
        [
            RealtimeInbound::Error,
            RealtimeInbound::ResponseFailed { wait: None }
        ],
        "{events:?}"
    );
    // The error came after `response.created`: it does not fail the response; the failed
    // `response.done` does, with its own error.
    let failures: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            EventKind::RequestFailed { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(failures, [ErrorKind::Upstream]);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, EventKind::UnknownFrame { .. }))
            .count(),
        1
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, EventKind::Malformed { .. }))
            .count(),
        1
    );
}

#[test]
fn realtime_cancelled_response_is_done_with_usage() {
    let (inbounds, events) = run_realtime("openai_realtime/cancelled.jsonl", true);
    assert_eq!(inbounds, [RealtimeInbound::ResponseDone]);
    let (tokens, _, finish) = done_of(&events);
    assert_eq!((tokens.input, tokens.output), (20, 5));
    assert_eq!(finish.as_deref(), Some("cancelled"));
}

#[test]
fn realtime_invalid_api_key_is_fatal() {
    let (inbounds, events) = run_realtime("openai_realtime/invalid_api_key.jsonl", false);
    assert!(
        matches!(&inbounds[..], [RealtimeInbound::Fatal { reason }] if reason.contains("invalid_api_key")),
        "{inbounds:?}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        EventKind::Error {
            kind: ErrorKind::Auth,
            retryable: false,
            ..
        }
    )));
}
