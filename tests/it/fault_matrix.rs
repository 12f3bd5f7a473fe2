//! The fault matrix of docs/RELIABILITY.md: one test per fault, against the simulator, the
//! fault-injection proxy (tests/support/proxy.rs) or a hand-made relay (tests/support/rogue.rs)
//! for what the simulator cannot do. Every row asserts that the session task did not panic,
//! the state it ends in, concrete event counts, what the user is told (the error, close,
//! backoff or stop text), and that the session's recording replays to exactly the events the
//! live session reported.
//!
//! Loopback only; names resolve through an injected resolver. Every wait is bounded.

use crate::support;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use relaytop_core::config::secret::Secret;
use relaytop_core::record::{RecordOptions, Recorder, Replay, RunMeta};
use relaytop_core::session::connect::{Resolver, ResolverHandle};
use relaytop_core::session::event::close_cause;
use relaytop_core::session::{
    self, BackoffPolicy, ErrorKind, EventKind, RunClock, SessionCommand, SessionEvent, SessionSpec,
    SessionState, Timing,
};
use relaytop_sim::SimProfile;
use support::proxy::{Latency, Proxy, Slicer, Timeout};
use support::rogue::{self, Act, Rogue};
use support::*;

const LONG: Duration = Duration::from_secs(10);

/// A session under test, recorded to a temporary directory.
struct Case {
    s: Watched,
    recorder: Recorder,
    _root: tempfile::TempDir,
}

fn start(mut spec: SessionSpec) -> Case {
    let root = tempfile::tempdir().expect("temp dir");
    let clock = RunClock::new();
    let meta = RunMeta {
        started_at: chrono::Utc::now(),
        source: "fault matrix".into(),
        pricing: Default::default(),
        secrets: vec![Secret::new(TEST_KEY)],
    };
    let recorder =
        Recorder::start(&RecordOptions::new(root.path()), meta, clock).expect("recorder starts");
    recorder
        .attach(&mut spec, Some("RELAYTOP_TEST_KEY"))
        .expect("session file");
    let (tx, rx) = relaytop_core::session::stream::channel(4096);
    let handle = session::spawn(spec, clock, tx);
    Case {
        s: Watched {
            handle,
            rx,
            seen: Vec::new(),
            clock,
        },
        recorder,
        _root: root,
    }
}

fn is_end(k: &EventKind) -> bool {
    matches!(
        k,
        EventKind::State(SessionState::Stopped { .. } | SessionState::Closed)
    )
}

impl Case {
    /// Waits for an event matching `pred`; fails the test with the story if none comes.
    async fn expect(&mut self, what: &str, pred: impl Fn(&EventKind) -> bool) -> SessionEvent {
        match self.s.wait_for(LONG, pred).await {
            Some(event) => event,
            None => panic!("no {what}:\n{}", self.s.story()),
        }
    }

    fn count(&self, pred: impl Fn(&EventKind) -> bool) -> usize {
        self.s.count(pred)
    }

    fn story(&self) -> String {
        self.s.story()
    }

    /// Ends the session (closing it unless it ended itself), checks that its task did not
    /// panic, and that its recording replays to exactly the events it reported. Returns the
    /// state it ended in.
    async fn finish(mut self) -> SessionState {
        if !self.s.seen.iter().any(|e| is_end(&e.kind)) {
            let _ = self.s.handle.commands.send(SessionCommand::Close).await;
            self.expect("end of the session", is_end).await;
        }
        let Case {
            s, recorder, _root, ..
        } = self;
        let Watched {
            handle,
            mut rx,
            mut seen,
            clock,
        } = s;
        tokio::time::timeout(LONG, handle.task)
            .await
            .expect("the session task ends")
            .expect("the session task did not panic");
        while let Ok(event) = rx.try_recv() {
            seen.push(event);
        }
        let dir = recorder
            .finish("test", clock.now())
            .expect("recording ends");
        let mut replay = Replay::open(std::slice::from_ref(&dir)).expect("the recording opens");
        let replayed: Vec<SessionEvent> = std::iter::from_fn(|| replay.next_event()).collect();
        assert!(
            replay.read_stats().warnings().is_empty(),
            "{:?}",
            replay.read_stats()
        );
        assert_eq!(replayed.len(), seen.len(), "events replayed");
        for (i, (live, again)) in seen.iter().zip(&replayed).enumerate() {
            assert_eq!(live, again, "event {i} replays as it happened");
        }
        for entry in std::fs::read_dir(&dir).expect("run dir") {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert!(!text.contains(TEST_KEY), "the key is not in the recording");
        }
        seen.iter()
            .rev()
            .find_map(|e| match &e.kind {
                EventKind::State(state) => Some(state.clone()),
                _ => None,
            })
            .expect("a state")
    }
}

fn quick(backoff_ms: u64) -> Timing {
    Timing {
        backoff: BackoffPolicy {
            base: Duration::from_millis(backoff_ms),
            cap: Duration::from_millis(backoff_ms),
            max_attempts: 10,
        },
        ..fast_timing()
    }
}

fn quiet(mut timing: Timing) -> Timing {
    timing.heartbeat = None;
    timing.ws_ping = false;
    timing
}

fn steady(ttft_ms: f64, tokens: u32, tokens_per_second: f64) -> SimProfile {
    SimProfile {
        ttft_p50_ms: ttft_ms,
        ttft_p99_ms: ttft_ms,
        tokens_per_response: tokens,
        tokens_per_second,
        ..SimProfile::default()
    }
}

fn closed(k: &EventKind) -> bool {
    matches!(
        k,
        EventKind::Closed {
            requested: false,
            ..
        }
    )
}

fn connected(k: &EventKind) -> bool {
    matches!(k, EventKind::Connected { .. })
}

fn backing_off(k: &EventKind) -> bool {
    matches!(k, EventKind::BackingOff { .. })
}

fn error(k: &EventKind) -> bool {
    matches!(k, EventKind::Error { .. })
}

fn done(k: &EventKind) -> bool {
    matches!(k, EventKind::Done { .. })
}

/// The cause of the one backoff so far.
fn only_backoff_cause(case: &Case) -> String {
    let causes: Vec<String> = case
        .s
        .seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::BackingOff { cause, .. } => Some(cause.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(causes.len(), 1, "one backoff:\n{}", case.story());
    causes[0].clone()
}

/// The messages of the errors so far.
fn error_messages(case: &Case) -> Vec<(ErrorKind, String)> {
    case.s
        .seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Error { kind, message, .. } => Some((*kind, message.clone())),
            _ => None,
        })
        .collect()
}

/// A relay that upgrades and then only answers pings.
fn healthy() -> Vec<Act> {
    vec![Act::Upgrade, Act::Hold]
}

// ---------------------------------------------------------------------------------------------
// Through the proxy

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
    let EventKind::Done {
        chunks, total_us, ..
    } = response.kind
    else {
        unreachable!()
    };
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
                kind: ErrorKind::Network,
                ..
            }
        )),
        1
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
    let EventKind::Done { chunks, tokens, .. } = response.kind else {
        unreachable!()
    };
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

// ---------------------------------------------------------------------------------------------
// Against the simulator

#[tokio::test]
async fn idle_cut_off_drops_a_quiet_connection_and_spares_a_beating_one() {
    let server = sim(SimProfile {
        idle_cutoff_ms: Some(400),
        ..SimProfile::default()
    })
    .await;
    let mut c = start(spec(&server.url(), chat(), quiet(quick(50))));
    c.expect("the cut-off", closed).await;
    c.expect("a reconnect", |k| {
        matches!(k, EventKind::Connected { attempt: 2, .. })
    })
    .await;
    assert_eq!(
        c.count(|k| matches!(k, EventKind::Closed { code: 1006, requested: false, reason } if reason == "connection ended without a close frame")),
        1,
        "{}",
        c.story()
    );
    assert_eq!(
        only_backoff_cause(&c),
        "close 1006 (abnormal: no close frame): connection ended without a close frame"
    );
    assert_eq!(c.finish().await, SessionState::Closed);

    let mut beating = fast_timing();
    beating.heartbeat = Some(Duration::from_millis(100));
    let mut c = start(spec(&server.url(), chat(), beating));
    c.s.collect_for(Duration::from_millis(1200)).await;
    assert_eq!(
        c.count(closed),
        0,
        "heartbeats keep it open:\n{}",
        c.story()
    );
    assert!(c.count(|k| matches!(k, EventKind::Pong { .. })) >= 5);
    assert_eq!(c.count(connected), 1);
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Against a hand-made relay

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
        c.count(|k| matches!(k, EventKind::RequestFailed { request: 1, kind: ErrorKind::Network, reason } if reason.starts_with("close 1006"))),
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
    assert!(matches!(response.kind, EventKind::Done { chunks: 3, .. }));
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

// ---------------------------------------------------------------------------------------------
// Names

/// Resolves `relay.test` to `to` and fails every other name, counting the lookups; nothing
/// reaches a real resolver.
fn test_resolver(to: std::net::SocketAddr, lookups: Arc<AtomicU64>) -> ResolverHandle {
    let resolver: Resolver = Arc::new(move |host, port| {
        lookups.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            if host == "relay.test" {
                Ok(vec![std::net::SocketAddr::new(to.ip(), port)])
            } else {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no such host: {host}"),
                ))
            }
        })
    });
    ResolverHandle(resolver)
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_named_retried_then_given_up() {
    let lookups = Arc::new(AtomicU64::new(0));
    let mut timing = quick(20);
    timing.backoff.max_attempts = 3;
    let mut s = spec("ws://relay.invalid/v1/stream", chat(), timing);
    s.resolver = Some(test_resolver(([127, 0, 0, 1], 9).into(), lookups.clone()));
    let mut c = start(s);
    c.expect("the stop", is_end).await;
    let message = "cannot resolve relay.invalid: no such host: relay.invalid";
    assert_eq!(
        error_messages(&c),
        vec![(ErrorKind::Network, message.to_owned()); 4]
    );
    assert_eq!(c.count(backing_off), 3);
    assert_eq!(lookups.load(Ordering::Relaxed), 4);
    assert_eq!(c.count(connected), 0);
    assert_eq!(
        c.finish().await,
        SessionState::Stopped {
            reason: format!("gave up after 3 retries: {message}")
        }
    );
}

#[tokio::test]
async fn a_resolved_name_connects_through_the_injected_resolver() {
    let server = sim(SimProfile::default()).await;
    let lookups = Arc::new(AtomicU64::new(0));
    let url = format!("ws://relay.test:{}/v1/stream", server.addr().port());
    let mut s = spec(&url, chat(), fast_timing());
    s.resolver = Some(test_resolver(server.addr(), lookups.clone()));
    let mut c = start(s);
    c.expect("a connection", connected).await;
    c.expect("a pong", |k| matches!(k, EventKind::Pong { .. }))
        .await;
    assert_eq!(lookups.load(Ordering::Relaxed), 1);
    assert_eq!(c.count(error), 0);
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Absurd numbers from a relay

/// The waits the session reported (`RateLimited`).
fn waits(case: &Case) -> Vec<u64> {
    case.s
        .seen
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RateLimited { wait_ms, .. } => Some(*wait_ms),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_absurd_retry_after_at_the_upgrade_is_capped_not_a_panic() {
    let cap_ms = relaytop_core::session::connect::MAX_RETRY_AFTER.as_millis() as u64;
    for (name, value) in [
        ("Retry-After", "18446744073709551615"),
        ("Retry-After", "1e300"),
        ("retry-after-ms", "1e300"),
    ] {
        let relay = Rogue::start(vec![vec![Act::Respond(rogue::http_error(
            429,
            "Too Many Requests",
            &[(name, value.to_owned())],
            "slow down",
        ))]])
        .await;
        let mut c = start(spec(&relay.url(), chat(), quick(50)));
        c.expect("the wait", |k| matches!(k, EventKind::BackingOff { .. }))
            .await;
        assert_eq!(waits(&c), vec![cap_ms], "{name}: {value}:\n{}", c.story());
        assert_eq!(
            c.count(|k| matches!(k, EventKind::Error { kind: ErrorKind::RateLimited, retry_after_ms: Some(ms), .. } if *ms == cap_ms)),
            1
        );
        assert_eq!(c.finish().await, SessionState::Closed, "{name}: {value}");
        assert_eq!(relay.connections(), 1);
    }
}

#[tokio::test]
async fn an_absurd_retry_after_ms_in_an_error_frame_is_capped_not_a_panic() {
    let cap_ms = relaytop_core::session::connect::MAX_RETRY_AFTER.as_millis() as u64;
    let relay = Rogue::start(vec![vec![
        Act::Upgrade,
        Act::AwaitText("chat.completion"),
        Act::Send(rogue::text_frame(
            r#"{"type":"error","code":"rate_limited","details":"slow down","retry_after_ms":18446744073709551615}"#,
        )),
        Act::Hold,
    ]])
    .await;
    let mut c = start(spec(&relay.url(), probe(100), quick(50)));
    c.expect("the wait", |k| matches!(k, EventKind::RateLimited { .. }))
        .await;
    c.s.collect_for(Duration::from_millis(300)).await;
    assert_eq!(waits(&c), vec![cap_ms], "{}", c.story());
    assert_eq!(
        c.count(|k| matches!(k, EventKind::RequestSent { .. })),
        1,
        "no request while held back"
    );
    assert_eq!(c.count(closed), 0);
    assert_eq!(c.finish().await, SessionState::Closed);
}

// ---------------------------------------------------------------------------------------------
// Upgrades that go wrong in other ways

#[tokio::test]
async fn a_stalled_upgrade_times_out_and_is_retried() {
    let server = sim(SimProfile::default()).await;
    let proxy = Proxy::start(server.addr()).await;
    // TCP connects; the upgrade's answer never comes.
    proxy.set(|t| t.downstream.timeout = Some(Timeout::default()));
    let mut timing = quick(50);
    timing.handshake_timeout = Duration::from_millis(300);
    let mut c = start(spec(&proxy.ws_url("/v1/stream"), chat(), timing));
    c.expect("a timeout", error).await;
    proxy.clear();
    c.expect("a connection", connected).await;
    let errors = error_messages(&c);
    assert!(!errors.is_empty());
    for (kind, message) in &errors {
        assert_eq!(*kind, ErrorKind::Timeout);
        assert_eq!(message, "no answer to the upgrade within 300ms");
    }
    assert_eq!(c.count(backing_off), errors.len());
    assert_eq!(c.count(connected), 1);
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}

#[tokio::test]
async fn a_server_that_does_not_upgrade_stops_the_session_with_a_hint() {
    for (head, status) in [("HTTP/1.1 200 OK", 200u16), ("HTTP/1.1 404 Not Found", 404)] {
        let relay = Rogue::start(vec![vec![Act::Respond(format!(
            "{head}\r\nContent-Type: text/html\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        ))]])
        .await;
        let mut c = start(spec(&relay.url(), chat(), quick(50)));
        c.expect("the stop", is_end).await;
        let errors = error_messages(&c);
        assert_eq!(errors.len(), 1, "{}", c.story());
        let (kind, message) = &errors[0];
        assert_eq!(*kind, ErrorKind::InvalidRequest);
        assert!(
            message.starts_with(&format!("upgrade answered {status}: hello"))
                && message.contains("not a WebSocket endpoint"),
            "{message}"
        );
        assert_eq!(c.count(backing_off), 0);
        assert!(matches!(c.finish().await, SessionState::Stopped { .. }));
        assert_eq!(relay.connections(), 1);
    }
}

#[tokio::test]
async fn a_server_that_does_not_speak_http_is_retried_then_given_up() {
    let relay = Rogue::start(vec![vec![Act::Respond("SSH-2.0-OpenSSH_9.6\r\n".into())]]).await;
    let mut timing = quick(20);
    timing.backoff.max_attempts = 2;
    let mut c = start(spec(&relay.url(), chat(), timing));
    c.expect("the stop", is_end).await;
    let errors = error_messages(&c);
    assert_eq!(errors.len(), 3, "{}", c.story());
    for (kind, message) in &errors {
        assert_eq!(*kind, ErrorKind::Network);
        assert!(message.starts_with("handshake failed:"), "{message}");
    }
    let state = c.finish().await;
    let SessionState::Stopped { reason } = state else {
        panic!("{state:?}")
    };
    assert!(
        reason.starts_with("gave up after 2 retries: handshake failed:"),
        "{reason}"
    );
    assert_eq!(relay.connections(), 3);
}

// ---------------------------------------------------------------------------------------------
// The other transports through the proxy

#[tokio::test]
async fn rst_mid_stream_on_openai_sse_and_realtime_is_a_drop_then_a_reconnect() {
    use relaytop_core::session::Protocol;
    for protocol in [Protocol::OpenaiSse, Protocol::OpenaiRealtime] {
        let server = sim(steady(20.0, 40, 20.0)).await;
        let proxy = Proxy::start(server.addr()).await;
        let (url, model) = match protocol {
            Protocol::OpenaiSse => (format!("http://{}/v1", proxy.addr()), "gpt-4o-mini"),
            _ => (proxy.ws_url("/v1/realtime"), "gpt-realtime"),
        };
        let mut s = spec(&url, probe(100), quick(1500));
        s.info.protocol = protocol;
        s.info.model = model.into();
        let mut c = start(s);
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
            "{protocol:?}:\n{}",
            c.story()
        );
        assert_eq!(
            c.count(|k| matches!(k, EventKind::RequestFailed { request: 1, .. })),
            1,
            "{protocol:?}:\n{}",
            c.story()
        );
        assert_eq!(c.count(backing_off), 1, "{protocol:?}:\n{}", c.story());
        assert_eq!(c.finish().await, SessionState::Closed, "{protocol:?}");
        server.stop().await;
    }
}

#[tokio::test]
async fn openai_sse_resolves_names_through_the_injected_resolver() {
    let server = sim(steady(10.0, 3, 1000.0)).await;
    let lookups = Arc::new(AtomicU64::new(0));
    let url = format!("http://relay.test:{}/v1", server.addr().port());
    let mut s = spec(&url, probe(100), fast_timing());
    s.info.protocol = relaytop_core::session::Protocol::OpenaiSse;
    s.info.model = "gpt-4o-mini".into();
    s.resolver = Some(test_resolver(server.addr(), lookups.clone()));
    let mut c = start(s);
    c.expect("a response", done).await;
    assert!(lookups.load(Ordering::Relaxed) >= 1);
    assert_eq!(c.count(error), 0, "{}", c.story());
    assert_eq!(c.finish().await, SessionState::Closed);
    server.stop().await;
}
