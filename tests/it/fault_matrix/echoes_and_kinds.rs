//! Relays that echo the key back (a 401 body quoting the `Authorization` header, streamed text
//! repeating it) over relay/v1 and openai-sse: the key never leaves the session, every event
//! says `[REDACTED]`, and the recording replays to the same scrubbed events. And failures by
//! their kind: a 200 whose body is no event stream is a protocol error (malformed, no 1006, no
//! reconnect), a dead peer fails the request as a timeout, a close 1008 counts one auth error,
//! and a 503 with `Retry-After` is overload, not a rate-limit wait.

use std::time::Duration;

use crate::support::rogue::{self, Act, Rogue, http, http_relay};
use crate::support::{TEST_KEY, chat, probe, spec};
use relaytop_core::session::{ErrorKind, EventKind, Protocol, SessionState};

use super::case::{Case, closed, error_messages, is_end, quick, quiet, start};

/// No event of the session holds the key; returns how many say `[REDACTED]`.
fn redacted_everywhere(c: &Case) -> usize {
    let mut redacted = 0;
    for event in &c.s.seen {
        let text = format!("{:?}", event.kind);
        assert!(!text.contains(TEST_KEY), "the key in {text}");
        redacted += usize::from(text.contains("[REDACTED]"));
    }
    redacted
}

fn models_ok() -> String {
    http("200 OK", "application/json", "", r#"{"data":[]}"#)
}

fn sse_spec(url: &str) -> relaytop_core::session::SessionSpec {
    let mut s = spec(url, probe(150), quiet(quick(50)));
    s.info.protocol = Protocol::OpenaiSse;
    s.info.model = "gpt-4o-mini".into();
    s
}

#[tokio::test]
async fn relay_v1_key_echoed_in_a_401_body_is_redacted() {
    let relay = Rogue::start(vec![vec![Act::Respond(rogue::http_error(
        401,
        "Unauthorized",
        &[],
        &format!("invalid key: Bearer {TEST_KEY}"),
    ))]])
    .await;
    let mut c = start(spec(&relay.url(), probe(100), quick(50)));
    c.expect("the stop", is_end).await;
    assert_eq!(
        error_messages(&c),
        vec![(
            ErrorKind::Auth,
            "upgrade answered 401: invalid key: Bearer [REDACTED]".to_owned()
        )]
    );
    assert!(redacted_everywhere(&c) >= 2, "{}", c.story());
    assert_eq!(
        c.finish().await,
        SessionState::Stopped {
            reason: "upgrade answered 401: invalid key: Bearer [REDACTED]".into()
        }
    );
}

#[tokio::test]
async fn relay_v1_key_echoed_in_chunk_text_is_redacted() {
    let mut frames = rogue::text_frame(&format!(
        r#"{{"type":"chunk","content":"your key is {TEST_KEY}, right?"}}"#
    ));
    frames.extend(rogue::response(1));
    let relay = Rogue::start(vec![vec![
        Act::Upgrade,
        Act::AwaitText("chat.completion"),
        Act::Send(frames),
        Act::Hold,
    ]])
    .await;
    let mut c = start(spec(&relay.url(), probe(10_000), quiet(quick(50))));
    c.expect("the response", |k| matches!(k, EventKind::Done(_)))
        .await;
    let chunks: Vec<String> =
        c.s.seen
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Chunk { text, .. } => Some(text.to_string()),
                _ => None,
            })
            .collect();
    assert_eq!(chunks, vec!["your key is [REDACTED], right?", "w0 "]);
    assert_eq!(redacted_everywhere(&c), 1);
    assert_eq!(c.finish().await, SessionState::Closed);
}

#[tokio::test]
async fn openai_sse_key_echoed_in_a_401_body_and_in_chunk_text_is_redacted() {
    // The models check refuses the key, quoting it.
    let refused = http(
        "401 Unauthorized",
        "application/json",
        "",
        &format!(r#"{{"error":{{"message":"Incorrect API key provided: Bearer {TEST_KEY}"}}}}"#),
    );
    let (url, task) = http_relay(refused, String::new()).await;
    let mut c = start(sse_spec(&url));
    c.expect("the stop", is_end).await;
    assert!(redacted_everywhere(&c) >= 2, "{}", c.story());
    let state = c.finish().await;
    let SessionState::Stopped { reason } = state else {
        panic!("stopped: {state:?}")
    };
    assert!(
        reason.ends_with("Incorrect API key provided: Bearer [REDACTED]"),
        "{reason}"
    );
    task.abort();

    // The stream repeats it.
    let body = format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"key {TEST_KEY} ok\"}}}}]}}\n\n\
         data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}]}}\n\n\
         data: [DONE]\n\n"
    );
    let (url, task) = http_relay(models_ok(), http("200 OK", "text/event-stream", "", &body)).await;
    let mut c = start(sse_spec(&url));
    c.expect("the response", |k| matches!(k, EventKind::Done(_)))
        .await;
    assert!(
        c.s.seen.iter().any(
            |e| matches!(&e.kind, EventKind::Chunk { text, .. } if text == "key [REDACTED] ok")
        ),
        "{}",
        c.story()
    );
    assert!(redacted_everywhere(&c) >= 1);
    assert_eq!(c.finish().await, SessionState::Closed);
    task.abort();
}

#[tokio::test]
async fn openai_sse_200_that_is_not_an_event_stream_is_a_protocol_error() {
    let post = http("200 OK", "text/plain", "", "{malformed json: <<<chaos>>>");
    let (url, task) = http_relay(models_ok(), post).await;
    let mut c = start(sse_spec(&url));
    let words = "the relay answered 200 with a body that is not an event stream: {malformed json: <<<chaos>>>";
    let failed = c
        .expect("the failed request", |k| {
            matches!(k, EventKind::RequestFailed { .. })
        })
        .await;
    assert_eq!(
        failed.kind,
        EventKind::RequestFailed {
            request: 1,
            kind: ErrorKind::Protocol,
            reason: words.into()
        }
    );
    c.s.collect_for(Duration::from_millis(200)).await;
    assert!(
        c.count(|k| matches!(k, EventKind::Malformed { reason } if reason == words)) >= 1,
        "{}",
        c.story()
    );
    assert_eq!(
        error_messages(&c)[0],
        (ErrorKind::Protocol, words.to_owned())
    );
    assert_eq!(c.count(closed), 0, "no 1006 drop:\n{}", c.story());
    assert_eq!(
        c.count(|k| matches!(k, EventKind::Connected { .. })),
        1,
        "no reconnect:\n{}",
        c.story()
    );
    assert_eq!(c.finish().await, SessionState::Closed);
    task.abort();
}

#[tokio::test]
async fn openai_sse_503_with_retry_after_is_overload_not_a_rate_limit_wait() {
    let post = http(
        "503 Service Unavailable",
        "application/json",
        "Retry-After: 1\r\n",
        r#"{"error":{"message":"overloaded"}}"#,
    );
    let (url, task) = http_relay(models_ok(), post).await;
    let mut c = start(sse_spec(&url));
    c.expect("the error", |k| matches!(k, EventKind::Error { .. }))
        .await;
    c.s.collect_for(Duration::from_millis(100)).await;
    assert_eq!(
        error_messages(&c)[0],
        (
            ErrorKind::Overloaded,
            "POST /v1/chat/completions answered 503: overloaded".to_owned()
        )
    );
    assert_eq!(
        c.count(|k| matches!(k, EventKind::RateLimited { .. })),
        0,
        "{}",
        c.story()
    );
    c.finish().await;
    task.abort();
}

#[tokio::test]
async fn upgrade_503_with_retry_after_is_overload_not_a_rate_limit_wait() {
    let relay = Rogue::start(vec![vec![Act::Respond(rogue::http_error(
        503,
        "Service Unavailable",
        &[("Retry-After", "1".to_owned())],
        "overloaded, try later",
    ))]])
    .await;
    let mut c = start(spec(&relay.url(), chat(), quick(50)));
    c.expect("the backoff", |k| matches!(k, EventKind::BackingOff { .. }))
        .await;
    assert_eq!(
        error_messages(&c),
        vec![(
            ErrorKind::Overloaded,
            "upgrade answered 503: overloaded, try later".to_owned()
        )]
    );
    assert_eq!(
        c.count(|k| matches!(k, EventKind::RateLimited { .. })),
        0,
        "{}",
        c.story()
    );
    c.finish().await;
}

#[tokio::test]
async fn a_dead_peer_fails_the_request_as_a_timeout() {
    let relay = Rogue::start(vec![
        vec![
            Act::Upgrade,
            Act::AwaitText("chat.completion"),
            Act::Sleep(Duration::from_secs(5)),
        ],
        vec![Act::Upgrade, Act::Hold],
    ])
    .await;
    let mut c = start(spec(&relay.url(), probe(10_000), quick(50)));
    let failed = c
        .expect("the failed request", |k| {
            matches!(k, EventKind::RequestFailed { .. })
        })
        .await;
    let EventKind::RequestFailed { kind, reason, .. } = failed.kind else {
        unreachable!()
    };
    assert_eq!(kind, ErrorKind::Timeout, "{reason}");
    assert!(
        reason
            .starts_with("close 1006 (abnormal: no close frame): dead peer: nothing received for"),
        "{reason}"
    );
    c.finish().await;
}

#[tokio::test]
async fn close_1008_counts_one_auth_error() {
    let relay = Rogue::start(vec![vec![
        Act::Upgrade,
        Act::Send(rogue::close_frame(1008, "invalid key")),
        Act::Hold,
    ]])
    .await;
    let mut c = start(spec(&relay.url(), chat(), quick(50)));
    c.expect("the stop", is_end).await;
    assert_eq!(
        error_messages(&c),
        vec![(
            ErrorKind::Auth,
            "close 1008 (policy violation): invalid key".to_owned()
        )]
    );
    c.finish().await;
}
