//! The simulator's HTTP streaming half, shared by every format it serves over SSE (chat
//! completions, Anthropic Messages, Responses, Gemini): keep-alive connections routed request
//! by request to the format's `Shape`, and one schedule driven by the profile's knobs (the
//! front door's rejections, keys, 429s, time to first token, thinking then answer tokens at
//! the token rate, drops that just end the TCP connection, upstream errors mid-stream,
//! malformed events, stalls, idle cut-offs). A format only says what its bytes look like.
//!
//! A new format: a `Shape` in its own file, and one line in `SHAPES`.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

use super::http::{self, RequestHead};
use super::server::{LiveProfile, Shared, bump};
use relaytop_core::config::sim_profile::{SimProfile, chance};

/// Every format served over SSE, tried in order for each request head.
pub(crate) static SHAPES: [&(dyn Shape + Sync); 4] = [
    &super::openai_chat::Chat,
    &super::anthropic_messages::Messages,
    &super::openai_responses::Responses,
    &super::gemini::Gemini,
];

/// Largest request body taken.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// How long a request body may take.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a pooled connection may sit idle between requests (unless the profile cuts sooner).
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(90);

/// What the schedule needs of one request, as the format read it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Asked {
    pub model: String,
    /// Characters of every message and instruction (prompt tokens are a quarter of them).
    pub prompt_chars: usize,
    pub max_tokens: Option<u32>,
    /// `false`: answer with the whole response at once (the format's non-streamed shape).
    pub stream: bool,
    /// Whether the closing events carry the usage (chat: `stream_options.include_usage`).
    pub include_usage: bool,
}

/// Why a request is refused before any event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefusalKind {
    /// The key is missing, malformed or unknown.
    Key,
    /// The profile's rate-limit knob.
    RateLimited,
    /// The body could not be read or is not a request of the format.
    BadRequest,
    /// The profile's front-door rejection (`reject_upgrades`): 429, 503, 401, …
    Rejected,
}

/// A refusal, before the format puts it in its own error shape.
#[derive(Clone, Debug)]
pub(crate) struct Refusal {
    pub status: u16,
    pub kind: RefusalKind,
    pub message: String,
    /// Sent as `retry-after-ms` and `Retry-After` by the schedule.
    pub retry_after_ms: Option<u64>,
}

/// What the figures of one response are; the format writes them in its own shape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Usage {
    /// Every prompt token, cached and cache-written ones included.
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    /// Thinking and answer tokens.
    pub completion_tokens: u64,
    pub reasoning_tokens: u64,
    /// `usage.cost` in US dollars, when the profile reports one.
    pub cost_usd: Option<f64>,
}

impl Usage {
    /// The figures as relaytop counts them (cache reads and writes inside the prompt).
    pub(crate) fn tokens(&self) -> relaytop_core::session::Tokens {
        relaytop_core::session::Tokens {
            input: self.prompt_tokens,
            output: self.completion_tokens,
            cached_input: self.cached_tokens,
            cache_write_input: self.cache_write_tokens,
            reasoning_output: self.reasoning_tokens,
            estimated: false,
        }
    }
}

/// Why the response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The answer was whole.
    Stop,
    /// The request's output limit ended it.
    Length,
}

/// One response under way: what the format's events are made of. `seq` and `block` are the
/// format's own counters (Responses' `sequence_number`, Anthropic's content block index).
#[derive(Clone, Debug)]
pub(crate) struct Reply {
    /// Unique per connection and request: `sim{connection}x{request}` (a format adds its prefix).
    pub id: String,
    pub model: String,
    /// Unix seconds.
    pub created: i64,
    pub usage: Usage,
    pub finish: Finish,
    /// Whether the closing events carry the usage.
    pub include_usage: bool,
    pub seq: u64,
    pub block: u32,
    /// Whether thinking came (and its block is open).
    pub thinking_open: bool,
    /// Whether the answer's block is open.
    pub answer_open: bool,
    /// The thinking and the answer streamed so far, for formats whose later events repeat
    /// them (Responses' `….done` events and completed `output`); the format fills them.
    pub thinking_text: String,
    pub answer_text: String,
}

/// What a format's bytes look like. Each method appends whole SSE events (`event: …\n` if the
/// format names them, `data: …\n\n`) to `out`; the schedule writes each as one HTTP chunk.
pub(crate) trait Shape {
    /// Whether this format serves the request (method, path, query).
    fn serves(&self, head: &RequestHead) -> bool;
    /// Reads the request body.
    fn read(&self, head: &RequestHead, body: &[u8]) -> Result<Asked, String>;
    /// The whole HTTP answer to a refusal: status, the format's error body; `retry_after_ms`
    /// headers are added by the schedule through `extra`.
    fn refusal_body(&self, refusal: &Refusal) -> String;
    /// The status a refusal is answered with (Google answers a bad key 400, not 401).
    fn refusal_status(&self, refusal: &Refusal) -> u16 {
        refusal.status
    }
    /// Headers of a refusal beyond `Retry-After` (chat's `x-should-retry`).
    fn refusal_headers(&self, _refusal: &Refusal) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Headers of a 200 stream beyond the content type (rate limits, request ids); each
    /// `Name: value\r\n`. `n` counts the simulator's requests, `tokens` this response's.
    fn stream_headers(&self, reply: &Reply, n: u64, tokens: u64) -> String;
    /// The events before the first token (the role delta, `message_start`, `response.created`).
    fn opening(&self, reply: &mut Reply, out: &mut Vec<String>);
    /// One thinking token.
    fn thinking(&self, reply: &mut Reply, word: &str, out: &mut Vec<String>);
    /// One answer token.
    fn answer(&self, reply: &mut Reply, word: &str, out: &mut Vec<String>);
    /// The upstream failed mid-stream (the profile's error knob): the format's error event.
    fn failure(&self, reply: &mut Reply, out: &mut Vec<String>);
    /// The events that end a whole response (finish reason, usage, the terminal mark).
    fn closing(&self, reply: &mut Reply, out: &mut Vec<String>);
    /// A malformed event (the profile's malformed knob), the `n`-th one.
    fn malformed(&self, n: usize) -> &'static str {
        const MALFORMED: [&str; 2] = [
            "data: {\"truncated\": \"json\n\n",
            "data: not json at all\n\n",
        ];
        MALFORMED[n % MALFORMED.len()]
    }
    /// The body of a non-streamed answer (`Asked::stream` false), the whole text at once;
    /// `None`: the format answers 400.
    fn whole(&self, _reply: &Reply, _text: &str) -> Option<String> {
        None
    }
}

/// The shape whose model list this is (`GET /v1beta/models`: Gemini's; with
/// `anthropic-version`: Anthropic's; else OpenAI's), for its error bodies.
pub(crate) fn shape_of_models(head: &RequestHead) -> &'static (dyn Shape + Sync) {
    if head.path.starts_with("/v1beta") {
        &super::gemini::Gemini
    } else if head.anthropic_version.is_some() {
        &super::anthropic_messages::Messages
    } else {
        &super::openai_chat::Chat
    }
}

/// The shape that serves this request head, if any.
pub(crate) fn shape_for(head: &RequestHead) -> Option<&'static (dyn Shape + Sync)> {
    SHAPES.iter().copied().find(|shape| shape.serves(head))
}

/// Serves a keep-alive HTTP connection whose first request (`head`) a shape serves. Later
/// requests on it are served too, each by its own shape; anything else is answered once and
/// the connection closed.
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
        let live = shared.live_profile();
        let Some(shape) = shape_for(&head) else {
            let answer = super::conn::plain_http_answer(&head, &live.profile, &shared);
            http::respond_and_close(tcp, &answer).await;
            return;
        };
        let body =
            match http::read_body(&mut tcp, &head, &mut buf, MAX_BODY_BYTES, BODY_TIMEOUT).await {
                Ok(body) => body,
                Err(status) => {
                    let message = match status {
                        413 => "request body too large",
                        408 => "request body took too long",
                        _ => "cannot read the request body",
                    };
                    let refusal = Refusal {
                        status,
                        kind: RefusalKind::BadRequest,
                        message: message.to_owned(),
                        retry_after_ms: None,
                    };
                    http::respond_and_close(tcp, &refusal_response(shape, &refusal)).await;
                    return;
                }
            };
        request_number += 1;
        let id = format!("sim{connection_number}x{request_number}");
        let answer = respond(&mut tcp, shape, &head, &body, id, &mut rng, &live, &shared).await;
        match answer {
            Answer::KeepAlive if !head.close => {}
            Answer::KeepAlive => {
                let _ = tcp.shutdown().await;
                return;
            }
            Answer::Close(response) => {
                http::respond_and_close(tcp, &response).await;
                return;
            }
            Answer::Gone => return,
        }
        let idle = live
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

/// The whole HTTP answer to a refusal, in the shape's error format.
pub(crate) fn refusal_response(shape: &(dyn Shape + Sync), refusal: &Refusal) -> String {
    let refusal = &Refusal {
        status: shape.refusal_status(refusal),
        ..refusal.clone()
    };
    let mut headers: Vec<(&'static str, String)> = Vec::new();
    if let Some(ms) = refusal.retry_after_ms {
        headers.push(("retry-after-ms", ms.to_string()));
        headers.push(("Retry-After", ms.div_ceil(1000).to_string()));
    }
    headers.extend(shape.refusal_headers(refusal));
    let borrowed: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    http::json_response(refusal.status, &borrowed, &shape.refusal_body(refusal))
}

/// An SSE event as one HTTP chunk.
pub(crate) fn chunk(event: &str) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", event.len()).into_bytes();
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// `data: JSON\n\n`, with an `event:` line when `name` is given.
pub(crate) fn sse(name: Option<&str>, json: &impl serde::Serialize) -> String {
    // Plain structs of strings and numbers: serializing cannot fail.
    let data = serde_json::to_string(json).unwrap_or_default();
    match name {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

fn push_all(batch: &mut Vec<u8>, events: &mut Vec<String>) {
    for event in events.drain(..) {
        batch.extend_from_slice(&chunk(&event));
    }
}

/// The figures of a response of `sent` answer tokens after `thinking` thinking tokens.
fn usage_of(profile: &SimProfile, prompt_tokens: u64, thinking: u64, sent: u64) -> Usage {
    let cached = (prompt_tokens as f64 * profile.cached_prompt_fraction.clamp(0.0, 1.0)) as u64;
    let written = ((prompt_tokens as f64 * profile.cache_write_fraction.clamp(0.0, 1.0)) as u64)
        .min(prompt_tokens - cached);
    let completion = thinking + sent;
    Usage {
        prompt_tokens,
        cached_tokens: cached,
        cache_write_tokens: written,
        completion_tokens: completion,
        reasoning_tokens: thinking,
        cost_usd: profile
            .usage_cost_per_mtok
            .map(|price| (prompt_tokens + completion) as f64 * price / 1_000_000.0),
    }
}

#[allow(clippy::too_many_arguments)]
async fn respond(
    tcp: &mut TcpStream,
    shape: &(dyn Shape + Sync),
    head: &RequestHead,
    body: &[u8],
    id: String,
    rng: &mut SmallRng,
    live: &LiveProfile,
    shared: &Shared,
) -> Answer {
    let received = Instant::now();
    let profile = live.profile.clone();
    bump(&shared.stats.requests);
    let n = shared
        .stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let refuse = |refusal: Refusal| Answer::Close(refusal_response(shape, &refusal));
    if let Some(rejection) = live.take_upgrade_rejection() {
        bump(&shared.stats.upgrades_rejected);
        let retry_after_ms = rejection
            .retry_after
            .as_deref()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| s * 1000);
        return refuse(Refusal {
            status: rejection.status,
            kind: match rejection.status {
                401 | 403 => RefusalKind::Key,
                429 => RefusalKind::RateLimited,
                _ => RefusalKind::Rejected,
            },
            message: rejection.message().to_owned(),
            retry_after_ms,
        });
    }
    if let Err(why) = http::check_request_key(head, profile.accepted_keys.as_deref()) {
        return refuse(Refusal {
            status: 401,
            kind: RefusalKind::Key,
            message: format!("Incorrect API key provided: {why}"),
            retry_after_ms: None,
        });
    }
    let asked = match shape.read(head, body) {
        Ok(asked) => asked,
        Err(why) => {
            return refuse(Refusal {
                status: 400,
                kind: RefusalKind::BadRequest,
                message: why,
                retry_after_ms: None,
            });
        }
    };
    if let Some(answer) = shared.account.relay_error(&profile, head, &asked.model) {
        return Answer::Close(answer);
    }
    if chance(rng, profile.rate_limit_rate) {
        return refuse(Refusal {
            status: 429,
            kind: RefusalKind::RateLimited,
            message: "Rate limit reached for requests (simulated): retry later".into(),
            retry_after_ms: Some(profile.rate_limit_retry_after_ms),
        });
    }

    let prompt_tokens = (asked.prompt_chars as u64).div_ceil(4);
    let total = asked.max_tokens.map_or(profile.tokens_per_response, |max| {
        max.min(profile.tokens_per_response)
    });
    // Thinking counts against the output limit, as it does upstream.
    let thinking = profile.thinking_tokens.min(total.saturating_sub(1));
    let answer_tokens = total - thinking;
    let finish = if total < profile.tokens_per_response {
        Finish::Length
    } else {
        Finish::Stop
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
    let due_of = |i: u32| {
        interval
            .and_then(|d| d.checked_mul(i))
            .and_then(|offset| first_due.checked_add(offset))
            .unwrap_or(first_due)
    };
    let mut reply = Reply {
        id,
        model: asked.model.clone(),
        created: chrono::Utc::now().timestamp(),
        usage: usage_of(&profile, prompt_tokens, 0, 0),
        finish,
        include_usage: asked.include_usage && profile.send_usage,
        seq: 0,
        block: 0,
        thinking_open: false,
        answer_open: false,
        thinking_text: String::new(),
        answer_text: String::new(),
    };

    if !asked.stream {
        sleep_until(due_of(total)).await;
        let text: String = (0..answer_tokens).map(|i| profile.chunk_word(i)).collect();
        reply.usage = usage_of(
            &profile,
            prompt_tokens,
            u64::from(thinking),
            u64::from(answer_tokens),
        );
        let Some(body) = shape.whole(&reply, &text) else {
            return refuse(Refusal {
                status: 400,
                kind: RefusalKind::BadRequest,
                message: "this endpoint streams: ask with `stream: true`".into(),
                retry_after_ms: None,
            });
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if tcp.write_all(response.as_bytes()).await.is_err() {
            return Answer::Gone;
        }
        shared
            .account
            .charge(&profile, &reply.model, &reply.usage.tokens());
        bump(&shared.stats.responses_completed);
        return Answer::KeepAlive;
    }

    let head_out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
         Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n{}{}\r\n",
        shape.stream_headers(&reply, n, prompt_tokens + u64::from(total)),
        shared.account.request_id_header(&profile)
    );
    let mut events = Vec::new();
    shape.opening(&mut reply, &mut events);
    let mut out = head_out.into_bytes();
    push_all(&mut out, &mut events);
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
        sleep_until(due_of(sent)).await;
        let mut batch = Vec::new();
        if fails {
            shape.failure(&mut reply, &mut events);
            push_all(&mut batch, &mut events);
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
            if due_of(sent) > now || drop_at == Some(sent) {
                break;
            }
            if sent < thinking {
                shape.thinking(&mut reply, profile.thinking_word(sent), &mut events);
            } else {
                shape.answer(&mut reply, profile.chunk_word(sent - thinking), &mut events);
            }
            push_all(&mut batch, &mut events);
            sent += 1;
            if chance(rng, profile.malformed_rate) {
                batch.extend_from_slice(&chunk(shape.malformed(next_malformed)));
                next_malformed += 1;
            }
        }
        if sent >= total {
            reply.usage = usage_of(
                &profile,
                prompt_tokens,
                u64::from(thinking),
                u64::from(answer_tokens),
            );
            shape.closing(&mut reply, &mut events);
            push_all(&mut batch, &mut events);
            batch.extend_from_slice(b"0\r\n\r\n");
            if tcp.write_all(&batch).await.is_err() {
                bump(&shared.stats.responses_dropped);
                return Answer::Gone;
            }
            shared
                .account
                .charge(&profile, &reply.model, &reply.usage.tokens());
            bump(&shared.stats.responses_completed);
            return Answer::KeepAlive;
        }
        if tcp.write_all(&batch).await.is_err() {
            bump(&shared.stats.responses_dropped);
            return Answer::Gone;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_framed() {
        assert_eq!(chunk("data: x\n\n"), b"9\r\ndata: x\n\n\r\n");
    }

    #[test]
    fn usage_keeps_cache_reads_and_writes_inside_the_prompt() {
        let profile = SimProfile {
            cached_prompt_fraction: 0.7,
            cache_write_fraction: 0.7,
            usage_cost_per_mtok: Some(2.0),
            ..SimProfile::default()
        };
        let usage = usage_of(&profile, 100, 4, 10);
        assert_eq!(usage.cached_tokens, 70);
        assert_eq!(usage.cache_write_tokens, 30);
        assert_eq!(usage.completion_tokens, 14);
        assert_eq!(usage.reasoning_tokens, 4);
        assert_eq!(usage.cost_usd, Some(114.0 * 2.0 / 1e6));
    }
}
