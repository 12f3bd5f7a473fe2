//! What every wire protocol must do, written once and run for each codec against the embedded
//! simulator on 127.0.0.1: a streamed response with its time to first token and tokens, a bad
//! key that stops the session without retrying, a drop mid-stream that reconnects, an upstream
//! error that fails the request and not the session, Esc that cancels a reply, and one-shot
//! sends (the canary's). A new protocol adds a row to `PROTOCOLS`, not a file.
//!
//! What only one protocol does (relay/v1's application heartbeat, SSE's idle timeout, a
//! Realtime beta client refused) stays in `session_engine.rs` and `openai_transports.rs`.

use crate::support;

use std::time::Duration;

use relaytop_core::session::{
    Completed, ErrorKind, EventKind, Protocol, SessionCommand, SessionSpec, SessionState, Workload,
};
use relaytop_sim::{SimProfile, SimServer};
use support::*;

const LONG: Duration = Duration::from_secs(10);

/// One codec under test: how to reach it on the simulator, and what it says in its own words.
struct Case {
    protocol: Protocol,
    model: &'static str,
    url: fn(&SimServer) -> String,
    /// Whether its usage reports prompt tokens served from a cache.
    reports_cached_tokens: bool,
    /// What the stop reason says when the key is refused.
    bad_key_reason: &'static str,
    /// Connections the session makes before it learns the key is refused (Realtime answers
    /// 101, then an `invalid_api_key` error, then closes).
    connects_before_a_bad_key: usize,
    /// The finish reason of a whole answer, and of one the output limit cut, in its words.
    finish_stop: &'static str,
    finish_length: &'static str,
    /// The smallest output limit it sends (OpenAI refuses a `max_output_tokens` under 16).
    least_max_tokens: u32,
    /// What an upstream failure mid-stream is (Anthropic's is `overloaded_error`).
    upstream_error: ErrorKind,
}

const PROTOCOLS: [Case; 6] = [
    Case {
        protocol: Protocol::RelayV1,
        model: "gpt-4.1",
        url: SimServer::url,
        reports_cached_tokens: false,
        bad_key_reason: "401",
        connects_before_a_bad_key: 0,
        finish_stop: "stop",
        finish_length: "length",
        least_max_tokens: 1,
        upstream_error: ErrorKind::Upstream,
    },
    Case {
        protocol: Protocol::OpenaiSse,
        model: "gpt-4o-mini",
        url: SimServer::sse_base_url,
        reports_cached_tokens: true,
        bad_key_reason: "401",
        connects_before_a_bad_key: 0,
        finish_stop: "stop",
        finish_length: "length",
        least_max_tokens: 1,
        upstream_error: ErrorKind::Upstream,
    },
    Case {
        protocol: Protocol::OpenaiRealtime,
        model: "gpt-realtime",
        url: SimServer::realtime_url,
        reports_cached_tokens: true,
        bad_key_reason: "invalid_api_key",
        connects_before_a_bad_key: 1,
        finish_stop: "stop",
        finish_length: "length",
        least_max_tokens: 1,
        upstream_error: ErrorKind::Upstream,
    },
    Case {
        protocol: Protocol::OpenaiResponses,
        model: "gpt-5-mini",
        url: SimServer::sse_base_url,
        reports_cached_tokens: true,
        bad_key_reason: "401",
        connects_before_a_bad_key: 0,
        finish_stop: "completed",
        finish_length: "max_output_tokens",
        least_max_tokens: 16,
        upstream_error: ErrorKind::Upstream,
    },
    Case {
        protocol: Protocol::AnthropicMessages,
        model: "claude-sonnet-4-5",
        url: SimServer::sse_base_url,
        reports_cached_tokens: true,
        bad_key_reason: "401",
        connects_before_a_bad_key: 0,
        finish_stop: "end_turn",
        finish_length: "max_tokens",
        least_max_tokens: 1,
        upstream_error: ErrorKind::Overloaded,
    },
    Case {
        protocol: Protocol::Gemini,
        model: "gemini-2.5-flash",
        url: SimServer::root_url,
        reports_cached_tokens: true,
        bad_key_reason: "API_KEY_INVALID",
        connects_before_a_bad_key: 0,
        finish_stop: "STOP",
        finish_length: "MAX_TOKENS",
        least_max_tokens: 1,
        upstream_error: ErrorKind::Upstream,
    },
];

impl Case {
    fn spec(&self, server: &SimServer, workload: Workload) -> SessionSpec {
        let mut spec = spec(&(self.url)(server), workload, fast_timing());
        spec.info.protocol = self.protocol;
        spec.info.model = self.model.into();
        spec
    }
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

fn is_open(k: &EventKind) -> bool {
    matches!(k, EventKind::State(SessionState::Open))
}

#[tokio::test]
async fn every_protocol_streams_a_response_with_its_ttft_and_tokens() {
    for case in &PROTOCOLS {
        let name = case.protocol;
        let server = sim(SimProfile {
            cached_prompt_fraction: 0.5,
            ..quick(120.0, 6)
        })
        .await;
        let mut s = watch(case.spec(&server, probe(100)));
        let done = s
            .wait_for(LONG, is_done)
            .await
            .unwrap_or_else(|| panic!("{name:?}: no response:\n{}", s.story()));
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
            "{name:?}: TTFT {ttft_ms} ms for 120 ms"
        );
        assert_eq!((chunks, tokens.output), (6, 6), "{name:?}");
        assert!(
            tokens.input > 0 && !tokens.estimated,
            "{name:?}: {tokens:?}"
        );
        if case.reports_cached_tokens {
            assert_eq!(tokens.cached_input, tokens.input / 2, "{name:?}");
        }
        assert_eq!(finish_reason.as_deref(), Some(case.finish_stop), "{name:?}");
        assert_eq!(
            s.count(|k| matches!(k, EventKind::Malformed { .. } | EventKind::Error { .. })),
            0,
            "{name:?}:\n{}",
            s.story()
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn every_protocol_stops_on_a_bad_key_without_backing_off() {
    for case in &PROTOCOLS {
        let name = case.protocol;
        let server = sim(SimProfile {
            accepted_keys: Some(vec!["hs_live_someoneelse000000".into()]),
            ..quick(10.0, 3)
        })
        .await;
        let mut s = watch(case.spec(&server, probe(100)));
        let stop = s
            .wait_for(LONG, |k| {
                matches!(k, EventKind::State(SessionState::Stopped { .. }))
            })
            .await
            .unwrap_or_else(|| panic!("{name:?}: did not stop:\n{}", s.story()));
        let EventKind::State(SessionState::Stopped { reason }) = stop.kind else {
            unreachable!()
        };
        assert!(reason.contains(case.bad_key_reason), "{name:?}: {reason}");
        assert_eq!(
            s.count(|k| matches!(k, EventKind::BackingOff { .. })),
            0,
            "{name:?}"
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
            1,
            "{name:?}:\n{}",
            s.story()
        );
        assert_eq!(
            s.count(|k| matches!(k, EventKind::Connected { .. })),
            case.connects_before_a_bad_key,
            "{name:?}:\n{}",
            s.story()
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn every_protocol_reconnects_after_a_drop_mid_stream() {
    for case in &PROTOCOLS {
        let name = case.protocol;
        let server = sim(SimProfile {
            drop_rate: 1.0,
            ..quick(10.0, 8)
        })
        .await;
        let mut s = watch(case.spec(&server, probe(50)));
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
        .unwrap_or_else(|| panic!("{name:?}: no drop:\n{}", s.story()));
        assert!(
            s.count(|k| matches!(k, EventKind::RequestFailed { .. })) >= 1,
            "{name:?}: the cut response failed:\n{}",
            s.story()
        );
        server.set_profile(quick(10.0, 3));
        s.wait_for(LONG, is_done)
            .await
            .unwrap_or_else(|| panic!("{name:?}: no response after the drop:\n{}", s.story()));
        assert!(
            s.count(|k| matches!(k, EventKind::Connected { .. })) >= 2,
            "{name:?}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn every_protocol_fails_the_request_not_the_session_on_an_upstream_error() {
    for case in &PROTOCOLS {
        let name = case.protocol;
        let server = sim(SimProfile {
            error_rate: 1.0,
            ..quick(10.0, 3)
        })
        .await;
        let mut s = watch(case.spec(&server, probe(50)));
        for _ in 0..2 {
            s.wait_for(LONG, |k| {
                matches!(
                    k,
                    EventKind::RequestFailed { kind, .. } if *kind == case.upstream_error
                )
            })
            .await
            .unwrap_or_else(|| panic!("{name:?}: no upstream error:\n{}", s.story()));
        }
        assert_eq!(
            s.count(|k| matches!(k, EventKind::Closed { .. })),
            0,
            "{name:?}"
        );
        assert_eq!(
            s.count(|k| matches!(k, EventKind::Connected { .. })),
            1,
            "{name:?}"
        );
        server.stop().await;
    }
}

#[tokio::test]
async fn every_protocol_cancels_a_reply() {
    for case in &PROTOCOLS {
        let name = case.protocol;
        let server = sim(SimProfile {
            tokens_per_second: 20.0,
            ..quick(10.0, 200)
        })
        .await;
        let mut s = watch(case.spec(&server, chat()));
        s.wait_for(LONG, is_open).await.expect("open");
        let commands = s.handle.commands.clone();
        commands
            .send(SessionCommand::Chat {
                text: "tell me".into(),
            })
            .await
            .unwrap();
        s.wait_for(LONG, |k| matches!(k, EventKind::FirstToken { .. }))
            .await
            .unwrap_or_else(|| panic!("{name:?}: not streaming:\n{}", s.story()));
        commands.send(SessionCommand::Cancel).await.unwrap();
        let done = s.wait_for(LONG, is_done).await.expect("done");
        let EventKind::Done(completed) = done.kind else {
            unreachable!()
        };
        let Completed { finish_reason, .. } = *completed;
        assert_eq!(finish_reason.as_deref(), Some("cancelled"), "{name:?}");
        commands.send(SessionCommand::Close).await.unwrap();
        s.wait_for(LONG, |k| {
            matches!(k, EventKind::State(SessionState::Closed))
        })
        .await
        .unwrap_or_else(|| panic!("{name:?}: not closed:\n{}", s.story()));
        server.stop().await;
    }
}

#[tokio::test]
async fn every_protocol_takes_one_shot_sends() {
    let server = sim(quick(10.0, 30)).await;
    for case in &PROTOCOLS {
        let name = case.protocol;
        let mut spec = case.spec(&server, Workload::OnDemand);
        spec.timing.heartbeat = None;
        let mut s = watch(spec);
        s.handle
            .commands
            .send(SessionCommand::Send {
                prompt: "canary probe".into(),
                max_tokens: Some(2),
            })
            .await
            .unwrap();
        let done = s
            .wait_for(LONG, is_done)
            .await
            .unwrap_or_else(|| panic!("{name:?}: no response:\n{}", s.story()));
        let EventKind::Done(completed) = done.kind else {
            unreachable!()
        };
        let Completed {
            tokens,
            finish_reason,
            ..
        } = *completed;
        assert_eq!(
            tokens.output,
            u64::from(case.least_max_tokens.max(2)),
            "{name:?}"
        );
        assert_eq!(
            finish_reason.as_deref(),
            Some(case.finish_length),
            "{name:?}"
        );
        assert_eq!(
            s.count(|k| matches!(k, EventKind::RequestSent { .. })),
            1,
            "{name:?}"
        );
        s.handle.commands.send(SessionCommand::Close).await.unwrap();
        s.wait_for(LONG, |k| {
            matches!(k, EventKind::State(SessionState::Closed))
        })
        .await
        .expect("closed");
    }
    server.stop().await;
}
