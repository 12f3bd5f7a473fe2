//! openai-responses's format on the shared stream decoder (`protocol::stream_decoder`), so
//! live sessions and replay read it the same: `response.output_text.delta` is answer text;
//! reasoning (summary or raw) and tool-call argument deltas are thinking (they count for the
//! first token, never as the answer); `response.created` and the other progress events say
//! nothing; exactly one terminal event ends the response (`response.completed`,
//! `response.incomplete` with its reason, `response.failed` with its error), or a top-level
//! `error` event. `sequence_number` gaps are reported as lost events; a `[DONE]` some relays
//! append is ignored; a body that ends without a terminal event was cut. Pure: no socket, no
//! clock.

use crate::protocol::openai_chat::ApiError;
use crate::protocol::openai_chat::policy;
use crate::protocol::openai_responses::wire::{Event, Usage};
use crate::protocol::stream_decoder::{SseFormat, Step, StreamDecoder, StreamUsage};
use crate::session::ErrorKind;
pub use crate::transport::http_stream::SseInbound;

/// Decodes openai-responses bodies into session events (see `StreamDecoder`).
pub type ResponsesDecoder = StreamDecoder<ResponsesFormat>;

/// What Responses events mean, for one response.
#[derive(Clone, Debug, Default)]
pub struct ResponsesFormat {
    /// The last `sequence_number` seen in this response.
    last_sequence: Option<u64>,
    /// The first gap in the sequence numbers: events were lost, the response is cut.
    lost: Option<String>,
}

/// Deltas of the text the user reads.
const ANSWER_DELTAS: &[&str] = &[
    "response.output_text.delta",
    "response.refusal.delta",
    "response.audio.transcript.delta",
    "response.output_audio_transcript.delta",
];

/// Deltas the model produces before or beside the answer: its reasoning and the arguments of
/// the tools it calls (Codex's `apply_patch` is a custom tool).
const THINKING_DELTAS: &[&str] = &[
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.function_call_arguments.delta",
    "response.custom_tool_call_input.delta",
    "response.mcp_call_arguments.delta",
    "response.code_interpreter_call_code.delta",
];

/// Progress events that say nothing a monitor counts.
const PROGRESS: &[&str] = &[
    "response.created",
    "response.in_progress",
    "response.queued",
    "response.output_item.added",
    "response.content_part.added",
    "response.reasoning_summary_part.added",
    "response.output_text.annotation.added",
    // Base64 audio: output, but no text to count.
    "response.audio.delta",
    "ping",
    "keepalive",
];

/// Suffixes of the events of a response's parts and tool calls that report progress
/// (`response.output_text.done`, `response.web_search_call.searching`, …). The terminal
/// events are matched before these.
const PROGRESS_SUFFIXES: &[&str] = &[
    ".done",
    ".added",
    ".in_progress",
    ".searching",
    ".interpreting",
    ".generating",
    ".partial_image",
    ".completed",
    ".failed",
];

impl ResponsesFormat {
    /// `sequence_number` must go up by one; anything else means events were lost.
    fn check_sequence<'a>(&mut self, sequence: Option<u64>, step: &mut impl FnMut(Step<'a>)) {
        let Some(next) = sequence else {
            return;
        };
        if let Some(last) = self.last_sequence
            && last.checked_add(1) != Some(next)
        {
            let lost = format!("events were lost: sequence_number jumped from {last} to {next}");
            self.lost.get_or_insert_with(|| lost.clone());
            step(Step::Malformed(lost));
        }
        self.last_sequence = Some(next);
    }
}

impl SseFormat for ResponsesFormat {
    fn reset(&mut self) {
        *self = Self::default();
    }

    fn on_event<'a>(
        &mut self,
        event: Option<&str>,
        data: &'a str,
        step: &mut impl FnMut(Step<'a>),
    ) {
        let event = match Event::parse(event, data) {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(error) => return step(Step::Malformed(error.to_string())),
        };
        self.check_sequence(event.sequence_number, step);
        let Event {
            kind,
            delta,
            usage,
            incomplete_reason,
            error,
            ..
        } = event;
        let kind = kind.as_ref();
        if ANSWER_DELTAS.contains(&kind) {
            if let Some(text) = delta {
                step(Step::Answer(text));
            }
        } else if THINKING_DELTAS.contains(&kind) {
            if let Some(text) = delta {
                step(Step::Thinking(text));
            }
        } else if kind == "response.completed" {
            step(Step::Done {
                usage: usage.map(stream_usage),
                finish_reason: Some("completed".to_owned()),
                cut: self.lost.take(),
            });
        } else if kind == "response.incomplete" {
            let reason = incomplete_reason.filter(|r| !r.is_empty());
            // The output limit asked for, or a filter, is a finish reason as in every format;
            // any other `incomplete` did not come whole.
            let cut = match reason.as_deref() {
                Some(r) if crate::session::response::is_limit_or_filter(r) => self.lost.take(),
                r => Some(crate::session::response::incomplete_cut(r)),
            };
            step(Step::Done {
                usage: usage.map(stream_usage),
                finish_reason: Some(
                    reason.map_or_else(|| "incomplete".to_owned(), |r| r.into_owned()),
                ),
                cut,
            });
        } else if kind == "response.failed" || kind == "error" {
            step(failed(error.as_ref(), kind));
        } else if PROGRESS.contains(&kind)
            || (kind.starts_with("response.")
                && PROGRESS_SUFFIXES.iter().any(|s| kind.ends_with(s)))
        {
            // Progress: nothing to count.
        } else {
            step(Step::Unknown(kind.to_owned()));
        }
    }

    fn on_body_end(&mut self) -> Option<Step<'static>> {
        // No terminal event: the stream was cut, whatever came before.
        None
    }
}

/// A `response.failed` or `error` event as a failed response.
fn failed(error: Option<&ApiError<'_>>, kind: &str) -> Step<'static> {
    match error {
        Some(error) => Step::Failed {
            kind: error_kind(error),
            message: error.summary(),
            fatal: error.is_bad_key() || error.is_insufficient_quota(),
        },
        None => Step::Failed {
            kind: ErrorKind::Upstream,
            message: format!("{kind} without an error"),
            fatal: false,
        },
    }
}

/// The kind of a streamed error, by the codes the Responses API uses (`response.error.code`,
/// the `error` event's `code`), else as Chat Completions errors are read.
pub fn error_kind(error: &ApiError<'_>) -> ErrorKind {
    if error.is_bad_key() {
        return ErrorKind::Auth;
    }
    let code = error.code.as_deref().unwrap_or("");
    match code {
        "rate_limit_exceeded" | "insufficient_quota" => ErrorKind::RateLimited,
        "server_error" | "vector_store_timeout" => ErrorKind::Upstream,
        "invalid_prompt" | "context_length_exceeded" | "content_filter" => {
            ErrorKind::InvalidRequest
        }
        _ if code.starts_with("invalid_") || code.starts_with("image_") => {
            ErrorKind::InvalidRequest
        }
        _ => policy::error_kind(error),
    }
}

fn stream_usage(u: Usage) -> StreamUsage {
    StreamUsage {
        input: u.input_tokens,
        output: u.output_tokens,
        cached_input: u.cached_tokens,
        cache_write_input: 0,
        reasoning_output: u.reasoning_tokens,
        cost_usd: u.cost_usd,
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

    fn steps(format: &mut ResponsesFormat, data: &str) -> Vec<Step<'static>> {
        let mut out = Vec::new();
        format.on_event(None, data, &mut |s| {
            out.push(match s {
                Step::Answer(t) => Step::Answer(t.into_owned().into()),
                Step::Thinking(t) => Step::Thinking(t.into_owned().into()),
                Step::Done {
                    usage,
                    finish_reason,
                    cut,
                } => Step::Done {
                    usage,
                    finish_reason,
                    cut,
                },
                Step::Failed {
                    kind,
                    message,
                    fatal,
                } => Step::Failed {
                    kind,
                    message,
                    fatal,
                },
                Step::Malformed(m) => Step::Malformed(m),
                Step::Unknown(u) => Step::Unknown(u),
            });
        });
        out
    }

    #[test]
    fn deltas_by_type() {
        let mut f = ResponsesFormat::default();
        assert_eq!(
            steps(
                &mut f,
                r#"{"type":"response.output_text.delta","delta":"Hi"}"#
            ),
            [Step::Answer("Hi".into())]
        );
        for kind in [
            "response.reasoning_summary_text.delta",
            "response.reasoning_text.delta",
            "response.function_call_arguments.delta",
        ] {
            let data = format!(r#"{{"type":"{kind}","delta":"x"}}"#);
            assert_eq!(steps(&mut f, &data), [Step::Thinking("x".into())], "{kind}");
        }
        for kind in [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.web_search_call.completed",
        ] {
            let data = format!(r#"{{"type":"{kind}"}}"#);
            assert_eq!(steps(&mut f, &data), [], "{kind}");
        }
        assert_eq!(
            steps(&mut f, r#"{"type":"response.brand_new"}"#),
            [Step::Unknown("response.brand_new".into())]
        );
        assert_eq!(steps(&mut f, "[DONE]"), []);
        assert!(matches!(
            steps(&mut f, "{not json")[..],
            [Step::Malformed(_)]
        ));
    }

    #[test]
    fn a_sequence_gap_is_reported_and_the_response_goes_on() {
        let mut f = ResponsesFormat::default();
        assert_eq!(
            steps(&mut f, r#"{"type":"response.created","sequence_number":0}"#),
            []
        );
        assert_eq!(
            steps(
                &mut f,
                r#"{"type":"response.output_text.delta","delta":"a","sequence_number":1}"#
            ),
            [Step::Answer("a".into())]
        );
        assert_eq!(
            steps(
                &mut f,
                r#"{"type":"response.output_text.delta","delta":"b","sequence_number":4}"#
            ),
            [
                Step::Malformed("events were lost: sequence_number jumped from 1 to 4".into()),
                Step::Answer("b".into())
            ]
        );
        assert_eq!(
            steps(
                &mut f,
                r#"{"type":"response.output_text.delta","delta":"c","sequence_number":5}"#
            ),
            [Step::Answer("c".into())]
        );
        // Without a number: tolerated, and the count goes on from the last one seen.
        assert_eq!(
            steps(
                &mut f,
                r#"{"type":"response.output_text.delta","delta":"d"}"#
            ),
            [Step::Answer("d".into())]
        );
        assert_eq!(
            steps(
                &mut f,
                r#"{"type":"response.output_text.delta","delta":"e","sequence_number":6}"#
            ),
            [Step::Answer("e".into())]
        );
        f.reset();
        assert_eq!(
            steps(&mut f, r#"{"type":"response.created","sequence_number":0}"#),
            [],
            "a new response starts its own count"
        );
    }

    #[test]
    fn failures_classified() {
        let mut f = ResponsesFormat::default();
        let cases = [
            ("rate_limit_exceeded", ErrorKind::RateLimited, false),
            ("server_error", ErrorKind::Upstream, false),
            ("invalid_prompt", ErrorKind::InvalidRequest, false),
            ("invalid_api_key", ErrorKind::Auth, true),
            ("insufficient_quota", ErrorKind::RateLimited, true),
            ("something_else", ErrorKind::Upstream, false),
        ];
        for (code, kind, fatal) in cases {
            let data = format!(
                r#"{{"type":"response.failed","response":{{"status":"failed","error":{{"code":"{code}","message":"m"}}}}}}"#
            );
            assert_eq!(
                steps(&mut f, &data),
                [Step::Failed {
                    kind,
                    message: format!("m ({code})"),
                    fatal
                }],
                "{code}"
            );
            let data = format!(r#"{{"type":"error","code":"{code}","message":"m"}}"#);
            assert_eq!(
                steps(&mut f, &data),
                [Step::Failed {
                    kind,
                    message: format!("m ({code})"),
                    fatal
                }],
                "{code}"
            );
        }
        assert!(matches!(
            &steps(&mut f, r#"{"type":"response.failed","response":{"error":null}}"#)[..],
            [Step::Failed { kind: ErrorKind::Upstream, message, fatal: false }] if message == "response.failed without an error"
        ));
    }

    #[test]
    fn reasoning_first_then_the_answer() {
        let mut d = ResponsesDecoder::new();
        d.request_sent(ms(0), "gpt-5", 3);
        let mut events = Vec::new();
        let body = concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0}\n\n",
            "event: response.reasoning_summary_text.delta\ndata: {\"type\":\"response.reasoning_summary_text.delta\",\"delta\":\"hmm\",\"sequence_number\":1}\n\n",
        );
        d.on_bytes(
            ms(100),
            body.as_bytes(),
            &mut |e| events.push(e),
            &mut |_| {},
        );
        let body = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\",\"sequence_number\":2}\n\n";
        d.on_bytes(
            ms(300),
            body.as_bytes(),
            &mut |e| events.push(e),
            &mut |_| {},
        );
        let body = "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":3,\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":5,\"output_tokens\":9,\"output_tokens_details\":{\"reasoning_tokens\":8}}}}\n\n";
        let inbound = d.on_bytes(
            ms(400),
            body.as_bytes(),
            &mut |e| events.push(e),
            &mut |_| {},
        );
        assert_eq!(inbound, SseInbound::ResponseDone);
        assert_eq!(
            events[0],
            EventKind::FirstToken {
                request: 1,
                ttft_us: 100_000
            }
        );
        let done = events.last().unwrap();
        let EventKind::Done(completed) = done else {
            panic!("{done:?}")
        };
        let Completed {
            ttft_us,
            answer_us,
            tokens,
            finish_reason,
            ..
        } = &**completed;
        assert_eq!((*ttft_us, *answer_us), (Some(100_000), Some(300_000)));
        assert_eq!(
            (tokens.input, tokens.output, tokens.reasoning_output),
            (5, 9, 8)
        );
        assert_eq!(finish_reason.as_deref(), Some("completed"));
    }

    #[test]
    fn no_terminal_event_is_a_cut_stream() {
        let mut d = ResponsesDecoder::new();
        d.request_sent(ms(0), "m", 1);
        let body =
            "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\ndata: [DONE]\n\n";
        d.on_bytes(ms(1), body.as_bytes(), &mut |_| {}, &mut |_| {});
        assert_eq!(
            d.on_end(ms(2), &mut |_| {}, &mut |_| {}),
            SseInbound::StreamCut
        );
    }
}
