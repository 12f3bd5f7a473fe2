//! anthropic-messages's format on the shared stream decoder (`protocol::stream_decoder`), so
//! live sessions and replay read it the same: the first `content_block_delta` (text, thinking
//! or a tool call's arguments) is the first token and the first `text_delta` the first answer
//! token; the usage of `message_start` and the cumulative `message_delta` (the last count
//! wins, never a sum); `error` events fail the response; `message_stop` is the terminal mark,
//! and a body that ends without it is done if a `message_delta` gave the stop reason, cut
//! otherwise. Pure: no socket, no clock.

use crate::protocol::anthropic_messages::policy::stream_error_kind;
use crate::protocol::anthropic_messages::wire::{Delta, EventUsage, MessagesEvent};
use crate::protocol::stream_decoder::{SseFormat, Step, StreamDecoder, StreamUsage};
pub use crate::transport::http_stream::SseInbound;

/// Decodes Anthropic Messages response bodies into session events (see `StreamDecoder`).
pub type MessagesDecoder = StreamDecoder<MessagesFormat>;

/// What Anthropic Messages events mean, between `message_start` and `message_stop`.
#[derive(Clone, Debug, Default)]
pub struct MessagesFormat {
    /// The usage so far: each count the last one reported.
    usage: Option<EventUsage>,
    /// `message_delta.delta.stop_reason`.
    stop_reason: Option<String>,
}

impl MessagesFormat {
    /// Takes a reported usage: each count present replaces the one before (cumulative
    /// counts), except that a later zero input count does not erase a real one (relays that
    /// repeat the fields in `message_delta` without counting them there).
    fn take_usage(&mut self, new: EventUsage) {
        let old = self.usage.unwrap_or_default();
        let input = |new: Option<u64>, old: Option<u64>| match (new, old) {
            (Some(0), Some(old)) => Some(old),
            (Some(new), _) => Some(new),
            (None, old) => old,
        };
        self.usage = Some(EventUsage {
            input_tokens: input(new.input_tokens, old.input_tokens),
            output_tokens: new.output_tokens.or(old.output_tokens),
            cache_creation_input_tokens: input(
                new.cache_creation_input_tokens,
                old.cache_creation_input_tokens,
            ),
            cache_read_input_tokens: input(
                new.cache_read_input_tokens,
                old.cache_read_input_tokens,
            ),
        });
    }

    fn done(&mut self) -> Step<'static> {
        Step::Done {
            usage: self.usage.take().map(|u| {
                let cache_read = u.cache_read_input_tokens.unwrap_or(0);
                let cache_write = u.cache_creation_input_tokens.unwrap_or(0);
                StreamUsage {
                    input: u
                        .input_tokens
                        .unwrap_or(0)
                        .saturating_add(cache_read)
                        .saturating_add(cache_write),
                    output: u.output_tokens.unwrap_or(0),
                    cached_input: cache_read,
                    cache_write_input: cache_write,
                    reasoning_output: 0,
                    cost_usd: None,
                }
            }),
            cut: self
                .stop_reason
                .is_none()
                .then(|| "no stop_reason: message_stop came, the reply was cut".into()),
            finish_reason: self.stop_reason.take(),
        }
    }
}

impl SseFormat for MessagesFormat {
    fn reset(&mut self) {
        *self = Self::default();
    }

    fn on_event<'a>(
        &mut self,
        event: Option<&str>,
        data: &'a str,
        step: &mut impl FnMut(Step<'a>),
    ) {
        if data.trim() == "[DONE]" {
            // A relay that converted an OpenAI stream and kept its end: done if the stop
            // reason came (as at the body's end), else nothing to say yet.
            if let Some(done) = self.on_body_end() {
                step(done);
            }
            return;
        }
        let parsed = match MessagesEvent::parse(event, data) {
            Ok(parsed) => parsed,
            Err(error) => return step(Step::Malformed(error.to_string())),
        };
        match parsed {
            MessagesEvent::MessageStart { usage } => {
                if let Some(usage) = usage {
                    self.take_usage(usage);
                }
            }
            MessagesEvent::BlockStart { text, thinking } => {
                // Anthropic's blocks start empty; some relays put the first text here.
                if let Some(thought) = thinking.filter(|t| !t.is_empty()) {
                    step(Step::Thinking(thought));
                }
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    step(Step::Answer(text));
                }
            }
            MessagesEvent::Delta(delta) => match delta {
                Delta::Text(text) => step(Step::Answer(text)),
                // A tool call's arguments count for the first token, never as answer text.
                Delta::Thinking(text) | Delta::InputJson(text) => step(Step::Thinking(text)),
                Delta::Signature | Delta::Citations => {}
                Delta::Unknown(kind) => step(Step::Unknown(format!(
                    "content_block_delta/{}",
                    kind.as_ref()
                ))),
            },
            MessagesEvent::BlockStop | MessagesEvent::Ping => {}
            MessagesEvent::MessageDelta { stop_reason, usage } => {
                if let Some(reason) = stop_reason {
                    self.stop_reason = Some(reason.into_owned());
                }
                if let Some(usage) = usage {
                    self.take_usage(usage);
                }
            }
            MessagesEvent::MessageStop => step(self.done()),
            MessagesEvent::Error(error) => {
                let (kind, fatal) = stream_error_kind(&error);
                step(Step::Failed {
                    kind,
                    message: error.summary(),
                    fatal,
                });
            }
            MessagesEvent::Unknown(kind) => step(Step::Unknown(kind.into_owned())),
        }
    }

    fn on_body_end(&mut self) -> Option<Step<'static>> {
        // A relay that drops `message_stop`: the answer was complete if the stop reason came.
        self.stop_reason.is_some().then(|| self.done())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(format: &mut MessagesFormat, events: &[&'static str]) -> Vec<Step<'static>> {
        let mut out = Vec::new();
        for data in events {
            format.on_event(None, data, &mut |s| out.push(s));
        }
        out
    }

    #[test]
    fn a_done_sentinel_ends_only_a_finished_answer() {
        let mut f = MessagesFormat::default();
        assert_eq!(steps(&mut f, &["[DONE]"]), []);
        let out = steps(
            &mut f,
            &[
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}}"#,
                "[DONE]",
            ],
        );
        assert!(matches!(
            &out[..],
            [Step::Done { usage: Some(u), finish_reason: Some(r), cut: None }] if u.output == 4 && r == "end_turn"
        ));
    }

    #[test]
    fn a_later_zero_does_not_erase_the_input_count() {
        let mut f = MessagesFormat::default();
        let out = steps(
            &mut f,
            &[
                r#"{"type":"message_start","message":{"usage":{"input_tokens":20,"cache_read_input_tokens":5,"output_tokens":1}}}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":0,"cache_read_input_tokens":null,"output_tokens":9}}"#,
                r#"{"type":"message_stop"}"#,
            ],
        );
        let [Step::Done { usage: Some(u), .. }] = &out[..] else {
            panic!("{out:?}");
        };
        assert_eq!((u.input, u.cached_input, u.output), (25, 5, 9));
    }

    #[test]
    fn no_usage_and_no_stop_reason_is_an_estimate_and_cut() {
        let mut f = MessagesFormat::default();
        let out = steps(&mut f, &[r#"{"type":"message_stop"}"#]);
        assert_eq!(
            out,
            [Step::Done {
                usage: None,
                finish_reason: None,
                cut: Some("no stop_reason: message_stop came, the reply was cut".into()),
            }]
        );
    }
}
