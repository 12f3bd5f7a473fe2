//! Against a hand-made relay: closes and close codes, refused upgrades, 429 and 503, rate
//! limits, cut and malformed frames, bad UTF-8, oversized frames and messages.

use std::time::Duration;

use crate::support::proxy::Proxy;
use crate::support::rogue::{self, Act, Rogue};
use crate::support::{chat, probe, sim, spec};
use relaytop_core::session::event::close_cause;
use relaytop_core::session::{ErrorKind, EventKind, SessionCommand, SessionState};

use super::case::{
    backing_off, closed, connected, done, error, error_messages, healthy, is_end,
    only_backoff_cause, quick, quiet, start, steady,
};

#[tokio::test]
async fn fin_without_a_close_frame_is_a_1006_drop() {
    let mut partial = rogue::text_frame(r#"{"type":"chunk","content":"half "}"#);
    partial.extend(rogue::text_frame(r#"{"type":"chunk","content":"a reply"}"#));
    let relay = Rogue::start(vec![
        vec![
            Act::Upgrade,
            Act::AwaitText("chat.completion"),
            Act::Send(partial),
            Act::Fin,
        ],
        healthy(),
    ])
    .await;
    let mut c = start(spec(&relay.url(), probe(100), quiet(quick(50))));
    c.expect("the drop", closed).await;
    c.expect("a reconnect", |k| {
        matches!(k, EventKind::Connected { attempt: 2, .. })
    })
    .await;
    assert_eq!(
        c.count(|k| matches!(k, EventKind::Closed { code: 1006, requested: false, reason } if reason == "connection ended without a close frame")),
        1
    );
    assert_eq!(
        c.count(|k| matches!(k, EventKind::RequestFailed { request: 1, kind: ErrorKind::Cut, reason } if reason.starts_with("close 1006"))),
        1,
        "{}",
        c.story()
    );
    assert_eq!(c.count(|k| matches!(k, EventKind::Chunk { .. })), 2);
    assert_eq!(c.count(done), 0);
    assert_eq!(
        only_backoff_cause(&c),
        "close 1006 (abnormal: no close frame): connection ended without a close frame"
    );
    assert_eq!(c.finish().await, SessionState::Closed);
    assert_eq!(relay.connections(), 2);
}

#[tokio::test]
async fn close_codes_1001_1011_1012_1013_and_4xxx_reconnect() {
    for code in [1001u16, 1011, 1012, 1013, 4000] {
        let relay = Rogue::start(vec![
            vec![
                Act::Upgrade,
                Act::Send(rogue::close_frame(code, "bye")),
                Act::Hold,
            ],
            healthy(),
        ])
        .await;
        let mut c = start(spec(&relay.url(), chat(), quick(50)));
        c.expect("the close", closed).await;
        c.expect("a reconnect", |k| {
            matches!(k, EventKind::Connected { attempt: 2, .. })
        })
        .await;
        assert_eq!(
            c.count(|k| matches!(k, EventKind::Closed { code: c, requested: false, reason } if *c == code && reason == "bye")),
            1,
            "close {code}:\n{}",
            c.story()
        );
        assert_eq!(only_backoff_cause(&c), close_cause(code, "bye"));
        assert_eq!(c.count(error), 0, "a close is not an error:\n{}", c.story());
        assert_eq!(c.finish().await, SessionState::Closed);
        assert_eq!(relay.connections(), 2);
    }
    assert_eq!(close_cause(4000, "bye"), "close 4000 (application): bye");
    assert_eq!(close_cause(1013, ""), "close 1013 (try again later)");
}

#[tokio::test]
async fn close_1008_stops_without_a_retry() {
    let relay = Rogue::start(vec![vec![
        Act::Upgrade,
        Act::Send(rogue::close_frame(1008, "invalid key")),
        Act::Hold,
    ]])
    .await;
    let mut c = start(spec(&relay.url(), chat(), quick(50)));
    c.expect("the stop", is_end).await;
    c.s.collect_for(Duration::from_millis(200)).await;
    let state = c.finish().await;
    assert_eq!(
        state,
        SessionState::Stopped {
            reason: "the relay closed with 1008 (policy violation: usually the key): invalid key"
                .into()
        }
    );
    assert_eq!(relay.connections(), 1, "no retry");
}

#[tokio::test]
async fn upgrade_401_and_403_stop_without_a_retry() {
    for (status, reason) in [(401u16, "Unauthorized"), (403, "Forbidden")] {
        let relay = Rogue::start(vec![vec![Act::Respond(rogue::http_error(
            status,
            reason,
            &[],
            "invalid API key",
        ))]])
        .await;
        let mut c = start(spec(&relay.url(), probe(100), quick(50)));
        c.expect("the stop", is_end).await;
        let errors = error_messages(&c);
        assert_eq!(
            errors,
            vec![(
                ErrorKind::Auth,
                format!("upgrade answered {status}: invalid API key")
            )]
        );
        assert_eq!(
            c.count(|k| matches!(
                k,
                EventKind::Error {
                    retryable: false,
                    ..
                }
            )),
            1
        );
        assert_eq!(
            c.count(|k| matches!(k, EventKind::State(SessionState::Connecting { .. }))),
            1
        );
        assert_eq!(c.count(backing_off), 0);
        let state = c.finish().await;
        assert_eq!(
            state,
            SessionState::Stopped {
                reason: format!("upgrade answered {status}: invalid API key")
            }
        );
        assert_eq!(relay.connections(), 1, "no retry after {status}");
    }
}

/// A 429 at the upgrade with `retry_after`, then a healthy relay: the wait it asked for is the
/// one reported and kept.
async fn upgrade_429(retry_after: String, expect_ms: std::ops::RangeInclusive<u64>) {
    let relay = Rogue::start(vec![
        vec![Act::Respond(rogue::http_error(
            429,
            "Too Many Requests",
            &[("Retry-After", retry_after)],
            "too many connections",
        ))],
        healthy(),
    ])
    .await;
    let mut c = start(spec(&relay.url(), chat(), quick(50)));
    let limited = c.expect("the 429", error).await;
    let up = c.expect("a connection after the wait", connected).await;
    let EventKind::Error {
        kind,
        message,
        retryable,
        retry_after_ms,
    } = limited.kind
    else {
        unreachable!()
    };
    assert_eq!(kind, ErrorKind::RateLimited);
    assert_eq!(message, "upgrade answered 429: too many connections");
    assert!(retryable);
    let asked = retry_after_ms.expect("Retry-After read");
    assert!(expect_ms.contains(&asked), "{asked} ms");
    let waits: Vec<(u64, String)> =
        c.s.seen
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::RateLimited { wait_ms, cause } => Some((*wait_ms, cause.clone())),
                _ => None,
            })
            .collect();
    assert_eq!(
        waits,
        vec![(
            asked,
            "upgrade answered 429: too many connections (retry 1 of 5)".to_owned()
        )]
    );
    assert_eq!(
        c.count(|k| matches!(k, EventKind::BackingOff { attempt: 1, max_attempts: 5, delay_ms, .. } if *delay_ms == asked)),
        1,
        "{}",
        c.story()
    );
    assert!(
        up.at_us - limited.at_us >= asked * 1000,
        "the wait was kept"
    );
    assert_eq!(c.count(error), 1);
    assert_eq!(c.finish().await, SessionState::Closed);
    assert_eq!(relay.connections(), 2);
}

#[tokio::test]
async fn upgrade_429_with_retry_after_in_seconds() {
    upgrade_429("1".into(), 1000..=1000).await;
}

#[tokio::test]
async fn upgrade_429_with_retry_after_as_an_http_date() {
    // HTTP dates have whole seconds: 3 s ahead is more than 2 s and at most 3 s from now.
    let when = std::time::SystemTime::now() + Duration::from_secs(3);
    upgrade_429(httpdate::fmt_http_date(when), 1000..=3000).await;
}

#[tokio::test]
async fn upgrade_503_backs_off_and_retries() {
    let unavailable = Act::Respond(rogue::http_error(
        503,
        "Service Unavailable",
        &[],
        "overloaded, try later",
    ));
    let relay = Rogue::start(vec![
        vec![unavailable.clone()],
        vec![unavailable],
        healthy(),
    ])
    .await;
    let mut c = start(spec(&relay.url(), chat(), quick(50)));
    let up = c.expect("a connection", connected).await;
    assert!(matches!(up.kind, EventKind::Connected { attempt: 3, .. }));
    assert_eq!(
        error_messages(&c),
        vec![
            (
                ErrorKind::Overloaded,
                "upgrade answered 503: overloaded, try later".to_owned()
            );
            2
        ]
    );
    assert_eq!(
        c.count(|k| matches!(k, EventKind::BackingOff { cause, .. } if cause == "upgrade answered 503: overloaded, try later")),
        2
    );
    assert_eq!(c.count(|k| matches!(k, EventKind::RateLimited { .. })), 0);
    assert_eq!(c.finish().await, SessionState::Closed);
    assert_eq!(relay.connections(), 3);
}

#[tokio::test]
async fn rate_limited_error_frame_holds_requests_back() {
    let relay = Rogue::start(vec![vec![
        Act::Upgrade,
        Act::AwaitText("chat.completion"),
        Act::Send(rogue::text_frame(
            r#"{"type":"error","code":"rate_limited","details":"slow down","retry_after_ms":700}"#,
        )),
        Act::AwaitText("chat.completion"),
        Act::Send(rogue::response(3)),
        Act::Hold,
    ]])
    .await;
    let mut c = start(spec(&relay.url(), probe(100), quick(50)));
    let limited = c
        .expect("the rate limit", |k| {
            matches!(k, EventKind::RateLimited { .. })
        })
        .await;
    let second = c
        .expect("the second request", |k| {
            matches!(k, EventKind::RequestSent { request: 2, .. })
        })
        .await;
    c.expect("a response", done).await;
    assert_eq!(
        limited.kind,
        EventKind::RateLimited {
            wait_ms: 700,
            cause: "slow down (retry 1 of 5)".into()
        }
    );
    assert!(
        second.at_us - limited.at_us >= 700_000,
        "requests were held back 700 ms"
    );
    assert_eq!(
        c.count(|k| matches!(k, EventKind::RequestFailed { request: 1, kind: ErrorKind::RateLimited, reason } if reason == "slow down")),
        1
    );
    assert_eq!(
        c.count(|k| matches!(
            k,
            EventKind::Error {
                kind: ErrorKind::RateLimited,
                retry_after_ms: Some(700),
                retryable: true,
                ..
            }
        )),
        1
    );
    assert_eq!(
        c.count(closed),
        0,
        "the connection stays up:\n{}",
        c.story()
    );
    assert_eq!(c.count(connected), 1);
    assert_eq!(c.finish().await, SessionState::Closed);
}

#[tokio::test]
async fn a_frame_cut_short_then_closed_is_a_drop_not_a_malformed_frame() {
    let whole = rogue::text_frame(r#"{"type":"chunk","content":"never finished"}"#);
    let relay = Rogue::start(vec![
        vec![
            Act::Upgrade,
            Act::AwaitText("chat.completion"),
            Act::Send(whole[..12].to_vec()),
            Act::Fin,
        ],
        healthy(),
    ])
    .await;
    let mut c = start(spec(&relay.url(), probe(100), quiet(quick(50))));
    c.expect("the drop", closed).await;
    c.expect("a reconnect", |k| {
        matches!(k, EventKind::Connected { attempt: 2, .. })
    })
    .await;
    assert_eq!(
        c.count(|k| matches!(
            k,
            EventKind::Closed {
                code: 1006,
                requested: false,
                ..
            }
        )),
        1,
        "{}",
        c.story()
    );
    assert_eq!(
        c.count(|k| matches!(k, EventKind::RequestFailed { request: 1, .. })),
        1
    );
    assert_eq!(
        c.count(|k| matches!(k, EventKind::Malformed { .. } | EventKind::Chunk { .. })),
        0
    );
    assert!(only_backoff_cause(&c).starts_with("close 1006 (abnormal: no close frame)"));
    assert_eq!(c.finish().await, SessionState::Closed);

    // The same through the proxy (toxiproxy's `limit_data`): the relay's first frame is cut
    // after 5 bytes, then the connection is closed.
    let server = sim(steady(10.0, 3, 1000.0)).await;
    let proxy = Proxy::start(server.addr()).await;
    let mut c = start(spec(
        &proxy.ws_url("/v1/stream"),
        chat(),
        quiet(quick(1500)),
    ));
    c.expect("a connection", connected).await;
    proxy.set(|t| t.downstream.limit_data = Some(5));
    c.s.handle
        .commands
        .send(SessionCommand::Chat {
            text: "hello".into(),
        })
        .await
        .unwrap();
    c.expect("the drop", closed).await;
    proxy.clear();
    // The next connection (a reconnect that raced the toxic's removal would fail its upgrade
    // first, which is no drop).
    c.expect("a reconnect", connected).await;
    assert_eq!(
        c.count(|k| matches!(
            k,
            EventKind::Closed {
                code: 1006,
                requested: false,
                ..
            }
        )),
        1,
        "{}",
        c.story()
    );
    assert_eq!(
        c.count(|k| matches!(k, EventKind::RequestFailed { request: 1, .. })),
        1
    );
    assert_eq!(
        c.count(|k| matches!(k, EventKind::Malformed { .. } | EventKind::Chunk { .. })),
        0
    );
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}

#[tokio::test]
async fn unknown_types_and_non_json_text_are_counted_and_the_stream_completes() {
    let mut frames = rogue::text_frame(r#"{"type":"mystery","x":1}"#);
    frames.extend(rogue::text_frame("not json at all"));
    frames.extend(rogue::response(3));
    let relay = Rogue::start(vec![vec![
        Act::Upgrade,
        Act::AwaitText("chat.completion"),
        Act::Send(frames),
        Act::Hold,
    ]])
    .await;
    let mut c = start(spec(&relay.url(), chat(), quick(50)));
    c.expect("a connection", connected).await;
    c.s.handle
        .commands
        .send(SessionCommand::Chat {
            text: "hello".into(),
        })
        .await
        .unwrap();
    let response = c.expect("a response", done).await;
    assert!(matches!(&response.kind, EventKind::Done(done) if done.chunks == 3));
    assert_eq!(
        c.count(|k| matches!(k, EventKind::UnknownFrame { frame_type } if frame_type == "mystery")),
        1
    );
    assert_eq!(c.count(|k| matches!(k, EventKind::Malformed { .. })), 1);
    assert_eq!(c.count(closed), 0);
    assert_eq!(c.count(error), 0);
    assert_eq!(c.finish().await, SessionState::Closed);
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_is_refused_and_the_session_reconnects() {
    let relay = Rogue::start(vec![
        vec![
            Act::Upgrade,
            Act::Send(rogue::text_bytes(
                b"{\"type\":\"chunk\",\"content\":\"\xff\xfe\"}",
            )),
            Act::Hold,
        ],
        healthy(),
    ])
    .await;
    let mut c = start(spec(&relay.url(), chat(), quick(50)));
    c.expect("the refusal", closed).await;
    c.expect("a reconnect", |k| {
        matches!(k, EventKind::Connected { attempt: 2, .. })
    })
    .await;
    let errors = error_messages(&c);
    assert_eq!(errors.len(), 1, "{}", c.story());
    assert_eq!(errors[0].0, ErrorKind::Protocol);
    assert!(
        errors[0].1.starts_with("text frame is not valid UTF-8"),
        "{errors:?}"
    );
    assert_eq!(
        c.count(|k| matches!(
            k,
            EventKind::Closed {
                code: 1007,
                requested: false,
                ..
            }
        )),
        1
    );
    assert!(
        only_backoff_cause(&c)
            .starts_with("close 1007 (invalid data): text frame is not valid UTF-8")
    );
    assert_eq!(c.finish().await, SessionState::Closed);
}

#[tokio::test]
async fn a_64_mib_frame_is_refused_from_its_header() {
    // Only the header and 1 KiB follow: a client that tried to buffer the frame would wait
    // for the other 64 MiB instead of refusing it.
    let mut big = rogue::header(true, 0x1, 64 << 20);
    big.extend(vec![b'a'; 1024]);
    let relay = Rogue::start(vec![
        vec![Act::Upgrade, Act::Send(big), Act::Hold],
        healthy(),
    ])
    .await;
    let mut c = start(spec(&relay.url(), chat(), quick(50)));
    c.expect("the refusal", closed).await;
    c.expect("a reconnect", |k| {
        matches!(k, EventKind::Connected { attempt: 2, .. })
    })
    .await;
    let errors = error_messages(&c);
    assert_eq!(errors.len(), 1, "{}", c.story());
    assert_eq!(errors[0].0, ErrorKind::Protocol);
    assert!(
        errors[0]
            .1
            .starts_with("refused a message over the size limit")
            && errors[0].1.contains("67108864"),
        "{errors:?}"
    );
    assert_eq!(
        c.count(|k| matches!(
            k,
            EventKind::Closed {
                code: 1009,
                requested: false,
                ..
            }
        )),
        1
    );
    assert!(only_backoff_cause(&c).starts_with("close 1009 (message too big)"));
    assert_eq!(c.finish().await, SessionState::Closed);
}

#[tokio::test]
async fn a_message_over_16_mib_in_fragments_is_refused() {
    // 17 fragments of 1 MiB: every frame is under the frame limit, the message is not.
    let piece = vec![b'a'; 1 << 20];
    let mut frames = rogue::frame(false, 0x1, &piece);
    for i in 1..17 {
        frames.extend(rogue::frame(i == 16, 0x0, &piece));
    }
    let relay = Rogue::start(vec![
        vec![Act::Upgrade, Act::Send(frames), Act::Hold],
        healthy(),
    ])
    .await;
    let mut c = start(spec(&relay.url(), chat(), quick(50)));
    c.expect("the refusal", closed).await;
    c.expect("a reconnect", |k| {
        matches!(k, EventKind::Connected { attempt: 2, .. })
    })
    .await;
    let errors = error_messages(&c);
    assert_eq!(errors.len(), 1, "{}", c.story());
    assert!(
        errors[0]
            .1
            .starts_with("refused a message over the size limit"),
        "{errors:?}"
    );
    assert_eq!(
        c.count(|k| matches!(k, EventKind::Closed { code: 1009, .. })),
        1
    );
    assert_eq!(c.finish().await, SessionState::Closed);
}
