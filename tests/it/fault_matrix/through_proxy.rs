//! Through the fault-injection proxy: latency, a slow stream, a stalled peer, RST mid-stream,
//! frames sliced into bytes, a slow close, a refused connection.

use std::time::Duration;

use crate::support::proxy::{Latency, Proxy, Slicer, Timeout};
use crate::support::rogue::{self, Act, Rogue};
use crate::support::{chat, fast_timing, probe, sim, spec};
use relaytop_core::session::{Completed, ErrorKind, EventKind, SessionCommand, SessionState};
use relaytop_sim::SimProfile;

use super::case::{
    backing_off, closed, connected, done, error, error_messages, healthy, only_backoff_cause,
    quick, quiet, start, steady,
};

#[tokio::test]
async fn latency_spike_slows_round_trips_without_a_drop() {
    let server = sim(steady(10.0, 4, 1000.0)).await;
    let proxy = Proxy::start(server.addr()).await;
    let mut c = start(spec(&proxy.ws_url("/v1/stream"), probe(100), fast_timing()));
    c.expect("a response", done).await;
    proxy.set(|t| {
        t.downstream.latency = Some(Latency {
            base: Duration::from_millis(300),
            jitter: Duration::from_millis(50),
        })
    });
    let slow = c
        .expect(
            "a slow pong",
            |k| matches!(k, EventKind::Pong { rtt_us } if *rtt_us >= 250_000),
        )
        .await;
    c.expect("a response during the spike", done).await;
    proxy.clear();
    let after = c.s.seen.len();
    c.expect(
        "a fast pong again",
        |k| matches!(k, EventKind::Pong { rtt_us } if *rtt_us < 250_000),
    )
    .await;
    assert!(slow.at_us > 0 && c.s.seen.len() > after);
    // Pings every 200 ms answered 300 ms late: the late ones are reported, nothing is dropped.
    assert!(c.count(|k| matches!(k, EventKind::HeartbeatMissed { .. })) >= 1);
    assert_eq!(c.count(connected), 1, "{}", c.story());
    assert_eq!(c.count(closed), 0, "{}", c.story());
    assert_eq!(c.count(error), 0, "{}", c.story());
    assert_eq!(c.count(backing_off), 0);
    assert_eq!(c.finish().await, SessionState::Closed);
    assert_eq!(proxy.stats().accepted, 1);
    server.stop().await;
}

#[tokio::test]
async fn slow_token_stream_is_not_a_dead_peer() {
    // 8 tokens at 4 per second: 2 s of streaming, longer than dead_after (800 ms), with a
    // token every 250 ms, through a 2 kB/s link. No heartbeats: only the stream shows life.
    let server = sim(steady(100.0, 8, 4.0)).await;
    let proxy = Proxy::start(server.addr()).await;
    proxy.set(|t| t.downstream.bandwidth = Some(2000));
    let mut timing = quiet(fast_timing());
    timing.dead_after = Duration::from_millis(800);
    let mut c = start(spec(&proxy.ws_url("/v1/stream"), probe(100), timing));
    let response = c.expect("a slow response", done).await;
    let EventKind::Done(completed) = response.kind else {
        unreachable!()
    };
    let Completed {
        chunks, total_us, ..
    } = *completed;
    assert_eq!(chunks, 8);
    assert!(total_us >= 1_500_000, "the stream was slow: {total_us} µs");
    assert_eq!(c.count(error), 0, "no dead peer:\n{}", c.story());
    assert_eq!(c.count(closed), 0, "{}", c.story());
    assert_eq!(c.count(connected), 1);
    assert_eq!(c.count(|k| matches!(k, EventKind::RequestFailed { .. })), 0);
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}

#[tokio::test]
async fn stalled_peer_is_found_dead_then_the_session_reconnects() {
    let server = sim(SimProfile::default()).await;
    let proxy = Proxy::start(server.addr()).await;
    let mut timing = quick(400);
    timing.heartbeat = Some(Duration::from_millis(100));
    timing.dead_after = Duration::from_millis(600);
    let mut c = start(spec(&proxy.ws_url("/v1/stream"), chat(), timing));
    c.expect("a connection", connected).await;
    c.expect("a pong", |k| matches!(k, EventKind::Pong { .. }))
        .await;
    // The relay stops sending; the connection stays open.
    proxy.set(|t| t.downstream.timeout = Some(Timeout::default()));
    let dead = c
        .expect("a dead peer", |k| {
            matches!(k, EventKind::Error { kind: ErrorKind::Timeout, message, .. } if message.starts_with("dead peer: nothing received for"))
        })
        .await;
    proxy.clear();
    c.expect("a reconnect", |k| {
        matches!(k, EventKind::Connected { attempt: 2, .. })
    })
    .await;
    assert!(c.count(|k| matches!(k, EventKind::HeartbeatMissed { .. })) >= 1);
    assert_eq!(
        c.count(|k| matches!(k, EventKind::Closed { code: 1006, requested: false, reason } if reason.starts_with("dead peer"))),
        1,
        "{}",
        c.story()
    );
    assert!(only_backoff_cause(&c).starts_with("close 1006 (abnormal: no close frame): dead peer"));
    assert_eq!(c.count(error), 1, "{}", c.story());
    assert_eq!(c.count(connected), 2);
    assert!(dead.at_us > 0);
    assert_eq!(c.finish().await, SessionState::Closed);
    assert_eq!(proxy.stats().accepted, 2);
    server.stop().await;
}

#[tokio::test]
async fn rst_mid_stream_fails_the_response_and_reconnects() {
    let server = sim(steady(20.0, 40, 20.0)).await;
    let proxy = Proxy::start(server.addr()).await;
    // A backoff long enough (seed 7: 255 ms) for the test to lift the toxic before the
    // reconnect, which would otherwise be reset too.
    let mut c = start(spec(&proxy.ws_url("/v1/stream"), probe(100), quick(1500)));
    c.expect("a first token", |k| {
        matches!(k, EventKind::FirstToken { .. })
    })
    .await;
    proxy.set(|t| t.reset_peer = true);
    c.expect("a drop", closed).await;
    proxy.clear();
    c.expect("a reconnect", |k| {
        matches!(k, EventKind::Connected { attempt: 2, .. })
    })
    .await;
    let errors = error_messages(&c);
    assert_eq!(errors.len(), 1, "{}", c.story());
    assert_eq!(errors[0].0, ErrorKind::Network);
    assert!(
        errors[0].1.starts_with("connection lost:") && errors[0].1.contains("reset"),
        "{errors:?}"
    );
    assert_eq!(
        c.count(|k| matches!(
            k,
            EventKind::Closed {
                code: 1006,
                requested: false,
                ..
            }
        )),
        1
    );
    assert_eq!(
        c.count(|k| matches!(
            k,
            EventKind::RequestFailed {
                request: 1,
                kind: ErrorKind::Cut,
                ..
            }
        )),
        1,
        "a reset after the first token cut the response"
    );
    assert!(
        only_backoff_cause(&c)
            .starts_with("close 1006 (abnormal: no close frame): connection lost")
    );
    assert_eq!(c.finish().await, SessionState::Closed);
    assert_eq!(proxy.stats().reset, 1);
    server.stop().await;
}

#[tokio::test]
async fn frames_sliced_into_single_bytes_arrive_whole() {
    let server = sim(steady(10.0, 10, 1000.0)).await;
    let proxy = Proxy::start(server.addr()).await;
    let one_byte = Slicer {
        size: 1,
        delay: Duration::ZERO,
    };
    proxy.set(|t| {
        t.downstream.slicer = Some(one_byte);
        t.upstream.slicer = Some(one_byte);
    });
    let mut c = start(spec(&proxy.ws_url("/v1/stream"), probe(100), fast_timing()));
    let response = c.expect("a response", done).await;
    let EventKind::Done(completed) = response.kind else {
        unreachable!()
    };
    let Completed { chunks, tokens, .. } = *completed;
    assert_eq!((chunks, tokens.output), (10, 10));
    c.expect("a pong", |k| matches!(k, EventKind::Pong { .. }))
        .await;
    assert_eq!(
        c.count(|k| matches!(
            k,
            EventKind::Malformed { .. } | EventKind::UnknownFrame { .. }
        )),
        0
    );
    assert_eq!(c.count(closed), 0, "{}", c.story());
    assert_eq!(c.count(error), 0, "{}", c.story());
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}

#[tokio::test]
async fn slow_close_does_not_hold_the_session_up() {
    // The relay closes with 1011, then its FIN is held back 30 s: the session acts on the
    // close frame at once. The user's own close is not held up either.
    let relay = Rogue::start(vec![
        vec![
            Act::Upgrade,
            Act::Send(rogue::close_frame(1011, "restarting")),
            Act::Hold,
        ],
        healthy(),
    ])
    .await;
    let proxy = Proxy::start(relay.addr()).await;
    proxy.set(|t| t.downstream.slow_close = Some(Duration::from_secs(30)));
    let mut c = start(spec(&proxy.ws_url("/v1/stream"), chat(), quick(50)));
    c.expect("close 1011", |k| {
        matches!(k, EventKind::Closed { code: 1011, .. })
    })
    .await;
    c.expect("a reconnect", |k| {
        matches!(k, EventKind::Connected { attempt: 2, .. })
    })
    .await;
    assert_eq!(
        only_backoff_cause(&c),
        "close 1011 (server error): restarting"
    );
    c.s.handle
        .commands
        .send(SessionCommand::Close)
        .await
        .unwrap();
    c.expect("closed", |k| {
        matches!(k, EventKind::State(SessionState::Closed))
    })
    .await;
    assert_eq!(
        c.count(|k| matches!(
            k,
            EventKind::Closed {
                code: 1000,
                requested: true,
                ..
            }
        )),
        1
    );
    assert_eq!(c.count(closed), 1);
    assert_eq!(c.count(error), 0, "{}", c.story());
    assert_eq!(c.finish().await, SessionState::Closed);
}

#[tokio::test]
async fn connection_refused_backs_off_until_the_relay_is_back() {
    let server = sim(SimProfile::default()).await;
    let proxy = Proxy::start(server.addr()).await;
    proxy.set(|t| t.down = true);
    // Let the accept loop close the port.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c = start(spec(&proxy.ws_url("/v1/stream"), chat(), quick(100)));
    for _ in 0..2 {
        c.expect("a refused connect", |k| {
            matches!(
                k,
                EventKind::Error {
                    kind: ErrorKind::Network,
                    retryable: true,
                    ..
                }
            )
        })
        .await;
    }
    proxy.set(|t| t.down = false);
    let up = c.expect("a connection", connected).await;
    let errors = error_messages(&c);
    assert!(errors.len() >= 2);
    let expected = format!("cannot connect to {}: Connection refused", proxy.addr());
    for (kind, message) in &errors {
        assert_eq!(*kind, ErrorKind::Network);
        assert!(message.starts_with(&expected), "{message}");
    }
    assert_eq!(
        c.count(backing_off),
        errors.len(),
        "one backoff per refusal"
    );
    let EventKind::Connected { attempt, .. } = up.kind else {
        unreachable!()
    };
    assert_eq!(attempt as usize, errors.len() + 1);
    assert_eq!(c.count(connected), 1);
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}
