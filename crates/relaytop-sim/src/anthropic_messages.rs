//! The simulator's Anthropic Messages shape: `POST /v1/messages` (key in `x-api-key` or
//! `Authorization: Bearer`) answered with Anthropic's event sequence (`message_start` with the
//! prompt's usage, `ping`, a `thinking` block when the profile thinks, then a `text` block,
//! `message_delta` with the stop reason and the cumulative usage, `message_stop`), ids
//! `msg_…`, `anthropic-ratelimit-*` headers, Anthropic error bodies
//! (`{"type":"error","error":{"type","message"}}`), `overloaded_error` for the profile's
//! upstream-error knob, and the whole `message` for `stream: false`. The schedule is
//! `stream`'s. The official Anthropic SDKs read its streams unchanged.

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::http::RequestHead;
use super::stream::{Asked, Finish, Refusal, RefusalKind, Reply, Shape, sse};
use relaytop_core::protocol::anthropic_messages::{MESSAGES_PATH, read_request};

/// The rate limits the simulator reports in `anthropic-ratelimit-*`.
const REQUESTS_PER_MINUTE: u64 = 4_000;
const INPUT_TOKENS_PER_MINUTE: u64 = 2_000_000;
const OUTPUT_TOKENS_PER_MINUTE: u64 = 400_000;
/// A thinking block's signature (opaque to clients).
const SIGNATURE: &str = "EqQBCkYIBxgCKkBzaW11bGF0ZWQgYnkgcmVsYXl0b3Atc2lt";

/// Anthropic Messages.
pub(crate) struct Messages;

/// What the simulator reads of a request besides its conversation.
#[derive(Deserialize)]
struct RequestOut {
    model: String,
    /// Required by Anthropic: a request without it is refused.
    max_tokens: u32,
    #[serde(default)]
    stream: bool,
}

/// `usage` as Anthropic writes it: `input_tokens` excludes the cached and cache-written ones.
#[derive(Serialize)]
struct UsageOut {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

fn usage_out(reply: &Reply, output_tokens: u64) -> UsageOut {
    let u = reply.usage;
    UsageOut {
        input_tokens: u
            .prompt_tokens
            .saturating_sub(u.cached_tokens)
            .saturating_sub(u.cache_write_tokens),
        cache_creation_input_tokens: u.cache_write_tokens,
        cache_read_input_tokens: u.cached_tokens,
        output_tokens,
    }
}

fn stop_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
    }
}

/// Anthropic's error type for a refusal.
fn error_type(refusal: &Refusal) -> &'static str {
    match (refusal.kind, refusal.status) {
        (_, 403) => "permission_error",
        (RefusalKind::Key, _) | (_, 401) => "authentication_error",
        (RefusalKind::RateLimited, _) | (_, 429) => "rate_limit_error",
        (_, 413) => "request_too_large",
        (_, 404) => "not_found_error",
        (_, 503 | 529) => "overloaded_error",
        (_, 500..=599) => "api_error",
        _ => "invalid_request_error",
    }
}

/// `{"type":"error","error":{"type","message"}}`.
fn error_body(kind: &str, message: &str) -> String {
    json!({ "type": "error", "error": { "type": kind, "message": message } }).to_string()
}

impl Messages {
    fn block_start(reply: &Reply, block: serde_json::Value, out: &mut Vec<String>) {
        out.push(sse(
            Some("content_block_start"),
            &json!({ "type": "content_block_start", "index": reply.block, "content_block": block }),
        ));
    }

    fn delta(reply: &Reply, delta: serde_json::Value, out: &mut Vec<String>) {
        out.push(sse(
            Some("content_block_delta"),
            &json!({ "type": "content_block_delta", "index": reply.block, "delta": delta }),
        ));
    }

    fn block_stop(reply: &mut Reply, out: &mut Vec<String>) {
        out.push(sse(
            Some("content_block_stop"),
            &json!({ "type": "content_block_stop", "index": reply.block }),
        ));
        reply.block += 1;
    }

    /// Closes the thinking block, if open (with its signature).
    fn end_thinking(reply: &mut Reply, out: &mut Vec<String>) {
        if reply.thinking_open {
            Self::delta(
                reply,
                json!({ "type": "signature_delta", "signature": SIGNATURE }),
                out,
            );
            Self::block_stop(reply, out);
            reply.thinking_open = false;
        }
    }
}

impl Shape for Messages {
    fn serves(&self, head: &RequestHead) -> bool {
        head.method == "POST" && head.path == MESSAGES_PATH
    }

    fn read(&self, _head: &RequestHead, body: &[u8]) -> Result<Asked, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
        let request: RequestOut = serde_json::from_str(text).map_err(|e| {
            if e.to_string().contains("max_tokens") {
                "max_tokens: Field required".to_owned()
            } else {
                format!("invalid JSON body: {e}")
            }
        })?;
        let (conversation, _) =
            read_request(text).ok_or_else(|| "messages: Field required".to_owned())?;
        if request.max_tokens == 0 {
            return Err("max_tokens: must be greater than or equal to 1".into());
        }
        Ok(Asked {
            prompt_chars: conversation.iter().map(|m| m.content.chars().count()).sum(),
            max_tokens: Some(request.max_tokens),
            stream: request.stream,
            // Anthropic always reports usage; a profile without usage strips it, like relays.
            include_usage: true,
            model: request.model,
        })
    }

    fn refusal_body(&self, refusal: &Refusal) -> String {
        error_body(error_type(refusal), &refusal.message)
    }

    fn refusal_headers(&self, refusal: &Refusal) -> Vec<(&'static str, String)> {
        let retry = matches!(refusal.kind, RefusalKind::RateLimited)
            || matches!(refusal.status, 429 | 500..=599);
        vec![("x-should-retry", retry.to_string())]
    }

    fn stream_headers(&self, reply: &Reply, n: u64, tokens: u64) -> String {
        let reset = (chrono::Utc::now() + chrono::Duration::seconds(60))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let remaining_requests = REQUESTS_PER_MINUTE - (n % REQUESTS_PER_MINUTE);
        let input = reply.usage.prompt_tokens;
        let remaining_input = INPUT_TOKENS_PER_MINUTE.saturating_sub(input);
        let remaining_output =
            OUTPUT_TOKENS_PER_MINUTE.saturating_sub(tokens.saturating_sub(input));
        let tokens_limit = INPUT_TOKENS_PER_MINUTE + OUTPUT_TOKENS_PER_MINUTE;
        let remaining_tokens = tokens_limit.saturating_sub(tokens);
        format!(
            "request-id: req_{id}\r\n\
             anthropic-ratelimit-requests-limit: {REQUESTS_PER_MINUTE}\r\n\
             anthropic-ratelimit-requests-remaining: {remaining_requests}\r\n\
             anthropic-ratelimit-requests-reset: {reset}\r\n\
             anthropic-ratelimit-tokens-limit: {tokens_limit}\r\n\
             anthropic-ratelimit-tokens-remaining: {remaining_tokens}\r\n\
             anthropic-ratelimit-tokens-reset: {reset}\r\n\
             anthropic-ratelimit-input-tokens-limit: {INPUT_TOKENS_PER_MINUTE}\r\n\
             anthropic-ratelimit-input-tokens-remaining: {remaining_input}\r\n\
             anthropic-ratelimit-input-tokens-reset: {reset}\r\n\
             anthropic-ratelimit-output-tokens-limit: {OUTPUT_TOKENS_PER_MINUTE}\r\n\
             anthropic-ratelimit-output-tokens-remaining: {remaining_output}\r\n\
             anthropic-ratelimit-output-tokens-reset: {reset}\r\n",
            id = reply.id
        )
    }

    fn opening(&self, reply: &mut Reply, out: &mut Vec<String>) {
        let mut message = json!({
            "id": format!("msg_{}", reply.id),
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": reply.model,
            "stop_reason": null,
            "stop_sequence": null,
        });
        if reply.include_usage {
            message["usage"] = json!(usage_out(reply, 1));
        }
        out.push(sse(
            Some("message_start"),
            &json!({ "type": "message_start", "message": message }),
        ));
        out.push(sse(Some("ping"), &json!({ "type": "ping" })));
    }

    fn thinking(&self, reply: &mut Reply, word: &str, out: &mut Vec<String>) {
        if !reply.thinking_open {
            Self::block_start(
                reply,
                json!({ "type": "thinking", "thinking": "", "signature": "" }),
                out,
            );
            reply.thinking_open = true;
        }
        Self::delta(
            reply,
            json!({ "type": "thinking_delta", "thinking": word }),
            out,
        );
    }

    fn answer(&self, reply: &mut Reply, word: &str, out: &mut Vec<String>) {
        Self::end_thinking(reply, out);
        if !reply.answer_open {
            Self::block_start(reply, json!({ "type": "text", "text": "" }), out);
            reply.answer_open = true;
        }
        Self::delta(reply, json!({ "type": "text_delta", "text": word }), out);
    }

    fn failure(&self, _reply: &mut Reply, out: &mut Vec<String>) {
        out.push(format!(
            "event: error\ndata: {}\n\n",
            error_body("overloaded_error", "Overloaded")
        ));
    }

    fn closing(&self, reply: &mut Reply, out: &mut Vec<String>) {
        Self::end_thinking(reply, out);
        if reply.answer_open {
            Self::block_stop(reply, out);
            reply.answer_open = false;
        }
        let mut delta = json!({
            "type": "message_delta",
            "delta": { "stop_reason": stop_reason(reply.finish), "stop_sequence": null },
        });
        if reply.include_usage {
            // Cumulative, and repeating the input counts as the newer API does.
            delta["usage"] = json!(usage_out(reply, reply.usage.completion_tokens));
        }
        out.push(sse(Some("message_delta"), &delta));
        out.push(sse(
            Some("message_stop"),
            &json!({ "type": "message_stop" }),
        ));
    }

    fn whole(&self, reply: &Reply, text: &str) -> Option<String> {
        Some(
            json!({
                "id": format!("msg_{}", reply.id),
                "type": "message",
                "role": "assistant",
                "content": [{ "type": "text", "text": text }],
                "model": reply.model,
                "stop_reason": stop_reason(reply.finish),
                "stop_sequence": null,
                "usage": usage_out(reply, reply.usage.completion_tokens),
            })
            .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Usage;
    use relaytop_core::protocol::anthropic_messages::decode::MessagesDecoder;
    use relaytop_core::session::EventKind;
    use std::time::Duration;

    fn reply() -> Reply {
        Reply {
            id: "sim1x1".into(),
            model: "claude-sonnet-4-5".into(),
            created: 0,
            usage: Usage {
                prompt_tokens: 100,
                cached_tokens: 60,
                cache_write_tokens: 30,
                completion_tokens: 3,
                reasoning_tokens: 1,
                cost_usd: None,
            },
            finish: Finish::Stop,
            include_usage: true,
            seq: 0,
            block: 0,
            thinking_open: false,
            answer_open: false,
            thinking_text: String::new(),
            answer_text: String::new(),
        }
    }

    #[test]
    fn the_stream_reads_back_through_the_codec() {
        let mut reply = reply();
        let mut out = Vec::new();
        Messages.opening(&mut reply, &mut out);
        Messages.thinking(&mut reply, "hmm ", &mut out);
        Messages.answer(&mut reply, "Hello", &mut out);
        Messages.answer(&mut reply, "!", &mut out);
        Messages.closing(&mut reply, &mut out);
        let body: String = out.concat();
        assert!(body.contains("\"index\":1"), "the text block is the second");
        let mut d = MessagesDecoder::new();
        d.request_sent(Duration::ZERO, "m", 1);
        let mut events = Vec::new();
        d.on_bytes(
            Duration::from_millis(1),
            body.as_bytes(),
            &mut |e| events.push(e),
            &mut |_| {},
        );
        let done = events.iter().find_map(|e| match e {
            EventKind::Done(done) => Some((done.tokens, done.finish_reason.clone())),
            _ => None,
        });
        let (tokens, finish) = done.unwrap();
        assert_eq!(
            (tokens.input, tokens.cached_input, tokens.cache_write_input),
            (100, 60, 30)
        );
        assert_eq!(tokens.output, 3);
        assert_eq!(finish.as_deref(), Some("end_turn"));
        assert!(
            !events.iter().any(|e| matches!(
                e,
                EventKind::Malformed { .. } | EventKind::UnknownFrame { .. }
            )),
            "{events:?}"
        );
    }

    #[test]
    fn refusals_in_anthropic_words() {
        let refusal = |status, kind| Refusal {
            status,
            kind,
            message: "m".into(),
            retry_after_ms: None,
        };
        let body = Messages.refusal_body(&refusal(401, RefusalKind::Key));
        assert_eq!(
            body,
            r#"{"error":{"message":"m","type":"authentication_error"},"type":"error"}"#
        );
        assert!(
            Messages
                .refusal_body(&refusal(529, RefusalKind::Rejected))
                .contains("overloaded_error")
        );
        assert!(
            Messages
                .refusal_body(&refusal(429, RefusalKind::RateLimited))
                .contains("rate_limit_error")
        );
    }

    #[test]
    fn a_request_without_max_tokens_is_refused() {
        let head = RequestHead::default();
        let err = Messages
            .read(
                &head,
                br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            )
            .err();
        assert_eq!(err.as_deref(), Some("max_tokens: Field required"));
        let asked = Messages
            .read(
                &head,
                br#"{"model":"m","max_tokens":5,"system":"sys","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":true}"#,
            )
            .unwrap();
        assert_eq!(
            (asked.prompt_chars, asked.max_tokens, asked.stream),
            (5, Some(5), true)
        );
    }
}
