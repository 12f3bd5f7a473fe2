//! Gemini's format on the shared stream decoder (`protocol::stream_decoder`), so live
//! sessions and replay read it the same: each event is a whole `GenerateContentResponse`;
//! `thought` parts (and `functionCall` parts) are thinking, other text parts the answer; the
//! last `usageMetadata` wins; an in-stream `error` object or a blocked prompt fails the
//! response. Gemini has no terminal mark: a body that ends after a `finishReason` is done,
//! one that ends without any is cut. Pure: no socket, no clock.

use std::borrow::Cow;

use crate::protocol::gemini::wire::{
    ChunkPart, ErrorMeaning, GeminiError, StreamData, UsageMetadata, shorten,
};
use crate::protocol::stream_decoder::{SseFormat, Step, StreamDecoder, StreamUsage};
use crate::session::ErrorKind;
pub use crate::transport::http_stream::SseInbound;

/// Decodes Gemini response bodies into session events (see `StreamDecoder`).
pub type GeminiDecoder = StreamDecoder<GeminiFormat>;

/// What Gemini events mean, within one response.
#[derive(Clone, Debug, Default)]
pub struct GeminiFormat {
    /// The last `usageMetadata` so far (every chunk may carry one; the last wins).
    usage: Option<UsageMetadata>,
    /// The first candidate's `finishReason`, once one came.
    finish_reason: Option<String>,
}

/// Gemini's usage as the shared decoder counts it: input includes the cached tokens, output
/// is the answer's tokens and the thoughts'.
pub fn stream_usage(u: UsageMetadata) -> StreamUsage {
    StreamUsage {
        input: u.prompt.saturating_add(u.tool_use_prompt),
        output: u.candidates.saturating_add(u.thoughts),
        cached_input: u.cached,
        cache_write_input: 0,
        reasoning_output: u.thoughts,
        cost_usd: None,
    }
}

/// The session's kind of an error, and whether retrying cannot help.
pub fn error_kind(error: &GeminiError<'_>) -> (ErrorKind, bool) {
    match error.meaning() {
        ErrorMeaning::BadKey => (ErrorKind::Auth, true),
        ErrorMeaning::NoQuota => (ErrorKind::RateLimited, true),
        ErrorMeaning::RateLimited => (ErrorKind::RateLimited, false),
        ErrorMeaning::Overloaded => (ErrorKind::Overloaded, false),
        ErrorMeaning::InvalidRequest => (ErrorKind::InvalidRequest, false),
        ErrorMeaning::Upstream => (ErrorKind::Upstream, false),
    }
}

impl SseFormat for GeminiFormat {
    fn reset(&mut self) {
        *self = Self::default();
    }

    fn on_event<'a>(
        &mut self,
        _event: Option<&str>,
        data: &'a str,
        step: &mut impl FnMut(Step<'a>),
    ) {
        // Not Gemini's, but relays that translate from chat completions send them: the end
        // is the body's end all the same.
        if matches!(data.trim(), "" | "[DONE]") {
            return;
        }
        let chunk = match StreamData::parse(data) {
            Ok(StreamData::Chunk(chunk)) => chunk,
            Ok(StreamData::Error(error)) => {
                let (kind, fatal) = error_kind(&error);
                return step(Step::Failed {
                    kind,
                    message: error.summary(),
                    fatal,
                });
            }
            Err(error) => return step(Step::Malformed(error.to_string())),
        };
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        if !chunk.has_candidates
            && let Some(reason) = chunk.block_reason
        {
            let message = match chunk.block_message {
                Some(detail) if !detail.is_empty() => {
                    format!("blocked: {reason} ({})", shorten(&detail))
                }
                _ => format!("blocked: {}", shorten(&reason)),
            };
            return step(Step::Failed {
                kind: ErrorKind::InvalidRequest,
                message,
                fatal: false,
            });
        }
        for part in chunk.parts {
            step(match part {
                ChunkPart::Text(text) => Step::Answer(text),
                ChunkPart::Thought(text) => Step::Thinking(text),
                // A tool call is output before any answer: it counts for the first token.
                ChunkPart::FunctionCall(name) => Step::Thinking(name),
            });
        }
        if let Some(reason) = chunk.finish_reason {
            self.finish_reason = Some(Cow::into_owned(reason));
        }
    }

    fn on_body_end(&mut self) -> Option<Step<'static>> {
        // No terminal mark: the stream closes. It finished if a `finishReason` came.
        let finish_reason = self.finish_reason.take()?;
        Some(Step::Done {
            usage: self.usage.take().map(stream_usage),
            finish_reason: Some(finish_reason),
            cut: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Completed, EventKind};
    use std::time::Duration;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn decode(d: &mut GeminiDecoder, at: u64, bytes: &[u8]) -> (SseInbound, Vec<EventKind>) {
        let mut events = Vec::new();
        let inbound = d.on_bytes(ms(at), bytes, &mut |e| events.push(e), &mut |_| {});
        (inbound, events)
    }

    #[test]
    fn thoughts_first_then_the_answer_and_the_last_usage() {
        let mut d = GeminiDecoder::new();
        d.request_sent(ms(0), "gemini-2.5-flash", 3);
        let (i, e) = decode(
            &mut d,
            100,
            br#"data: {"candidates":[{"content":{"parts":[{"text":"Hmm","thought":true}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":4,"thoughtsTokenCount":9}}

"#,
        );
        assert_eq!(i, SseInbound::Nothing);
        assert_eq!(
            e,
            [EventKind::FirstToken {
                request: 1,
                ttft_us: 100_000
            }]
        );
        let (i, _) = decode(
            &mut d,
            250,
            b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":1,\"thoughtsTokenCount\":9,\"cachedContentTokenCount\":2,\"totalTokenCount\":14}}\r\n\r\n",
        );
        assert_eq!(i, SseInbound::Text);
        let mut events = Vec::new();
        assert_eq!(
            d.on_end(ms(300), &mut |e| events.push(e), &mut |_| {}),
            SseInbound::ResponseDone
        );
        let EventKind::Done(done) = &events[0] else {
            panic!("{events:?}");
        };
        let Completed {
            ttft_us,
            answer_us,
            tokens,
            finish_reason,
            total_us,
            ..
        } = &**done;
        assert_eq!(*ttft_us, Some(100_000));
        assert_eq!(*answer_us, Some(250_000));
        assert_eq!(*total_us, 300_000);
        assert_eq!(
            (
                tokens.input,
                tokens.output,
                tokens.cached_input,
                tokens.reasoning_output,
                tokens.estimated
            ),
            (4, 10, 2, 9, false)
        );
        assert_eq!(finish_reason.as_deref(), Some("STOP"));
    }

    #[test]
    fn no_finish_reason_is_a_cut_and_errors_fail() {
        let mut d = GeminiDecoder::new();
        d.request_sent(ms(0), "m", 1);
        decode(
            &mut d,
            1,
            b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}],\"usageMetadata\":{\"promptTokenCount\":1}}\n\n",
        );
        assert_eq!(
            d.on_end(ms(2), &mut |_| {}, &mut |_| {}),
            SseInbound::StreamCut
        );

        d.request_sent(ms(10), "m", 1);
        let (i, e) = decode(
            &mut d,
            11,
            b"data: {\"error\":{\"code\":401,\"message\":\"Request had invalid authentication credentials.\",\"status\":\"UNAUTHENTICATED\"}}\n\n",
        );
        assert!(
            matches!(
                i,
                SseInbound::ResponseFailed {
                    kind: ErrorKind::Auth,
                    fatal: true,
                    ..
                }
            ),
            "{i:?}"
        );
        assert!(e.iter().any(|e| matches!(
            e,
            EventKind::Error {
                retryable: false,
                ..
            }
        )));

        d.request_sent(ms(20), "m", 1);
        let (i, _) = decode(
            &mut d,
            21,
            b"data: {\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},\"usageMetadata\":{\"promptTokenCount\":5,\"totalTokenCount\":5}}\n\n",
        );
        assert_eq!(
            i,
            SseInbound::ResponseFailed {
                kind: ErrorKind::InvalidRequest,
                message: "blocked: PROHIBITED_CONTENT".into(),
                fatal: false
            }
        );
    }

    #[test]
    fn a_function_call_is_the_first_token() {
        let mut d = GeminiDecoder::new();
        d.request_sent(ms(0), "m", 1);
        let (_, e) = decode(
            &mut d,
            40,
            b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":{}}}]},\"finishReason\":\"STOP\"}]}\n\n",
        );
        assert_eq!(
            e,
            [EventKind::FirstToken {
                request: 1,
                ttft_us: 40_000
            }]
        );
        let mut events = Vec::new();
        assert_eq!(
            d.on_end(ms(50), &mut |e| events.push(e), &mut |_| {}),
            SseInbound::ResponseDone
        );
    }

    #[test]
    fn a_relay_s_done_sentinel_and_empty_data_are_nothing() {
        let mut d = GeminiDecoder::new();
        d.request_sent(ms(0), "m", 1);
        let (_, e) = decode(
            &mut d,
            1,
            b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]},\"finishReason\":\"STOP\"}]}\n\ndata: [DONE]\n\ndata:\n\n",
        );
        assert!(
            !e.iter().any(|e| matches!(e, EventKind::Malformed { .. })),
            "{e:?}"
        );
        assert_eq!(
            d.on_end(ms(2), &mut |_| {}, &mut |_| {}),
            SseInbound::ResponseDone
        );
    }

    #[test]
    fn garbage_is_malformed_never_fatal() {
        let mut d = GeminiDecoder::new();
        d.request_sent(ms(0), "m", 1);
        for junk in [
            &b"data: {\n\n"[..],
            b"data: [1,2]\n\n",
            b"data: {\"candidates\":\"x\"}\n\n",
            b"data: \xff\xfe\n\n",
            b"data: null\n\n",
        ] {
            let (i, e) = decode(&mut d, 1, junk);
            assert_eq!(i, SseInbound::Nothing);
            assert!(
                e.iter().all(|e| matches!(e, EventKind::Malformed { .. })),
                "{e:?}"
            );
        }
        assert_eq!(d.in_flight(), Some(1));
    }
}
