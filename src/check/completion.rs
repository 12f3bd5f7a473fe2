//! One short completion with its time to first token, a heartbeat round trip, and with
//! `--idle` how long an idle connection survives, all through a real session.

use std::time::{Duration, Instant};

use relaytop_core::session::connect;
use relaytop_core::session::{
    self, BackoffPolicy, Completed, EventKind, Protocol, RunClock, SessionCommand, SessionInfo,
    SessionSpec, SessionState, Timing, Workload,
};

use super::first_request::stalled_hint;
use super::key::Key;
use super::options::CheckOptions;
use super::report::Verdict;
use super::target::Target;
use super::walk::Walk;

pub(super) fn model_of(options: &CheckOptions, protocol: Protocol) -> String {
    options.model.clone().unwrap_or_else(|| {
        match protocol {
            Protocol::RelayV1 => "gpt-4.1",
            Protocol::OpenaiSse => "gpt-4o-mini",
            Protocol::OpenaiRealtime => "gpt-realtime",
            Protocol::AnthropicMessages => "claude-sonnet-4-5",
            Protocol::OpenaiResponses => "gpt-5-mini",
            Protocol::Gemini => "gemini-2.5-flash",
        }
        .to_owned()
    })
}

pub(super) fn session_spec(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    heartbeat: Option<Duration>,
) -> SessionSpec {
    SessionSpec {
        info: SessionInfo {
            id: 0,
            name: "check".into(),
            provider: target.host.clone(),
            model: model_of(options, target.protocol),
            protocol: target.protocol,
            url: if target.protocol.is_http_stream() {
                relaytop_core::config::station::url_for(&target.url, target.protocol)
            } else {
                target.url.clone()
            },
            workload: "chat".into(),
        },
        api_key: key.secret.clone(),
        auth: options.auth,
        resolver: Some(connect::ResolverHandle(options.resolver.clone())),
        workload: Workload::Chat { system: None },
        timing: Timing {
            heartbeat,
            ws_ping: heartbeat.is_some(),
            dead_after: Duration::from_secs(3600),
            handshake_timeout: options.timeout,
            response_timeout: options.timeout * 3,
            stable_after: Duration::from_secs(30),
            backoff: BackoffPolicy {
                base: Duration::from_millis(100),
                cap: Duration::from_millis(100),
                max_attempts: 0,
            },
            // A check wants a verdict, not a watch.
            watch: None,
            recheck: None,
        },
        seed: Some(1),
        tap: None,
        limits: None,
    }
}

pub(super) async fn check_completion_and_heartbeat(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    walk: &mut Walk,
) -> bool {
    let heartbeat = (!target.protocol.is_http_stream()).then_some(Duration::from_millis(200));
    let spec = session_spec(options, target, key, heartbeat);
    let (tx, mut rx) = relaytop_core::session::stream::channel(1024);
    let handle = session::spawn(spec, RunClock::new(), tx);
    let started = Instant::now();
    let _ = handle
        .commands
        .send(SessionCommand::Chat {
            text: "Reply with one short sentence.".into(),
        })
        .await;
    let limit = options.timeout * 3 + options.timeout;
    let deadline = tokio::time::Instant::now() + limit;
    let mut completed = false;
    let mut last_problem: Option<String> = None;
    // The last error's kind and Retry-After: a 429 is a rate limit, not a wrong model.
    let mut last_error: Option<(relaytop_core::session::ErrorKind, Option<u64>)> = None;
    let mut pong: Option<u64> = None;
    while !completed || (heartbeat.is_some() && pong.is_none()) {
        let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => event,
            _ => break,
        };
        match event.kind {
            EventKind::Done(done) if !completed => {
                let Completed {
                    ttft_us,
                    total_us,
                    tokens,
                    ..
                } = *done;
                completed = true;
                let ttft = ttft_us.map_or_else(
                    || "no text".to_owned(),
                    |t| format!("{:.1} ms", t as f64 / 1000.0),
                );
                walk.pass(
                    "completion",
                    started,
                    format!(
                        "time to first token {ttft}, done in {:.1} ms, {} tokens out{}",
                        total_us as f64 / 1000.0,
                        tokens.output,
                        if tokens.estimated {
                            " (estimated: no usage sent)"
                        } else {
                            ""
                        }
                    ),
                );
            }
            EventKind::Pong { rtt_us } if pong.is_none() => pong = Some(rtt_us),
            EventKind::HeartbeatMissed { waited_us } if pong.is_none() => {
                last_problem = Some(format!(
                    "a heartbeat went unanswered for {:.1} s",
                    waited_us as f64 / 1e6
                ));
                if completed {
                    break;
                }
            }
            EventKind::RequestFailed { reason, kind, .. } if !completed => {
                use relaytop_core::session::ErrorKind;
                let rate_limited = kind == ErrorKind::RateLimited
                    || last_error.is_some_and(|(k, _)| k == ErrorKind::RateLimited);
                let mut retry_after_ms = last_error.and_then(|(_, ms)| ms);
                if rate_limited && retry_after_ms.is_none() {
                    // The wait the session took from Retry-After is reported just after.
                    let until = tokio::time::Instant::now() + Duration::from_millis(500);
                    while let Ok(Some(event)) = tokio::time::timeout_at(until, rx.recv()).await {
                        match event.kind {
                            EventKind::RateLimited { wait_ms, .. } => {
                                retry_after_ms = Some(wait_ms);
                                break;
                            }
                            EventKind::Error {
                                retry_after_ms: Some(ms),
                                ..
                            } => {
                                retry_after_ms = Some(ms);
                                break;
                            }
                            _ => {}
                        }
                    }
                }
                let hint = if rate_limited {
                    format!(
                        "the relay rate-limited the request (429 / rate_limited){}: wait and run \
                         check again, or ask the relay for a higher rate limit",
                        match retry_after_ms {
                            Some(ms) => {
                                format!("; its Retry-After says {:.1} s", ms as f64 / 1000.0)
                            }
                            None => "; it sent no Retry-After".to_owned(),
                        }
                    )
                } else {
                    "see the reason; with a 4xx, check --model against the models step".to_owned()
                };
                walk.fail(
                    "completion",
                    started,
                    format!("the request failed: {reason}"),
                    hint,
                );
                break;
            }
            EventKind::Error {
                message,
                kind,
                retry_after_ms,
                ..
            } => {
                last_error = Some((kind, retry_after_ms));
                last_problem = Some(message);
            }
            EventKind::Closed {
                requested: false,
                code,
                reason,
            } => {
                last_problem = Some(format!(
                    "the connection dropped after {:.1} s (close {code}{}), before a heartbeat was answered",
                    started.elapsed().as_secs_f64(),
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                ));
            }
            EventKind::State(SessionState::Stopped { reason }) => {
                if !completed {
                    walk.fail(
                        "completion",
                        started,
                        format!("the session stopped: {reason}"),
                        "see the reason".into(),
                    );
                }
                break;
            }
            _ => {}
        }
    }
    let _ = handle.commands.send(SessionCommand::Close).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), handle.task).await;
    if !walk.steps.iter().any(|s| s.name == "completion") {
        walk.fail(
            "completion",
            started,
            format!(
                "no answer within {:.0} s{}",
                limit.as_secs_f64(),
                last_problem
                    .as_ref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            ),
            stalled_hint(target),
        );
    }
    if walk.failed {
        return false;
    }
    match (heartbeat, pong) {
        (None, _) => {
            walk.skip(
                "heartbeat",
                &format!(
                    "{} has no heartbeat: a silent stream is cut by the idle timeout instead",
                    target.protocol.label()
                ),
            );
            true
        }
        (Some(_), Some(rtt)) => {
            let what = if target.protocol == Protocol::RelayV1 {
                "ping→pong"
            } else {
                "WebSocket Ping→Pong"
            };
            walk.record(
                "heartbeat",
                None,
                Verdict::Pass,
                format!("{what} round trip {:.1} ms", rtt as f64 / 1000.0),
                None,
            );
            if let Some(step) = walk.steps.last_mut() {
                step.ms = Some(rtt as f64 / 1000.0);
            }
            true
        }
        (Some(_), None) => {
            walk.record(
                "heartbeat",
                None,
                Verdict::Fail,
                last_problem.unwrap_or_else(|| "no heartbeat answered".into()),
                Some("the relay does not answer heartbeats: a proxy in between may cut idle connections after 60-90 s; ask the operator".into()),
            );
            false
        }
    }
}

pub(super) async fn check_idle(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    walk: &mut Walk,
) {
    let Some(idle) = options.idle else {
        walk.skip("idle", "not asked (--idle SECONDS finds an idle cut-off)");
        return;
    };
    if target.protocol.is_http_stream() {
        walk.skip(
            "idle",
            &format!(
                "{} holds no connection between requests",
                target.protocol.label()
            ),
        );
        return;
    }
    let started = Instant::now();
    let spec = session_spec(options, target, key, None);
    let (tx, mut rx) = relaytop_core::session::stream::channel(1024);
    let handle = session::spawn(spec, RunClock::new(), tx);
    let mut connected_at: Option<u64> = None;
    let deadline = tokio::time::Instant::now() + options.timeout + idle;
    let mut cut: Option<(u64, u16)> = None;
    loop {
        let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(event)) => event,
            _ => break,
        };
        match event.kind {
            EventKind::Connected { .. } if connected_at.is_none() => {
                connected_at = Some(event.at_us)
            }
            EventKind::Closed {
                requested: false,
                code,
                ..
            } => {
                cut = Some((event.at_us, code));
                break;
            }
            EventKind::State(SessionState::Stopped { .. }) => break,
            _ => {}
        }
        if connected_at.is_some_and(|c| event.at_us.saturating_sub(c) >= idle.as_micros() as u64) {
            break;
        }
    }
    let _ = handle.commands.send(SessionCommand::Close).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), handle.task).await;
    match (connected_at, cut) {
        (Some(up), Some((at, code))) => {
            let after = at.saturating_sub(up) as f64 / 1e6;
            walk.fail(
                "idle",
                started,
                format!("an idle connection was cut after {after:.1} s (close {code})"),
                format!(
                    "send heartbeats more often than every {:.0} s (heartbeat_s in the config)",
                    (after * 0.5).floor().max(1.0)
                ),
            );
        }
        (Some(_), None) => walk.pass(
            "idle",
            started,
            format!("an idle connection stayed open {:.0} s", idle.as_secs_f64()),
        ),
        (None, _) => walk.fail(
            "idle",
            started,
            "could not open a connection to leave idle".into(),
            "see the upgrade step".into(),
        ),
    }
}
