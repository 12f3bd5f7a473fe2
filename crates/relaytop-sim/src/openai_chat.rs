//! The simulator's chat completions shape: `POST /v1/chat/completions` answered with a stream
//! shaped like OpenAI's (role delta, `reasoning_content` deltas when the profile thinks,
//! content deltas, the finish chunk, the usage chunk when asked, `[DONE]`), OpenAI error
//! bodies, `x-ratelimit-*`, `retry-after-ms` and `x-should-retry` headers, and the whole
//! `chat.completion` for `stream: false`. The schedule is `stream`'s. The official OpenAI SDKs
//! read its streams unchanged.

use serde::Serialize;

use super::http::{self, RequestHead};
use super::stream::{Asked, Finish, Refusal, RefusalKind, Reply, Shape, sse};
use relaytop_core::protocol::openai_chat::{CHAT_COMPLETIONS_PATH, ChatRequest};

/// The rate limits the simulator reports in `x-ratelimit-*`.
const REQUESTS_PER_MINUTE: u64 = 10_000;
const TOKENS_PER_MINUTE: u64 = 2_000_000;
/// The malformed events `malformed_rate` injects, in turn.
const MALFORMED_EVENTS: [&str; 2] = [
    "data: {\"choices\":[{\"delta\":{\"content\":\n\n",
    "data: not json at all\n\n",
];

/// OpenAI Chat Completions.
pub(crate) struct Chat;

/// One `chat.completion.chunk`.
#[derive(Serialize)]
struct ChunkOut<'a> {
    id: String,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
}

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedOut,
    completion_tokens_details: ReasoningOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<f64>,
}

#[derive(Serialize)]
struct CachedOut {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ReasoningOut {
    reasoning_tokens: u64,
}

fn usage_out(reply: &Reply) -> UsageOut {
    let u = reply.usage;
    UsageOut {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
        prompt_tokens_details: CachedOut {
            cached_tokens: u.cached_tokens,
        },
        completion_tokens_details: ReasoningOut {
            reasoning_tokens: u.reasoning_tokens,
        },
        cost: u.cost_usd,
    }
}

fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

impl Chat {
    fn chunk<'a>(
        reply: &'a Reply,
        delta: DeltaOut<'a>,
        finish: Option<&'a str>,
        usage: Option<UsageOut>,
    ) -> String {
        let choices = if usage.is_some() && finish.is_none() && delta.content.is_none() {
            Vec::new()
        } else {
            vec![ChoiceOut {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }]
        };
        sse(
            None,
            &ChunkOut {
                id: format!("chatcmpl-{}", reply.id),
                object: "chat.completion.chunk",
                created: reply.created,
                model: &reply.model,
                system_fingerprint: "fp_relaytop_sim",
                choices,
                usage,
            },
        )
    }
}

impl Shape for Chat {
    fn serves(&self, head: &RequestHead) -> bool {
        head.method == "POST" && head.path == CHAT_COMPLETIONS_PATH
    }

    fn read(&self, _head: &RequestHead, body: &[u8]) -> Result<Asked, String> {
        let request: ChatRequest = serde_json::from_slice(body)
            .map_err(|e| format!("We could not parse the JSON body of your request: {e}"))?;
        Ok(Asked {
            prompt_chars: request
                .messages
                .iter()
                .map(|m| m.content.chars().count())
                .sum(),
            max_tokens: request.max_tokens,
            stream: request.stream,
            include_usage: request.stream_options.is_some_and(|o| o.include_usage),
            model: request.model,
        })
    }

    fn refusal_body(&self, refusal: &Refusal) -> String {
        let (kind, code) = match (refusal.kind, refusal.status) {
            (RefusalKind::RateLimited, _) | (_, 429) => ("requests", Some("rate_limit_exceeded")),
            (RefusalKind::Key, _) | (_, 401 | 403) => {
                ("invalid_request_error", Some("invalid_api_key"))
            }
            (_, 500..=599) => ("server_error", None),
            _ => ("invalid_request_error", None),
        };
        http::openai_error_body(&refusal.message, kind, code)
    }

    fn refusal_headers(&self, refusal: &Refusal) -> Vec<(&'static str, String)> {
        if refusal.kind == RefusalKind::RateLimited {
            vec![("x-should-retry", "true".into())]
        } else {
            Vec::new()
        }
    }

    fn stream_headers(&self, reply: &Reply, n: u64, tokens: u64) -> String {
        let remaining_requests = REQUESTS_PER_MINUTE - (n % REQUESTS_PER_MINUTE);
        let remaining_tokens = TOKENS_PER_MINUTE.saturating_sub(tokens % TOKENS_PER_MINUTE);
        format!(
            "x-request-id: req_{}\r\nopenai-processing-ms: 1\r\n\
             x-ratelimit-limit-requests: {REQUESTS_PER_MINUTE}\r\n\
             x-ratelimit-remaining-requests: {remaining_requests}\r\n\
             x-ratelimit-reset-requests: 6ms\r\n\
             x-ratelimit-limit-tokens: {TOKENS_PER_MINUTE}\r\n\
             x-ratelimit-remaining-tokens: {remaining_tokens}\r\n\
             x-ratelimit-reset-tokens: 0s\r\n",
            reply.id
        )
    }

    fn opening(&self, reply: &mut Reply, out: &mut Vec<String>) {
        let delta = DeltaOut {
            role: Some("assistant"),
            content: Some(""),
            ..DeltaOut::default()
        };
        out.push(Self::chunk(reply, delta, None, None));
    }

    fn thinking(&self, reply: &mut Reply, word: &str, out: &mut Vec<String>) {
        let delta = DeltaOut {
            reasoning_content: Some(word),
            ..DeltaOut::default()
        };
        out.push(Self::chunk(reply, delta, None, None));
    }

    fn answer(&self, reply: &mut Reply, word: &str, out: &mut Vec<String>) {
        let delta = DeltaOut {
            content: Some(word),
            ..DeltaOut::default()
        };
        out.push(Self::chunk(reply, delta, None, None));
    }

    fn failure(&self, _reply: &mut Reply, out: &mut Vec<String>) {
        let error = http::openai_error_body(
            "The upstream model failed (simulated)",
            "server_error",
            Some("upstream_error"),
        );
        out.push(format!("event: error\ndata: {error}\n\n"));
    }

    fn closing(&self, reply: &mut Reply, out: &mut Vec<String>) {
        let finish = finish_reason(reply.finish);
        out.push(Self::chunk(reply, DeltaOut::default(), Some(finish), None));
        if reply.include_usage {
            let usage = usage_out(reply);
            out.push(Self::chunk(reply, DeltaOut::default(), None, Some(usage)));
        }
        out.push("data: [DONE]\n\n".to_owned());
    }

    fn malformed(&self, n: usize) -> &'static str {
        MALFORMED_EVENTS[n % MALFORMED_EVENTS.len()]
    }

    fn whole(&self, reply: &Reply, text: &str) -> Option<String> {
        Some(
            serde_json::json!({
                "id": format!("chatcmpl-{}", reply.id),
                "object": "chat.completion",
                "created": reply.created,
                "model": reply.model,
                "choices": [{
                    "index": 0,
                    "message": { "role": "assistant", "content": text, "refusal": null },
                    "logprobs": null,
                    "finish_reason": finish_reason(reply.finish),
                }],
                "usage": usage_out(reply),
            })
            .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_events_are_malformed() {
        use relaytop_core::protocol::openai_chat::{SseBuffer, StreamData};
        for n in 0..2 {
            let event = Chat.malformed(n);
            let mut buffer = SseBuffer::new();
            buffer.push(event.as_bytes());
            let event = buffer.next_event().unwrap().unwrap();
            assert!(StreamData::parse(event.event, &event.data).is_err());
        }
    }
}
