//! The simulator's openai-sse side: `POST /v1/chat/completions` answered with a Server-Sent
//! Events stream shaped like OpenAI's (role delta, content deltas, the finish chunk, the usage
//! chunk, `[DONE]`), over keep-alive HTTP/1.1 with chunked transfer encoding, driven by the
//! same profile knobs as relay/v1: time to first token, tokens per second, drops (the TCP
//! connection just ends mid-stream), upstream errors (a mid-stream `event: error`), 429s
//! (with `retry-after-ms`, `Retry-After` and `x-should-retry`), rejected requests, keys,
//! malformed events, stalls (a stream that goes silent) and idle cut-offs of pooled
//! connections. The official OpenAI SDKs read its streams unchanged.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

use super::http::{self, RequestHead};
use super::server::{Shared, bump};
use relaytop_core::config::sim_profile::{SimProfile, chance};
use relaytop_core::protocol::openai_chat::{CHAT_COMPLETIONS_PATH, ChatRequest};

/// Largest request body taken.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How long a request body may take.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a pooled connection may sit idle between requests (unless the profile cuts sooner).
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(90);
/// The rate limits the simulator reports in `x-ratelimit-*`.
const REQUESTS_PER_MINUTE: u64 = 10_000;
const TOKENS_PER_MINUTE: u64 = 2_000_000;
/// The malformed events `malformed_rate` injects, in turn.
const MALFORMED_EVENTS: [&str; 2] = [
    "data: {\"choices\":[{\"delta\":{\"content\":\n\n",
    "data: not json at all\n\n",
];

/// Serves a keep-alive HTTP connection whose first request (`head`) is a chat completion.
/// Later requests on it are served too; anything else is answered once and the connection
/// closed.
pub(crate) async fn serve(
    mut tcp: TcpStream,
    mut head: RequestHead,
    mut buf: Vec<u8>,
    connection_number: u64,
    shared: Arc<Shared>,
) {
    let live = shared.live_profile();
    let mut rng = SmallRng::seed_from_u64(live.profile.seed.wrapping_add(connection_number));
    let mut request_number: u64 = 0;
    loop {
        let profile = shared.live_profile();
        if head.method != "POST" || head.path != CHAT_COMPLETIONS_PATH {
            let answer = super::conn::plain_http_answer(&head, &profile.profile);
            http::respond_and_close(tcp, &answer).await;
            return;
        }
        let body =
            match http::read_body(&mut tcp, &head, &mut buf, MAX_BODY_BYTES, BODY_TIMEOUT).await {
                Ok(body) => body,
                Err(status) => {
                    let message = match status {
                        413 => "request body too large",
                        408 => "request body took too long",
                        _ => "cannot read the request body",
                    };
                    let body = http::openai_error_body(message, "invalid_request_error", None);
                    http::respond_and_close(tcp, &http::json_response(status, &[], &body)).await;
                    return;
                }
            };
        request_number += 1;
        let id = format!("chatcmpl-sim{connection_number}x{request_number}");
        let keep_alive =
            match completion(&mut tcp, &head, &body, &id, &mut rng, &profile, &shared).await {
                Answer::KeepAlive => !head.close,
                Answer::Close(response) => {
                    http::respond_and_close(tcp, &response).await;
                    return;
                }
                Answer::Gone => return,
            };
        if !keep_alive {
            let _ = tcp.shutdown().await;
            return;
        }
        let idle = profile
            .profile
            .idle_cutoff_ms
            .map_or(KEEP_ALIVE_IDLE, Duration::from_millis);
        match http::read_head_after(&mut tcp, std::mem::take(&mut buf), idle).await {
            Ok((next, rest)) => {
                head = next;
                buf = rest;
            }
            // Idle too long, or gone: a pooled connection ends here.
            Err(_) => return,
        }
    }
}

/// How a request was answered.
enum Answer {
    /// Answered in full; the connection can take another request.
    KeepAlive,
    /// Answer with this whole response, then close.
    Close(String),
    /// The connection is over (a simulated drop, a stall the client left, a write failure).
    Gone,
}

/// One `chat.completion.chunk`.
#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: Vec<ChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<f64>,
}

#[derive(Serialize)]
struct CachedOut {
    cached_tokens: u64,
}

/// An SSE event as one HTTP chunk.
fn chunk(event: &str) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", event.len()).into_bytes();
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

fn data_event(json: &impl Serialize) -> String {
    // Plain structs of strings and numbers: serializing cannot fail.
    format!(
        "data: {}\n\n",
        serde_json::to_string(json).unwrap_or_default()
    )
}

/// The `x-ratelimit-*` headers of the `n`-th request this simulator has seen.
fn rate_limit_headers(n: u64, tokens: u64) -> String {
    let remaining_requests = REQUESTS_PER_MINUTE - (n % REQUESTS_PER_MINUTE);
    let remaining_tokens = TOKENS_PER_MINUTE.saturating_sub(tokens % TOKENS_PER_MINUTE);
    format!(
        "x-ratelimit-limit-requests: {REQUESTS_PER_MINUTE}\r\n\
         x-ratelimit-remaining-requests: {remaining_requests}\r\n\
         x-ratelimit-reset-requests: 6ms\r\n\
         x-ratelimit-limit-tokens: {TOKENS_PER_MINUTE}\r\n\
         x-ratelimit-remaining-tokens: {remaining_tokens}\r\n\
         x-ratelimit-reset-tokens: 0s\r\n"
    )
}

#[allow(clippy::too_many_arguments)]
async fn completion(
    tcp: &mut TcpStream,
    head: &RequestHead,
    body: &[u8],
    id: &str,
    rng: &mut SmallRng,
    live: &super::server::LiveProfile,
    shared: &Shared,
) -> Answer {
    let received = Instant::now();
    let profile = live.profile.clone();
    bump(&shared.stats.requests);
    let n = shared
        .stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    if let Some(rejection) = live.take_upgrade_rejection() {
        let (kind, code) = match rejection.status {
            429 => ("requests", Some("rate_limit_exceeded")),
            401 | 403 => ("invalid_request_error", Some("invalid_api_key")),
            500..=599 => ("server_error", None),
            _ => ("invalid_request_error", None),
        };
        let retry_after = rejection.retry_after.as_deref().map(|v| ("Retry-After", v));
        let body = http::openai_error_body(rejection.message(), kind, code);
        bump(&shared.stats.upgrades_rejected);
        return Answer::Close(http::json_response(
            rejection.status,
            retry_after.as_slice(),
            &body,
        ));
    }
    if let Err(why) = http::check_key(
        head.authorization.as_deref(),
        profile.accepted_keys.as_deref(),
    ) {
        let body = http::openai_error_body(
            &format!("Incorrect API key provided: {why}"),
            "invalid_request_error",
            Some("invalid_api_key"),
        );
        return Answer::Close(http::json_response(401, &[], &body));
    }
    let request: ChatRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => {
            let body = http::openai_error_body(
                &format!("We could not parse the JSON body of your request: {e}"),
                "invalid_request_error",
                None,
            );
            return Answer::Close(http::json_response(400, &[], &body));
        }
    };
    if chance(rng, profile.rate_limit_rate) {
        let ms = profile.rate_limit_retry_after_ms;
        let ms_text = ms.to_string();
        let seconds = ms.div_ceil(1000).to_string();
        let body = http::openai_error_body(
            "Rate limit reached for requests (simulated): retry later",
            "requests",
            Some("rate_limit_exceeded"),
        );
        return Answer::Close(http::json_response(
            429,
            &[
                ("retry-after-ms", &ms_text),
                ("Retry-After", &seconds),
                ("x-should-retry", "true"),
            ],
            &body,
        ));
    }

    let prompt_chars: usize = request
        .messages
        .iter()
        .map(|m| m.content.chars().count())
        .sum();
    let prompt_tokens = (prompt_chars as u64).div_ceil(4);
    let total = request
        .max_tokens
        .map_or(profile.tokens_per_response, |max| {
            max.min(profile.tokens_per_response)
        });
    let finish_reason = if total < profile.tokens_per_response {
        "length"
    } else {
        "stop"
    };
    let fails = chance(rng, profile.error_rate);
    let stalls = chance(rng, profile.stall_rate);
    let drop_at = chance(rng, profile.drop_rate).then(|| {
        if total >= 2 {
            rng.random_range(1..total)
        } else {
            0
        }
    });
    let first_due = received + profile.time_to_first_token().sample(rng);
    let interval = profile.token_interval();
    let created = chrono::Utc::now().timestamp();
    let model = request.model.as_str();
    let base = |choices, usage| ChunkOut {
        id,
        object: "chat.completion.chunk",
        created,
        model,
        system_fingerprint: "fp_relaytop_sim",
        choices,
        usage,
    };
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);

    if !request.stream {
        return whole_completion(
            tcp,
            &request,
            id,
            &profile,
            prompt_tokens,
            total,
            finish_reason,
            first_due,
            shared,
        )
        .await;
    }

    let processing_ms = received.elapsed().as_millis();
    let head_out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
         Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nx-request-id: req_{id}\r\n\
         openai-processing-ms: {processing_ms}\r\n{}\r\n",
        rate_limit_headers(n, prompt_tokens + u64::from(total))
    );
    let role = data_event(&base(
        vec![ChoiceOut {
            index: 0,
            delta: DeltaOut {
                role: Some("assistant"),
                content: Some(""),
            },
            logprobs: None,
            finish_reason: None,
        }],
        None,
    ));
    let mut out = head_out.into_bytes();
    out.extend_from_slice(&chunk(&role));
    if tcp.write_all(&out).await.is_err() {
        return Answer::Gone;
    }
    if stalls {
        // Silent from here on: hold the connection until the client gives up.
        let mut sink = [0u8; 1024];
        while let Ok(n) = tcp.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
        bump(&shared.stats.responses_dropped);
        return Answer::Gone;
    }
    let mut sent: u32 = 0;
    let mut next_malformed = 0usize;
    loop {
        let due = interval
            .and_then(|i| i.checked_mul(sent))
            .and_then(|offset| first_due.checked_add(offset))
            .unwrap_or(first_due);
        sleep_until(due).await;
        let mut batch = Vec::new();
        if fails {
            let error = http::openai_error_body(
                "The upstream model failed (simulated)",
                "server_error",
                Some("upstream_error"),
            );
            batch.extend_from_slice(&chunk(&format!("event: error\ndata: {error}\n\n")));
            batch.extend_from_slice(b"0\r\n\r\n");
            let _ = tcp.write_all(&batch).await;
            return Answer::KeepAlive;
        }
        if drop_at == Some(sent) {
            // What a broken upstream looks like: the TCP connection just ends.
            let _ = tcp.shutdown().await;
            bump(&shared.stats.responses_dropped);
            return Answer::Gone;
        }
        // Everything already due goes out in one write.
        let now = Instant::now();
        while sent < total {
            let due = interval
                .and_then(|i| i.checked_mul(sent))
                .and_then(|offset| first_due.checked_add(offset))
                .unwrap_or(first_due);
            if due > now || drop_at == Some(sent) {
                break;
            }
            let word = profile.chunk_word(sent);
            let event = data_event(&base(
                vec![ChoiceOut {
                    index: 0,
                    delta: DeltaOut {
                        role: None,
                        content: Some(word),
                    },
                    logprobs: None,
                    finish_reason: None,
                }],
                None,
            ));
            batch.extend_from_slice(&chunk(&event));
            sent += 1;
            if chance(rng, profile.malformed_rate) {
                batch.extend_from_slice(&chunk(MALFORMED_EVENTS[next_malformed]));
                next_malformed = (next_malformed + 1) % MALFORMED_EVENTS.len();
            }
        }
        if sent >= total {
            let finish = data_event(&base(
                vec![ChoiceOut {
                    index: 0,
                    delta: DeltaOut::default(),
                    logprobs: None,
                    finish_reason: Some(finish_reason),
                }],
                None,
            ));
            batch.extend_from_slice(&chunk(&finish));
            if include_usage && profile.send_usage {
                let usage = usage_out(&profile, prompt_tokens, u64::from(sent));
                batch.extend_from_slice(&chunk(&data_event(&base(Vec::new(), Some(usage)))));
            }
            batch.extend_from_slice(&chunk("data: [DONE]\n\n"));
            batch.extend_from_slice(b"0\r\n\r\n");
            if tcp.write_all(&batch).await.is_err() {
                bump(&shared.stats.responses_dropped);
                return Answer::Gone;
            }
            bump(&shared.stats.responses_completed);
            return Answer::KeepAlive;
        }
        if tcp.write_all(&batch).await.is_err() {
            bump(&shared.stats.responses_dropped);
            return Answer::Gone;
        }
    }
}

fn usage_out(profile: &SimProfile, prompt_tokens: u64, completion_tokens: u64) -> UsageOut {
    let total_tokens = prompt_tokens + completion_tokens;
    let cached = (prompt_tokens as f64 * profile.cached_prompt_fraction.clamp(0.0, 1.0)) as u64;
    UsageOut {
        prompt_tokens,
        completion_tokens,
        total_tokens,
        prompt_tokens_details: CachedOut {
            cached_tokens: cached,
        },
        cost: profile
            .usage_cost_per_mtok
            .map(|price| total_tokens as f64 * price / 1_000_000.0),
    }
}

/// A `stream: false` request: the whole `chat.completion` once the response would be over.
#[allow(clippy::too_many_arguments)]
async fn whole_completion(
    tcp: &mut TcpStream,
    request: &ChatRequest,
    id: &str,
    profile: &SimProfile,
    prompt_tokens: u64,
    total: u32,
    finish_reason: &str,
    first_due: Instant,
    shared: &Shared,
) -> Answer {
    let done_at = profile
        .token_interval()
        .and_then(|i| i.checked_mul(total))
        .and_then(|d| first_due.checked_add(d))
        .unwrap_or(first_due);
    sleep_until(done_at).await;
    let text: String = (0..total).map(|i| profile.chunk_word(i)).collect();
    let usage = usage_out(profile, prompt_tokens, u64::from(total));
    let body = serde_json::json!({
        "id": id,
        "object": "chat.completion",
        "created": chrono::Utc::now().timestamp(),
        "model": request.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": text, "refusal": null },
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
        "usage": usage,
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if tcp.write_all(response.as_bytes()).await.is_err() {
        return Answer::Gone;
    }
    bump(&shared.stats.responses_completed);
    Answer::KeepAlive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_framed() {
        assert_eq!(chunk("data: x\n\n"), b"9\r\ndata: x\n\n\r\n");
    }

    #[test]
    fn malformed_events_are_malformed() {
        use relaytop_core::protocol::openai_chat::{SseBuffer, StreamData};
        for event in MALFORMED_EVENTS {
            let mut buffer = SseBuffer::new();
            buffer.push(event.as_bytes());
            let event = buffer.next_event().unwrap().unwrap();
            assert!(StreamData::parse(event.event, &event.data).is_err());
        }
    }
}
