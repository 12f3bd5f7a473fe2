//! The session engine against the embedded simulator on 127.0.0.1: streaming, heartbeats,
//! drops and reconnects, dead peers, auth failures, rate limits, malformed frames, close
//! codes and idle cut-offs. Every wait is bounded; nothing here sleeps to check timing.

use crate::support;

use std::time::Duration;

use relaytop_core::session::{Completed, ErrorKind, EventKind, SessionCommand, SessionState};
use relaytop_sim::{DropMode, SimProfile, UpgradeRejection};
use support::*;

const LONG: Duration = Duration::from_secs(10);

fn steady(ttft_ms: f64, tokens: u32) -> SimProfile {
    SimProfile {
        ttft_p50_ms: ttft_ms,
        ttft_p99_ms: ttft_ms,
        tokens_per_response: tokens,
        tokens_per_second: 1000.0,
        ..SimProfile::default()
    }
}

#[tokio::test]
async fn a_full_stream_measures_time_to_first_token() {
    let server = sim(steady(120.0, 6)).await;
    let mut s = watch(spec(&server.url(), probe(100), fast_timing()));
    let done = s
        .wait_for(LONG, |k| matches!(k, EventKind::Done(_)))
        .await
        .unwrap_or_else(|| panic!("no response completed:\n{}", s.story()));
    let EventKind::Done(completed) = done.kind else {
        unreachable!()
    };
    let Completed {
        ttft_us,
        total_us,
        tokens,
        chunks,
        finish_reason,
        ..
    } = *completed;
    let ttft_ms = ttft_us.expect("a first token") as f64 / 1000.0;
    assert!(
        (120.0..400.0).contains(&ttft_ms),
        "time to first token {ttft_ms} ms for a simulated 120 ms"
    );
    assert!(total_us >= ttft_us.unwrap());
    assert_eq!(chunks, 6);
    assert_eq!(tokens.output, 6);
    assert!(!tokens.estimated, "the simulator sends usage");
    assert!(tokens.input > 0);
    assert_eq!(finish_reason.as_deref(), Some("stop"));
    let first_tokens = s.count(|k| matches!(k, EventKind::FirstToken { request: 1, .. }));
    assert_eq!(first_tokens, 1);
    server.stop().await;
}

#[tokio::test]
async fn heartbeat_round_trips_are_measured() {
    let server = sim(SimProfile::default()).await;
    let mut s = watch(spec(&server.url(), chat(), fast_timing()));
    let pong = s
        .wait_for(LONG, |k| matches!(k, EventKind::Pong { .. }))
        .await
        .unwrap_or_else(|| panic!("no pong:\n{}", s.story()));
    let EventKind::Pong { rtt_us } = pong.kind else {
        unreachable!()
    };
    assert!(rtt_us < 1_000_000, "loopback round trip {rtt_us} µs");
    assert!(server.stats().pings_answered >= 1);
    server.stop().await;
}

#[tokio::test]
async fn a_relay_killed_mid_stream_is_a_drop_then_a_reconnect() {
    // Slow stream: 40 tokens at 20 tokens/s leave time to kill the relay mid-response.
    let slow = SimProfile {
        tokens_per_second: 20.0,
        tokens_per_response: 40,
        ..steady(30.0, 40)
    };
    let server = sim(slow).await;
    let addr = server.addr();
    let mut s = watch(spec(&server.url(), probe(100), fast_timing()));
    s.wait_for(LONG, |k| matches!(k, EventKind::FirstToken { .. }))
        .await
        .unwrap_or_else(|| panic!("no first token:\n{}", s.story()));
    server.stop().await;

    s.wait_for(LONG, |k| {
        matches!(
            k,
            EventKind::Closed {
                requested: false,
                ..
            }
        )
    })
    .await
    .unwrap_or_else(|| panic!("no drop:\n{}", s.story()));
    assert_eq!(
        s.count(|k| matches!(k, EventKind::RequestFailed { .. })),
        1,
        "the response under way failed:\n{}",
        s.story()
    );
    s.wait_for(LONG, |k| matches!(k, EventKind::BackingOff { .. }))
        .await
        .unwrap_or_else(|| panic!("no backoff:\n{}", s.story()));

    // The relay comes back on the same address; the session reconnects and completes.
    let back = relaytop_sim::SimServer::start(addr, steady(30.0, 5))
        .await
        .expect("restart on the same port");
    s.wait_for(LONG, |k| matches!(k, EventKind::Connected { .. }))
        .await
        .unwrap_or_else(|| panic!("no reconnect:\n{}", s.story()));
    s.wait_for(LONG, |k| matches!(k, EventKind::Done(_)))
        .await
        .unwrap_or_else(|| panic!("no response after reconnect:\n{}", s.story()));
    assert!(s.count(|k| matches!(k, EventKind::Connected { .. })) >= 2);
    back.stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_answering_is_found_dead() {
    let half_open = SimProfile {
        answer_pings: false,
        ..SimProfile::default()
    };
    let server = sim(half_open).await;
    let mut timing = fast_timing();
    timing.heartbeat = Some(Duration::from_millis(100));
    timing.dead_after = Duration::from_millis(600);
    let mut s = watch(spec(&server.url(), chat(), timing));
    let connected = s
        .wait_for(LONG, |k| matches!(k, EventKind::Connected { .. }))
        .await
        .expect("connects");
    let dead = s
        .wait_for(LONG, |k| {
            matches!(k, EventKind::Error { kind: ErrorKind::Timeout, message, .. } if message.starts_with("dead peer"))
        })
        .await
        .unwrap_or_else(|| panic!("never found dead:\n{}", s.story()));
    let after = dead.at().saturating_sub(connected.at());
    assert!(
        after >= Duration::from_millis(600) && after < Duration::from_secs(3),
        "found dead {after:?} after connecting, with dead_after 600 ms"
    );
    assert!(s.count(|k| matches!(k, EventKind::HeartbeatMissed { .. })) >= 1);
    s.wait_for(LONG, |k| matches!(k, EventKind::BackingOff { .. }))
        .await
        .unwrap_or_else(|| panic!("no reconnect after a dead peer:\n{}", s.story()));
    server.stop().await;
}

#[tokio::test]
async fn a_bad_key_stops_after_exactly_one_attempt() {
    let strict = SimProfile {
        accepted_keys: Some(vec!["hs_live_someotherkey00000".into()]),
        ..SimProfile::default()
    };
    let server = sim(strict).await;
    let mut s = watch(spec(&server.url(), probe(100), fast_timing()));
    let stopped = s
        .wait_for(LONG, |k| {
            matches!(k, EventKind::State(SessionState::Stopped { .. }))
        })
        .await
        .unwrap_or_else(|| panic!("never stopped:\n{}", s.story()));
    let EventKind::State(SessionState::Stopped { reason }) = stopped.kind else {
        unreachable!()
    };
    assert!(reason.contains("401"), "reason says why: {reason}");
    assert_eq!(
        s.count(|k| matches!(k, EventKind::State(SessionState::Connecting { .. }))),
        1,
        "exactly one attempt:\n{}",
        s.story()
    );
    assert_eq!(
        s.count(|k| matches!(
            k,
            EventKind::Error {
                kind: ErrorKind::Auth,
                retryable: false,
                ..
            }
        )),
        1
    );
    assert_eq!(s.count(|k| matches!(k, EventKind::BackingOff { .. })), 0);
    assert_eq!(server.stats().upgrades_rejected, 1);
    server.stop().await;
}

async fn retry_after_is_honoured(header: String, at_least: Duration) {
    let limited = SimProfile {
        reject_upgrades: Some(UpgradeRejection {
            first: Some(1),
            status: 429,
            retry_after: Some(header),
            message: None,
        }),
        ..SimProfile::default()
    };
    let server = sim(limited).await;
    let mut s = watch(spec(&server.url(), chat(), fast_timing()));
    let limited = s
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
    let connected = s
        .wait_for(LONG, |k| matches!(k, EventKind::Connected { .. }))
        .await
        .unwrap_or_else(|| panic!("no connection after the wait:\n{}", s.story()));
    let waited = connected.at().saturating_sub(limited.at());
    assert!(
        waited >= at_least,
        "waited {waited:?}, Retry-After asked for {at_least:?}:\n{}",
        s.story()
    );
    assert!(s.count(|k| matches!(k, EventKind::RateLimited { .. })) >= 1);
    server.stop().await;
}

#[tokio::test]
async fn retry_after_in_seconds_is_honoured() {
    retry_after_is_honoured("1".into(), Duration::from_secs(1)).await;
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    // HTTP dates have whole seconds: 3 s ahead is at least 2 s from now.
    let when = std::time::SystemTime::now() + Duration::from_secs(3);
    retry_after_is_honoured(httpdate::fmt_http_date(when), Duration::from_secs(2)).await;
}

#[tokio::test]
async fn malformed_frames_are_counted_and_the_stream_completes() {
    let noisy = SimProfile {
        malformed_rate: 0.5,
        ..steady(20.0, 20)
    };
    let server = sim(noisy).await;
    let mut s = watch(spec(&server.url(), probe(100), fast_timing()));
    let done = s
        .wait_for(LONG, |k| matches!(k, EventKind::Done(_)))
        .await
        .unwrap_or_else(|| panic!("the stream did not complete:\n{}", s.story()));
    let EventKind::Done(completed) = done.kind else {
        unreachable!()
    };
    let Completed { chunks, .. } = *completed;
    assert_eq!(chunks, 20, "every real chunk arrived");
    let bad = s.count(|k| {
        matches!(
            k,
            EventKind::Malformed { .. } | EventKind::UnknownFrame { .. }
        )
    });
    assert!(bad > 0, "malformed frames were counted:\n{}", s.story());
    server.stop().await;
}

#[tokio::test]
async fn close_codes_lead_to_a_reconnect() {
    for code in [1001u16, 1011, 1012, 1013] {
        let closing = SimProfile {
            drop_rate: 1.0,
            drop_mode: DropMode::Close(code),
            ..steady(10.0, 10)
        };
        let server = sim(closing).await;
        let mut s = watch(spec(&server.url(), probe(50), fast_timing()));
        s.wait_for(
            LONG,
            |k| matches!(k, EventKind::Closed { code: c, requested: false, .. } if *c == code),
        )
        .await
        .unwrap_or_else(|| panic!("no close {code}:\n{}", s.story()));
        s.wait_for(
            LONG,
            |k| matches!(k, EventKind::Connected { attempt, .. } if *attempt >= 2),
        )
        .await
        .unwrap_or_else(|| panic!("no reconnect after close {code}:\n{}", s.story()));
        let _ = s.handle.commands.send(SessionCommand::Close).await;
        server.stop().await;
    }
}

#[tokio::test]
async fn idle_cut_off_drops_a_stream_without_heartbeats_only() {
    let proxy_like = SimProfile {
        idle_cutoff_ms: Some(400),
        ..SimProfile::default()
    };
    let server = sim(proxy_like).await;

    let mut quiet = fast_timing();
    quiet.heartbeat = None;
    quiet.ws_ping = false;
    let mut s = watch(spec(&server.url(), chat(), quiet));
    s.wait_for(LONG, |k| {
        matches!(
            k,
            EventKind::Closed {
                requested: false,
                ..
            }
        )
    })
    .await
    .unwrap_or_else(|| panic!("the idle cut-off never dropped it:\n{}", s.story()));

    let mut beating = fast_timing();
    beating.heartbeat = Some(Duration::from_millis(100));
    let mut s = watch(spec(&server.url(), chat(), beating));
    s.collect_for(Duration::from_millis(1500)).await;
    assert_eq!(
        s.count(|k| matches!(k, EventKind::Closed { .. })),
        0,
        "heartbeats keep it open:\n{}",
        s.story()
    );
    assert!(s.count(|k| matches!(k, EventKind::Pong { .. })) >= 5);
    server.stop().await;
}

#[tokio::test]
async fn an_asked_for_close_never_reconnects() {
    let server = sim(SimProfile::default()).await;
    let mut s = watch(spec(&server.url(), chat(), fast_timing()));
    s.wait_for(LONG, |k| matches!(k, EventKind::Connected { .. }))
        .await
        .expect("connects");
    s.handle
        .commands
        .send(SessionCommand::Close)
        .await
        .expect("session takes commands");
    s.wait_for(LONG, |k| {
        matches!(k, EventKind::State(SessionState::Closed))
    })
    .await
    .unwrap_or_else(|| panic!("not closed:\n{}", s.story()));
    assert_eq!(
        s.count(|k| matches!(
            k,
            EventKind::Closed {
                code: 1000,
                requested: true,
                ..
            }
        )),
        1
    );
    s.collect_for(Duration::from_millis(300)).await;
    assert_eq!(s.count(|k| matches!(k, EventKind::BackingOff { .. })), 0);
    server.stop().await;
}

#[tokio::test]
async fn chat_history_survives_a_reconnect() {
    let server = sim(steady(10.0, 3)).await;
    let mut s = watch(spec(&server.url(), chat(), fast_timing()));
    s.wait_for(LONG, |k| matches!(k, EventKind::Connected { .. }))
        .await
        .expect("connects");
    let send = |text: &str| SessionCommand::Chat { text: text.into() };
    s.handle.commands.send(send("first")).await.unwrap();
    s.wait_for(LONG, |k| matches!(k, EventKind::Done(_)))
        .await
        .expect("first reply");
    s.handle
        .commands
        .send(SessionCommand::ReconnectNow)
        .await
        .unwrap();
    s.wait_for(LONG, |k| {
        matches!(k, EventKind::Connected { attempt: 1, .. })
    })
    .await
    .expect("reconnects");
    s.handle.commands.send(send("second")).await.unwrap();
    let sent = s
        .wait_for(LONG, |k| {
            matches!(k, EventKind::RequestSent { request: 2, .. })
        })
        .await
        .expect("second request");
    let EventKind::RequestSent {
        prompt_tokens_estimate,
        ..
    } = sent.kind
    else {
        unreachable!()
    };
    // "first" + the 3-token reply + "second": more than "second" alone would be.
    assert!(
        prompt_tokens_estimate > 2,
        "the history went with the second turn: {prompt_tokens_estimate}"
    );
    s.wait_for(
        LONG,
        |k| matches!(k, EventKind::Done(done) if done.request == 2),
    )
    .await
    .unwrap_or_else(|| panic!("no second reply:\n{}", s.story()));
    assert_eq!(server.stats().requests, 2);
    server.stop().await;
}
