//! What only openai-sse or openai-realtime does, against the embedded simulator on 127.0.0.1:
//! a reported cost and `x-ratelimit-*` headers, a 429 (retried per the reference policy; at a
//! Realtime upgrade, on the rate-limit schedule), a rejected request classified, a stalled
//! stream (idle timeout), heartbeats (none for SSE, WebSocket Ping for Realtime), the
//! conversation a Realtime server keeps, and a beta Realtime client refused. What every
//! protocol does (bad keys, drops, upstream errors, cancel, one-shot sends) is `protocols.rs`,
//! one body a behaviour and a row a protocol. Every wait is bounded.

use crate::support;

use std::time::Duration;

use futures_util::StreamExt;
use relaytop_core::session::{
    Completed, EventKind, Protocol, SessionCommand, SessionSpec, SessionState,
};
use relaytop_core::session::{ErrorKind, Workload};
use relaytop_sim::{SimProfile, SimServer, UpgradeRejection};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

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

fn sse_spec(server: &SimServer, workload: Workload) -> SessionSpec {
    let mut spec = spec(&server.sse_base_url(), workload, fast_timing());
    spec.info.protocol = Protocol::OpenaiSse;
    spec.info.model = "gpt-4o-mini".into();
    spec
}

fn realtime_spec(server: &SimServer, workload: Workload) -> SessionSpec {
    let mut spec = spec(&server.realtime_url(), workload, fast_timing());
    spec.info.protocol = Protocol::OpenaiRealtime;
    spec.info.model = "gpt-realtime".into();
    spec
}

fn is_done(k: &EventKind) -> bool {
    matches!(k, EventKind::Done(_))
}

#[tokio::test]
async fn sse_streams_with_ttft_tokens_cost_and_rate_limits() {
    let server = sim(SimProfile {
        usage_cost_per_mtok: Some(5.0),
        cached_prompt_fraction: 0.5,
        ..quick(120.0, 6)
    })
    .await;
    let mut s = watch(sse_spec(&server, probe(100)));
    let done = s
        .wait_for(LONG, is_done)
        .await
        .unwrap_or_else(|| panic!("no response:\n{}", s.story()));
    let EventKind::Done(completed) = done.kind else {
        unreachable!()
    };
    let Completed {
        ttft_us,
        tokens,
        reported_cost_usd,
        finish_reason,
        chunks,
        ..
    } = *completed;
    let ttft_ms = ttft_us.expect("a first token") as f64 / 1000.0;
    assert!(
        (120.0..600.0).contains(&ttft_ms),
        "TTFT {ttft_ms} ms for 120 ms"
    );
    assert_eq!(chunks, 6);
    assert_eq!(tokens.output, 6);
    assert!(!tokens.estimated);
    assert_eq!(tokens.cached_input, tokens.input / 2);
    let expected = (tokens.input + tokens.output) as f64 * 5.0 / 1e6;
    assert!(
        (reported_cost_usd.expect("usage.cost") - expected).abs() < 1e-12,
        "{reported_cost_usd:?} vs {expected}"
    );
    assert_eq!(finish_reason.as_deref(), Some("stop"));
    assert_eq!(s.count(|k| matches!(k, EventKind::Connected { .. })), 1);
    assert!(
        s.count(|k| matches!(
            k,
            EventKind::RateLimitStatus(status)
                if status.requests_limit == Some(10_000) && status.tokens_remaining.is_some()
        )) >= 1,
        "{}",
        s.story()
    );
    // A second response on the same pooled connection; never a heartbeat.
    s.wait_for(LONG, is_done).await.expect("a second response");
    assert_eq!(s.count(|k| matches!(k, EventKind::Pong { .. })), 0);
    assert_eq!(s.count(|k| matches!(k, EventKind::Closed { .. })), 0);
    server.stop().await;
}

#[tokio::test]
async fn sse_429_is_retried_honouring_retry_after_ms() {
    let server = sim(SimProfile {
        rate_limit_rate: 1.0,
        rate_limit_retry_after_ms: 150,
        ..quick(10.0, 3)
    })
    .await;
    let mut s = watch(sse_spec(&server, chat()));
    s.wait_for(LONG, |k| matches!(k, EventKind::State(SessionState::Open)))
        .await
        .expect("open");
    s.handle
        .commands
        .send(SessionCommand::Chat { text: "hi".into() })
        .await
        .unwrap();
    // The request and its two retries, each refused.
    for _ in 0..3 {
        s.wait_for(LONG, |k| {
            matches!(
                k,
                EventKind::RequestFailed {
                    kind: ErrorKind::RateLimited,
                    ..
                }
            )
        })
        .await
        .unwrap_or_else(|| panic!("not refused three times:\n{}", s.story()));
    }
    let sends: Vec<u64> = s
        .seen
        .iter()
        .filter(|e| matches!(e.kind, EventKind::RequestSent { .. }))
        .map(|e| e.at_us)
        .collect();
    assert_eq!(sends.len(), 3, "{}", s.story());
    for pair in sends.windows(2) {
        assert!(
            pair[1] - pair[0] >= 150_000,
            "retry-after-ms honoured: {sends:?}"
        );
    }
    assert!(s.count(|k| matches!(k, EventKind::RateLimited { wait_ms: 150, .. })) >= 2);
    // Retries exhausted, the session goes on (and the 4th send is the next turn's).
    server.set_profile(quick(10.0, 3));
    s.handle
        .commands
        .send(SessionCommand::Chat {
            text: "again".into(),
        })
        .await
        .unwrap();
    s.wait_for(LONG, is_done)
        .await
        .unwrap_or_else(|| panic!("no response after the storm:\n{}", s.story()));
    server.stop().await;
}

#[tokio::test]
async fn sse_rejected_requests_are_classified() {
    let server = sim(SimProfile {
        reject_upgrades: Some(UpgradeRejection {
            first: Some(1),
            status: 503,
            retry_after: Some("0".into()),
            message: None,
        }),
        ..quick(10.0, 3)
    })
    .await;
    let mut s = watch(sse_spec(&server, probe(50)));
    s.wait_for(LONG, is_done)
        .await
        .unwrap_or_else(|| panic!("no response after a 503:\n{}", s.story()));
    assert_eq!(
        s.count(|k| matches!(
            k,
            EventKind::Error {
                kind: ErrorKind::Overloaded,
                retryable: true,
                ..
            }
        )),
        1,
        "{}",
        s.story()
    );
    server.stop().await;
}

#[tokio::test]
async fn sse_a_silent_stream_is_dead_after_the_idle_timeout() {
    let server = sim(SimProfile {
        stall_rate: 1.0,
        ..quick(10.0, 3)
    })
    .await;
    let mut s = watch(sse_spec(&server, probe(50)));
    let error = s
        .wait_for(LONG, |k| {
            matches!(
                k,
                EventKind::Error {
                    kind: ErrorKind::Timeout,
                    ..
                }
            )
        })
        .await
        .unwrap_or_else(|| panic!("no idle timeout:\n{}", s.story()));
    let EventKind::Error { message, .. } = &error.kind else {
        unreachable!()
    };
    assert!(message.contains("silent"), "{message}");
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
    .expect("a drop");
    server.stop().await;
}

#[tokio::test]
async fn realtime_streams_with_ttft_cached_tokens_rate_limits_and_ws_pings() {
    let server = sim(SimProfile {
        cached_prompt_fraction: 0.5,
        ..quick(120.0, 6)
    })
    .await;
    let mut s = watch(realtime_spec(&server, probe(100)));
    let done = s
        .wait_for(LONG, is_done)
        .await
        .unwrap_or_else(|| panic!("no response:\n{}", s.story()));
    let EventKind::Done(completed) = done.kind else {
        unreachable!()
    };
    let Completed {
        ttft_us,
        tokens,
        finish_reason,
        chunks,
        ..
    } = *completed;
    let ttft_ms = ttft_us.expect("a first token") as f64 / 1000.0;
    assert!(
        (120.0..600.0).contains(&ttft_ms),
        "TTFT {ttft_ms} ms for 120 ms"
    );
    assert_eq!((chunks, tokens.output), (6, 6));
    assert!(tokens.input > 0 && !tokens.estimated);
    assert_eq!(tokens.cached_input, tokens.input / 2);
    assert_eq!(finish_reason.as_deref(), Some("stop"));
    s.wait_for(LONG, |k| matches!(k, EventKind::RateLimitStatus(_)))
        .await
        .expect("rate_limits.updated");
    // WebSocket Ping round trips are the heartbeat (200 ms in the fast timing).
    s.wait_for(LONG, |k| matches!(k, EventKind::Pong { .. }))
        .await
        .unwrap_or_else(|| panic!("no heartbeat:\n{}", s.story()));
    // Probes delete their items: the input does not grow from probe to probe.
    let second = s.wait_for(LONG, is_done).await.expect("a second response");
    let EventKind::Done(completed) = second.kind else {
        unreachable!()
    };
    let Completed { tokens: t2, .. } = *completed;
    assert_eq!(t2.input, tokens.input, "the conversation stays small");
    assert_eq!(s.count(|k| matches!(k, EventKind::Malformed { .. })), 0);
    assert_eq!(s.count(|k| matches!(k, EventKind::UnknownFrame { .. })), 0);
    assert_eq!(
        s.count(|k| matches!(k, EventKind::Error { .. })),
        0,
        "{}",
        s.story()
    );
    server.stop().await;
}

#[tokio::test]
async fn realtime_429_at_the_upgrade_follows_the_rate_limit_schedule() {
    let server = sim(SimProfile {
        reject_upgrades: Some(UpgradeRejection {
            first: Some(2),
            status: 429,
            retry_after: Some("0".into()),
            message: None,
        }),
        ..quick(10.0, 3)
    })
    .await;
    let mut s = watch(realtime_spec(&server, probe(100)));
    s.wait_for(LONG, |k| matches!(k, EventKind::Connected { .. }))
        .await
        .unwrap_or_else(|| panic!("no connection after two 429s:\n{}", s.story()));
    // The rate-limit schedule (5 retries), not the reconnect backoff (10 attempts).
    for retry in 1..=2 {
        let note = format!("(retry {retry} of 5)");
        assert_eq!(
            s.count(
                |k| matches!(k, EventKind::RateLimited { cause, .. } if cause.ends_with(&note))
            ),
            1,
            "{note}:\n{}",
            s.story()
        );
    }
    assert_eq!(
        s.count(|k| matches!(
            k,
            EventKind::BackingOff {
                max_attempts: 5,
                ..
            }
        )),
        2,
        "{}",
        s.story()
    );
    assert_eq!(s.count(|k| matches!(k, EventKind::RateLimited { .. })), 2);
    server.stop().await;
}

#[tokio::test]
async fn realtime_chat_cancel_and_history() {
    let server = sim(SimProfile {
        tokens_per_second: 20.0,
        ..quick(10.0, 200)
    })
    .await;
    let mut s = watch(realtime_spec(
        &server,
        Workload::Chat {
            system: Some("Be brief.".into()),
        },
    ));
    s.wait_for(LONG, |k| matches!(k, EventKind::State(SessionState::Open)))
        .await
        .expect("open");
    let commands = s.handle.commands.clone();
    commands
        .send(SessionCommand::Chat {
            text: "tell me a long story".into(),
        })
        .await
        .unwrap();
    s.wait_for(LONG, |k| matches!(k, EventKind::FirstToken { .. }))
        .await
        .expect("streaming");
    commands.send(SessionCommand::Cancel).await.unwrap();
    let done = s.wait_for(LONG, is_done).await.expect("done");
    let EventKind::Done(completed) = done.kind else {
        unreachable!()
    };
    let Completed {
        finish_reason,
        tokens: first,
        ..
    } = *completed;
    assert_eq!(finish_reason.as_deref(), Some("cancelled"));
    server.set_profile(quick(10.0, 3));
    commands
        .send(SessionCommand::Chat {
            text: "shorter".into(),
        })
        .await
        .unwrap();
    let done = s.wait_for(LONG, is_done).await.expect("second turn");
    let EventKind::Done(completed) = done.kind else {
        unreachable!()
    };
    let Completed { tokens: second, .. } = *completed;
    assert!(
        second.input > first.input,
        "the server keeps the conversation: {} then {}",
        first.input,
        second.input
    );
    assert_eq!(
        s.count(|k| matches!(k, EventKind::Error { .. })),
        0,
        "{}",
        s.story()
    );
    server.stop().await;
}

#[tokio::test]
async fn the_simulator_refuses_beta_realtime_clients_with_4000() {
    let server = sim(quick(10.0, 3)).await;
    let mut request = server.realtime_url().into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "Authorization",
        HeaderValue::from_str(&format!("Bearer {TEST_KEY}")).unwrap(),
    );
    headers.insert("OpenAI-Beta", HeaderValue::from_static("realtime=v1"));
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status().as_u16(), 101);
    let first = ws.next().await.unwrap().unwrap();
    assert!(
        first.to_text().unwrap().contains("beta_api_shape_disabled"),
        "{first:?}"
    );
    let close = ws.next().await.unwrap().unwrap();
    let tokio_tungstenite::tungstenite::Message::Close(Some(frame)) = close else {
        panic!("{close:?}")
    };
    assert_eq!(u16::from(frame.code), 4000);
    let _ = ws.close(None).await;
    server.stop().await;
}
