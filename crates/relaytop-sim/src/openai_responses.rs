//! The simulator's OpenAI Responses shape: `POST /v1/responses` answered with the event
//! sequence OpenAI streams (`response.created`, `response.in_progress`, a reasoning item with
//! its summary deltas when the profile thinks, the message item and its `output_text` part,
//! `response.output_text.delta`s, the `….done` events, then `response.completed`, or
//! `response.incomplete` when the output limit cut it), every event with its increasing
//! `sequence_number` and the full `response` object (ids `resp_…`, `rs_…`, `msg_…`, usage with
//! cached and reasoning tokens and the profile's `cost`) the official SDKs parse; the
//! profile's upstream errors as `response.failed`; OpenAI error bodies and `x-ratelimit-*`
//! headers as chat completions has them; the whole `response` for `stream: false`. The
//! schedule is `stream`'s.

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::RequestHead;
use super::openai_chat::Chat;
use super::stream::{Asked, Finish, Refusal, Reply, Shape, sse};
use relaytop_core::protocol::openai_responses::{RESPONSES_PATH, read_request};

/// The malformed events `malformed_rate` injects, in turn.
const MALFORMED_EVENTS: [&str; 2] = [
    "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\n\n",
    "data: not json at all\n\n",
];

/// OpenAI Responses.
pub(crate) struct Responses;

fn response_id(reply: &Reply) -> String {
    format!("resp_{}", reply.id)
}

fn reasoning_id(reply: &Reply) -> String {
    format!("rs_{}", reply.id)
}

fn message_id(reply: &Reply) -> String {
    format!("msg_{}", reply.id)
}

/// One event: its `type`, the next `sequence_number`, and `fields`.
fn event(reply: &mut Reply, kind: &str, fields: Value) -> String {
    let mut data = json!({ "type": kind, "sequence_number": reply.seq });
    if let (Some(data), Value::Object(fields)) = (data.as_object_mut(), fields) {
        data.extend(fields);
    }
    reply.seq += 1;
    sse(Some(kind), &data)
}

/// `response.usage`.
fn usage(reply: &Reply) -> Value {
    let u = reply.usage;
    let mut usage = json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": { "cached_tokens": u.cached_tokens },
        "output_tokens": u.completion_tokens,
        "output_tokens_details": { "reasoning_tokens": u.reasoning_tokens },
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    });
    if let (Some(cost), Some(usage)) = (u.cost_usd, usage.as_object_mut()) {
        usage.insert("cost".into(), json!(cost));
    }
    usage
}

fn reasoning_item(reply: &Reply, done: bool) -> Value {
    let summary = if done {
        json!([{ "type": "summary_text", "text": reply.thinking_text }])
    } else {
        json!([])
    };
    json!({ "id": reasoning_id(reply), "type": "reasoning", "summary": summary })
}

fn message_item(reply: &Reply, status: &str) -> Value {
    let content = if status == "in_progress" {
        json!([])
    } else {
        json!([output_text_part(&reply.answer_text)])
    };
    json!({
        "id": message_id(reply),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    })
}

fn output_text_part(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

/// The whole `response` object as the SDKs read it, in `status` with `output`.
fn response(reply: &Reply, status: &str, output: Value, finished: bool) -> Value {
    let incomplete = (status == "incomplete").then(|| json!({ "reason": "max_output_tokens" }));
    let error = (status == "failed").then(
        || json!({ "code": "server_error", "message": "The upstream model failed (simulated)" }),
    );
    json!({
        "id": response_id(reply),
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "background": false,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": null,
        "max_output_tokens": null,
        "model": reply.model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": { "effort": null, "summary": null },
        "service_tier": "default",
        "store": false,
        "temperature": 1.0,
        "text": { "format": { "type": "text" } },
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": if finished && reply.include_usage { usage(reply) } else { Value::Null },
        "user": null,
        "metadata": {},
    })
}

/// The output of a finished response: the reasoning item if the model thought, the message.
fn output(reply: &Reply, message_status: &str) -> Value {
    let mut items = Vec::new();
    if !reply.thinking_text.is_empty() || reply.usage.reasoning_tokens > 0 {
        items.push(reasoning_item(reply, true));
    }
    items.push(message_item(reply, message_status));
    Value::Array(items)
}

impl Responses {
    /// Closes the reasoning item, if open: its summary's `….done` events.
    fn close_thinking(reply: &mut Reply, out: &mut Vec<String>) {
        if !reply.thinking_open {
            return;
        }
        reply.thinking_open = false;
        let (item_id, index) = (reasoning_id(reply), reply.block);
        let text = reply.thinking_text.clone();
        let fields = json!({ "item_id": item_id, "output_index": index, "summary_index": 0 });
        let with = |extra: Value| {
            let mut f = fields.clone();
            if let (Some(f), Value::Object(extra)) = (f.as_object_mut(), extra) {
                f.extend(extra);
            }
            f
        };
        out.push(event(
            reply,
            "response.reasoning_summary_text.done",
            with(json!({ "text": text })),
        ));
        out.push(event(
            reply,
            "response.reasoning_summary_part.done",
            with(json!({ "part": { "type": "summary_text", "text": text } })),
        ));
        let item = reasoning_item(reply, true);
        out.push(event(
            reply,
            "response.output_item.done",
            json!({ "output_index": index, "item": item }),
        ));
        reply.block += 1;
    }

    /// Closes the message item, if open: its text's, part's and item's `….done` events.
    fn close_answer(reply: &mut Reply, status: &str, out: &mut Vec<String>) {
        if !reply.answer_open {
            return;
        }
        reply.answer_open = false;
        let (item_id, index) = (message_id(reply), reply.block);
        let text = reply.answer_text.clone();
        out.push(event(
            reply,
            "response.output_text.done",
            json!({ "item_id": item_id, "output_index": index, "content_index": 0, "text": text, "logprobs": [] }),
        ));
        out.push(event(
            reply,
            "response.content_part.done",
            json!({ "item_id": item_id, "output_index": index, "content_index": 0, "part": output_text_part(&text) }),
        ));
        let item = message_item(reply, status);
        out.push(event(
            reply,
            "response.output_item.done",
            json!({ "output_index": index, "item": item }),
        ));
        reply.block += 1;
    }
}

impl Shape for Responses {
    fn serves(&self, head: &RequestHead) -> bool {
        head.method == "POST" && head.path == RESPONSES_PATH
    }

    fn read(&self, _head: &RequestHead, body: &[u8]) -> Result<Asked, String> {
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            model: Option<String>,
            #[serde(default)]
            stream: Option<bool>,
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| "We could not parse the JSON body of your request: not UTF-8")?;
        let head: Head = serde_json::from_str(text)
            .map_err(|e| format!("We could not parse the JSON body of your request: {e}"))?;
        let model = head
            .model
            .filter(|m| !m.is_empty())
            .ok_or("Missing required parameter: 'model'.")?;
        let (messages, max_tokens) =
            read_request(text).ok_or("Missing required parameter: 'input'.")?;
        Ok(Asked {
            model,
            prompt_chars: messages.iter().map(|m| m.content.chars().count()).sum(),
            max_tokens,
            stream: head.stream.unwrap_or(false),
            // The usage is always in the terminal event (unless the profile withholds it).
            include_usage: true,
        })
    }

    fn refusal_body(&self, refusal: &Refusal) -> String {
        Chat.refusal_body(refusal)
    }

    fn refusal_headers(&self, refusal: &Refusal) -> Vec<(&'static str, String)> {
        Chat.refusal_headers(refusal)
    }

    fn stream_headers(&self, reply: &Reply, n: u64, tokens: u64) -> String {
        Chat.stream_headers(reply, n, tokens)
    }

    fn opening(&self, reply: &mut Reply, out: &mut Vec<String>) {
        reply.thinking_text.clear();
        reply.answer_text.clear();
        let created = response(reply, "in_progress", json!([]), false);
        out.push(event(
            reply,
            "response.created",
            json!({ "response": created }),
        ));
        let in_progress = response(reply, "in_progress", json!([]), false);
        out.push(event(
            reply,
            "response.in_progress",
            json!({ "response": in_progress }),
        ));
    }

    fn thinking(&self, reply: &mut Reply, word: &str, out: &mut Vec<String>) {
        let (item_id, index) = (reasoning_id(reply), reply.block);
        if !reply.thinking_open {
            reply.thinking_open = true;
            let item = reasoning_item(reply, false);
            out.push(event(
                reply,
                "response.output_item.added",
                json!({ "output_index": index, "item": item }),
            ));
            out.push(event(
                reply,
                "response.reasoning_summary_part.added",
                json!({ "item_id": item_id, "output_index": index, "summary_index": 0, "part": { "type": "summary_text", "text": "" } }),
            ));
        }
        reply.thinking_text.push_str(word);
        out.push(event(
            reply,
            "response.reasoning_summary_text.delta",
            json!({ "item_id": item_id, "output_index": index, "summary_index": 0, "delta": word }),
        ));
    }

    fn answer(&self, reply: &mut Reply, word: &str, out: &mut Vec<String>) {
        Self::close_thinking(reply, out);
        let (item_id, index) = (message_id(reply), reply.block);
        if !reply.answer_open {
            reply.answer_open = true;
            let item = message_item(reply, "in_progress");
            out.push(event(
                reply,
                "response.output_item.added",
                json!({ "output_index": index, "item": item }),
            ));
            out.push(event(
                reply,
                "response.content_part.added",
                json!({ "item_id": item_id, "output_index": index, "content_index": 0, "part": output_text_part("") }),
            ));
        }
        reply.answer_text.push_str(word);
        out.push(event(
            reply,
            "response.output_text.delta",
            json!({ "item_id": item_id, "output_index": index, "content_index": 0, "delta": word, "logprobs": [] }),
        ));
    }

    fn failure(&self, reply: &mut Reply, out: &mut Vec<String>) {
        let failed = response(reply, "failed", json!([]), false);
        out.push(event(
            reply,
            "response.failed",
            json!({ "response": failed }),
        ));
    }

    fn closing(&self, reply: &mut Reply, out: &mut Vec<String>) {
        let (kind, status, message_status) = match reply.finish {
            Finish::Stop => ("response.completed", "completed", "completed"),
            Finish::Length => ("response.incomplete", "incomplete", "incomplete"),
        };
        Self::close_thinking(reply, out);
        Self::close_answer(reply, message_status, out);
        let whole = response(reply, status, output(reply, message_status), true);
        out.push(event(reply, kind, json!({ "response": whole })));
    }

    fn malformed(&self, n: usize) -> &'static str {
        MALFORMED_EVENTS[n % MALFORMED_EVENTS.len()]
    }

    fn whole(&self, reply: &Reply, text: &str) -> Option<String> {
        let (status, message_status) = match reply.finish {
            Finish::Stop => ("completed", "completed"),
            Finish::Length => ("incomplete", "incomplete"),
        };
        let mut reply = reply.clone();
        reply.answer_text = text.to_owned();
        Some(response(&reply, status, output(&reply, message_status), true).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Usage;
    use relaytop_core::protocol::openai_responses::decode::ResponsesDecoder;
    use relaytop_core::session::{Completed, EventKind};
    use std::time::Duration;

    fn reply(finish: Finish) -> Reply {
        Reply {
            id: "sim1x1".into(),
            model: "gpt-5-mini".into(),
            created: 1_700_000_000,
            usage: Usage::default(),
            finish,
            include_usage: true,
            seq: 0,
            block: 0,
            thinking_open: false,
            answer_open: false,
            thinking_text: String::new(),
            answer_text: String::new(),
        }
    }

    /// The events of a whole response, thinking `thoughts` then answering `words`.
    fn stream(finish: Finish, thoughts: &[&str], words: &[&str]) -> String {
        let mut r = reply(finish);
        let mut out = Vec::new();
        Responses.opening(&mut r, &mut out);
        for w in thoughts {
            Responses.thinking(&mut r, w, &mut out);
        }
        for w in words {
            Responses.answer(&mut r, w, &mut out);
        }
        r.usage = Usage {
            prompt_tokens: 10,
            cached_tokens: 4,
            cache_write_tokens: 0,
            completion_tokens: (thoughts.len() + words.len()) as u64,
            reasoning_tokens: thoughts.len() as u64,
            cost_usd: Some(0.5),
        };
        Responses.closing(&mut r, &mut out);
        out.concat()
    }

    fn decode(body: &str) -> Vec<EventKind> {
        let mut d = ResponsesDecoder::new();
        d.request_sent(Duration::ZERO, "m", 1);
        let mut events = Vec::new();
        d.on_bytes(
            Duration::from_millis(1),
            body.as_bytes(),
            &mut |e| events.push(e),
            &mut |_| {},
        );
        events
    }

    #[test]
    fn the_event_sequence_reads_back_clean() {
        let body = stream(Finish::Stop, &["Hmm", " ok"], &["Hi", " there"]);
        let types: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            types,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let events = decode(&body);
        assert!(
            !events.iter().any(|e| matches!(
                e,
                EventKind::Malformed { .. } | EventKind::UnknownFrame { .. }
            )),
            "{events:?}"
        );
        let Some(EventKind::Done(done)) = events.last() else {
            panic!("{events:?}")
        };
        let Completed {
            tokens,
            reported_cost_usd,
            finish_reason,
            answer_us,
            ..
        } = &**done;
        assert_eq!(
            (
                tokens.input,
                tokens.cached_input,
                tokens.output,
                tokens.reasoning_output
            ),
            (10, 4, 4, 2)
        );
        assert_eq!(*reported_cost_usd, Some(0.5));
        assert_eq!(finish_reason.as_deref(), Some("completed"));
        assert!(answer_us.is_some());
        let completed = body.lines().rfind(|l| !l.is_empty()).unwrap();
        assert!(completed.contains(r#""text":"Hi there""#), "{completed}");
        assert!(completed.contains(r#""id":"resp_sim1x1""#), "{completed}");
        assert!(completed.contains(r#""sequence_number":16"#), "{completed}");
    }

    #[test]
    fn the_output_limit_is_incomplete_and_a_failure_is_failed() {
        let body = stream(Finish::Length, &[], &["a"]);
        assert!(body.contains("event: response.incomplete"));
        let events = decode(&body);
        assert!(matches!(
            events.last(),
            Some(EventKind::Done(done))
                if done.finish_reason.as_deref() == Some("max_output_tokens")
        ));

        let mut r = reply(Finish::Stop);
        let mut out = Vec::new();
        Responses.opening(&mut r, &mut out);
        Responses.answer(&mut r, "a", &mut out);
        Responses.failure(&mut r, &mut out);
        let events = decode(&out.concat());
        assert!(
            events.iter().any(|e| matches!(
                e,
                EventKind::RequestFailed {
                    kind: relaytop_core::session::ErrorKind::Upstream,
                    ..
                }
            )),
            "{events:?}"
        );
    }

    #[test]
    fn malformed_events_are_malformed() {
        for n in 0..2 {
            let events = decode(Responses.malformed(n));
            assert!(
                matches!(&events[..], [EventKind::Malformed { .. }]),
                "{events:?}"
            );
        }
    }

    #[test]
    fn a_whole_response_for_stream_false() {
        let mut r = reply(Finish::Stop);
        r.usage.prompt_tokens = 3;
        r.usage.completion_tokens = 2;
        let body: Value = serde_json::from_str(&Responses.whole(&r, "Hi there").unwrap()).unwrap();
        assert_eq!(body["object"], "response");
        assert_eq!(body["status"], "completed");
        assert_eq!(body["output"][0]["content"][0]["text"], "Hi there");
        assert_eq!(body["usage"]["total_tokens"], 5);
        let body: Value =
            serde_json::from_str(&Responses.whole(&reply(Finish::Length), "a").unwrap()).unwrap();
        assert_eq!(body["incomplete_details"]["reason"], "max_output_tokens");
    }

    #[test]
    fn requests_are_read() {
        let head = RequestHead::default();
        let asked = Responses
            .read(
                &head,
                br#"{"model":"gpt-5","input":"hello","instructions":"be brief","stream":true,"max_output_tokens":16}"#,
            )
            .unwrap();
        assert_eq!(asked.model, "gpt-5");
        assert_eq!(asked.prompt_chars, 13);
        assert_eq!(asked.max_tokens, Some(16));
        assert!(asked.stream);
        assert!(Responses.read(&head, br#"{"input":"x"}"#).is_err());
        assert!(Responses.read(&head, br#"{"model":"m"}"#).is_err());
        assert!(Responses.read(&head, b"nope").is_err());
    }
}
