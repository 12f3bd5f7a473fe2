//! openai-sse's format on the shared stream decoder (`protocol::stream_decoder`), so live
//! sessions and replay read it the same: the first content delta (or reasoning delta) is the
//! first token, the usage chunk's tokens (cached, reasoning and `usage.cost` included),
//! mid-stream errors, `[DONE]` the terminal mark; a body that ends without `[DONE]` is done if
//! a `finish_reason` or the usage came, cut otherwise. Pure: no socket, no clock.

use crate::protocol::openai_chat::policy::error_kind;
use crate::protocol::openai_chat::wire::{StreamData, Usage};
use crate::protocol::stream_decoder::{SseFormat, Step, StreamDecoder, StreamUsage};
pub use crate::transport::http_stream::SseInbound;

/// Decodes openai-sse response bodies into session events (see `StreamDecoder`).
pub type SseDecoder = StreamDecoder<ChatFormat>;

/// What Chat Completions events mean, between `[DONE]`s.
#[derive(Clone, Debug, Default)]
pub struct ChatFormat {
    usage: Option<Usage>,
    finish_reason: Option<String>,
}

impl ChatFormat {
    fn done(&mut self) -> Step<'static> {
        Step::Done {
            usage: self.usage.take().map(|u| StreamUsage {
                input: u.prompt_tokens,
                output: u.completion_tokens,
                cached_input: u.cached_tokens,
                cache_write_input: 0,
                reasoning_output: u.reasoning_tokens,
                cost_usd: u.cost_usd,
            }),
            // new-api after an upstream timeout: the usage and `[DONE]` come, but no choice
            // ever said why it finished: the reply was cut.
            cut: self
                .finish_reason
                .is_none()
                .then(|| "no finish_reason: the usage and [DONE] came, the reply was cut".into()),
            finish_reason: self.finish_reason.take(),
        }
    }
}

impl SseFormat for ChatFormat {
    fn reset(&mut self) {
        *self = Self::default();
    }

    fn on_event<'a>(
        &mut self,
        event: Option<&str>,
        data: &'a str,
        step: &mut impl FnMut(Step<'a>),
    ) {
        let parsed = match StreamData::parse(event, data) {
            Ok(parsed) => parsed,
            Err(error) => return step(Step::Malformed(error.to_string())),
        };
        match parsed {
            StreamData::Done => step(self.done()),
            StreamData::Chunk(chunk) => {
                if let Some(usage) = chunk.usage {
                    self.usage = Some(usage);
                }
                if let Some(reason) = chunk.finish_reason {
                    self.finish_reason = Some(reason.into_owned());
                }
                if let Some(thought) = chunk.reasoning {
                    step(Step::Thinking(thought));
                }
                if let Some(text) = chunk.content {
                    step(Step::Answer(text));
                }
            }
            StreamData::Error(error) => {
                let fatal = error.is_bad_key() || error.is_insufficient_quota();
                step(Step::Failed {
                    kind: error_kind(&error),
                    message: error.summary(),
                    fatal,
                });
            }
        }
    }

    fn on_body_end(&mut self) -> Option<Step<'static>> {
        // A relay that never sends `[DONE]`: the stream had finished all the same.
        (self.finish_reason.is_some() || self.usage.is_some()).then(|| self.done())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::EventKind;
    use std::time::Duration;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn decode(d: &mut SseDecoder, at: u64, bytes: &[u8]) -> (SseInbound, Vec<EventKind>) {
        let mut events = Vec::new();
        let inbound = d.on_bytes(ms(at), bytes, &mut |e| events.push(e), &mut |_| {});
        (inbound, events)
    }

    #[test]
    fn ttft_is_the_first_content_delta_not_the_role_delta() {
        let mut d = SseDecoder::new();
        d.request_sent(ms(0), "gpt-4o-mini", 3);
        let (i, e) = decode(
            &mut d,
            50,
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        );
        assert_eq!(i, SseInbound::Nothing);
        assert!(e.is_empty(), "{e:?}");
        let (i, e) = decode(
            &mut d,
            200,
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        );
        assert_eq!(i, SseInbound::Text);
        assert_eq!(
            e[0],
            EventKind::FirstToken {
                request: 1,
                ttft_us: 200_000
            }
        );
    }

    #[test]
    fn a_cut_stream_and_a_stream_without_done() {
        let mut d = SseDecoder::new();
        d.request_sent(ms(0), "m", 1);
        decode(
            &mut d,
            1,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n",
        );
        let inbound = d.on_end(ms(2), &mut |_| {}, &mut |_| {});
        assert_eq!(inbound, SseInbound::StreamCut);

        d.request_sent(ms(10), "m", 1);
        decode(
            &mut d,
            11,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n",
        );
        let mut events = Vec::new();
        let inbound = d.on_end(ms(12), &mut |e| events.push(e), &mut |_| {});
        assert_eq!(inbound, SseInbound::ResponseDone);
        assert!(matches!(
            &events[0],
            EventKind::Done(done)
                if done.tokens.estimated && done.finish_reason.as_deref() == Some("stop")
        ));
    }

    #[test]
    fn a_cancel_ends_the_response_with_an_estimate() {
        let mut d = SseDecoder::new();
        d.request_sent(ms(0), "m", 4);
        decode(
            &mut d,
            1,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"Hello there\"}}]}\n\n",
        );
        let mut events = Vec::new();
        assert_eq!(
            d.cancel(ms(5), &mut |e| events.push(e)),
            SseInbound::ResponseDone
        );
        assert!(matches!(
            &events[0],
            EventKind::Done(done)
                if done.finish_reason.as_deref() == Some("cancelled") && done.tokens.estimated
        ));
        assert_eq!(d.in_flight(), None);
    }
}
