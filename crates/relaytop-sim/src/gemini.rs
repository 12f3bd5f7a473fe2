//! The simulator's Gemini shape: `POST /v1beta/models/{model}:streamGenerateContent` with the
//! key in `x-goog-api-key` or `?key=` (checked by the schedule). With `alt=sse` it streams
//! data-only SSE events (CRLF-ended, as Google's are), each a whole
//! `GenerateContentResponse`: `thought: true` parts while the profile thinks, text parts,
//! `usageMetadata` on every chunk (growing; the last one whole), `finishReason` (`STOP`,
//! `MAX_TOKENS`) on the last, `modelVersion` and `responseId`; no end sentinel. Without
//! `alt=sse` it answers one JSON array. Errors are Google's `google.rpc.Status` bodies (a
//! bad key: `API_KEY_INVALID`; a rate limit: `RetryInfo`); the upstream-error knob is an
//! in-stream `{"error":{…,"status":"INTERNAL"}}`. The schedule is `stream`'s.

use serde::Serialize;
use serde_json::json;

use super::http::{RequestHead, query_param};
use super::stream::{Asked, Finish, Refusal, RefusalKind, Reply, Shape};
use relaytop_core::protocol::gemini::GenerateContentRequest;

/// The malformed events `malformed_rate` injects, in turn.
const MALFORMED_EVENTS: [&str; 2] = [
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \r\n\r\n",
    "data: not json at all\r\n\r\n",
];

/// The method the shape serves.
const STREAM_METHOD: &str = ":streamGenerateContent";

/// Gemini.
pub(crate) struct Gemini;

/// One `GenerateContentResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    candidates: [CandidateOut<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_metadata: Option<UsageOut>,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CandidateOut<'a> {
    content: ContentOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    index: u32,
}

#[derive(Serialize)]
struct ContentOut<'a> {
    parts: [PartOut<'a>; 1],
    role: &'static str,
}

#[derive(Serialize)]
struct PartOut<'a> {
    text: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    thought: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageOut {
    prompt_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    candidates_token_count: u64,
    total_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    cached_content_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    thoughts_token_count: u64,
    prompt_tokens_details: [ModalityCount; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModalityCount {
    modality: &'static str,
    token_count: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `gemini-2.5-flash` from `/v1beta/models/gemini-2.5-flash:streamGenerateContent`.
fn model_of(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let model = rest.strip_suffix(STREAM_METHOD)?;
    (!model.is_empty() && !model.contains('/')).then_some(model)
}

/// The usage as Gemini reports it: `candidates` answer tokens and `thoughts` thinking tokens
/// so far (the whole usage at the end).
fn usage_out(reply: &Reply, candidates: u64, thoughts: u64) -> UsageOut {
    let prompt = reply.usage.prompt_tokens;
    UsageOut {
        prompt_token_count: prompt,
        candidates_token_count: candidates,
        total_token_count: prompt + candidates + thoughts,
        cached_content_token_count: reply.usage.cached_tokens,
        thoughts_token_count: thoughts,
        prompt_tokens_details: [ModalityCount {
            modality: "TEXT",
            token_count: prompt,
        }],
    }
}

fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "STOP",
        Finish::Length => "MAX_TOKENS",
    }
}

/// A Google error body: `{"error":{"code","message","status","details"?}}`.
fn google_error(code: u16, message: &str, status: &str, details: serde_json::Value) -> String {
    let mut error = json!({ "code": code, "message": message, "status": status });
    if details.as_array().is_some_and(|d| !d.is_empty()) {
        error["details"] = details;
    }
    json!({ "error": error }).to_string()
}

/// The `google.rpc.Code` name Google answers a status with.
fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        408 | 504 => "DEADLINE_EXCEEDED",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        500..=599 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    }
}

impl Gemini {
    fn chunk(
        reply: &Reply,
        text: &str,
        thought: bool,
        finish: Option<&'static str>,
        usage: Option<UsageOut>,
    ) -> String {
        let response = ResponseOut {
            candidates: [CandidateOut {
                content: ContentOut {
                    parts: [PartOut { text, thought }],
                    role: "model",
                },
                finish_reason: finish,
                index: 0,
            }],
            usage_metadata: usage,
            model_version: &reply.model,
            response_id: &reply.id,
        };
        // Plain structs of strings and numbers: serializing cannot fail.
        let data = serde_json::to_string(&response).unwrap_or_default();
        format!("data: {data}\r\n\r\n")
    }

    /// The usage of a chunk under way (when the closing one will carry usage too).
    fn running_usage(reply: &Reply) -> Option<UsageOut> {
        reply
            .include_usage
            .then(|| usage_out(reply, reply.seq, u64::from(reply.block)))
    }
}

impl Shape for Gemini {
    fn serves(&self, head: &RequestHead) -> bool {
        head.method == "POST" && model_of(&head.path).is_some()
    }

    fn read(&self, head: &RequestHead, body: &[u8]) -> Result<Asked, String> {
        let model = model_of(&head.path).unwrap_or_default().to_owned();
        let request: GenerateContentRequest = serde_json::from_slice(body)
            .map_err(|e| format!("Invalid JSON payload received. {e}"))?;
        if request.contents.is_empty() {
            return Err("* GenerateContentRequest.contents: contents is not specified".into());
        }
        let prompt_chars = request
            .contents
            .iter()
            .chain(request.system_instruction.iter())
            .flat_map(|c| c.parts.iter())
            .map(|p| p.text.chars().count())
            .sum();
        let stream = head
            .query
            .as_deref()
            .and_then(|q| query_param(q, "alt"))
            .is_some_and(|alt| alt == "sse");
        Ok(Asked {
            model,
            prompt_chars,
            max_tokens: request.generation_config.and_then(|g| g.max_output_tokens),
            stream,
            // Gemini always reports its usage.
            include_usage: true,
        })
    }

    fn refusal_status(&self, refusal: &Refusal) -> u16 {
        // Google answers a missing or bad key 400 INVALID_ARGUMENT (reason API_KEY_INVALID).
        match (refusal.kind, refusal.status) {
            (RefusalKind::Key, 401) => 400,
            (_, status) => status,
        }
    }

    fn refusal_body(&self, refusal: &Refusal) -> String {
        let status = refusal.status;
        match refusal.kind {
            RefusalKind::Key => google_error(
                status,
                "API key not valid. Please pass a valid API key.",
                // Google answers a bad key 400 INVALID_ARGUMENT with reason API_KEY_INVALID.
                if status == 400 {
                    "INVALID_ARGUMENT"
                } else {
                    status_name(status)
                },
                json!([{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": { "service": "generativelanguage.googleapis.com" },
                }]),
            ),
            RefusalKind::RateLimited => {
                let delay = refusal.retry_after_ms.map(|ms| ms.div_ceil(1000));
                let details = match delay {
                    Some(seconds) => json!([{
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": format!("{seconds}s"),
                    }]),
                    None => json!([]),
                };
                google_error(
                    status,
                    &format!(
                        "You exceeded your current quota, please check your plan and billing details. {}",
                        refusal.message
                    ),
                    "RESOURCE_EXHAUSTED",
                    details,
                )
            }
            RefusalKind::BadRequest | RefusalKind::Rejected => {
                google_error(status, &refusal.message, status_name(status), json!([]))
            }
        }
    }

    fn stream_headers(&self, _reply: &Reply, _n: u64, _tokens: u64) -> String {
        // Google sends no rate-limit headers.
        "server-timing: gfet4t7; dur=1\r\nx-content-type-options: nosniff\r\n".to_owned()
    }

    fn opening(&self, _reply: &mut Reply, _out: &mut Vec<String>) {
        // Gemini's first event is its first chunk of output.
    }

    fn thinking(&self, reply: &mut Reply, word: &str, out: &mut Vec<String>) {
        reply.block += 1;
        reply.thinking_open = true;
        out.push(Self::chunk(
            reply,
            word,
            true,
            None,
            Self::running_usage(reply),
        ));
    }

    fn answer(&self, reply: &mut Reply, word: &str, out: &mut Vec<String>) {
        reply.seq += 1;
        reply.answer_open = true;
        out.push(Self::chunk(
            reply,
            word,
            false,
            None,
            Self::running_usage(reply),
        ));
    }

    fn failure(&self, _reply: &mut Reply, out: &mut Vec<String>) {
        let error = google_error(
            500,
            "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting (simulated)",
            "INTERNAL",
            json!([]),
        );
        out.push(format!("data: {error}\r\n\r\n"));
    }

    fn closing(&self, reply: &mut Reply, out: &mut Vec<String>) {
        let u = reply.usage;
        let usage = reply.include_usage.then(|| {
            usage_out(
                reply,
                u.completion_tokens.saturating_sub(u.reasoning_tokens),
                u.reasoning_tokens,
            )
        });
        out.push(Self::chunk(
            reply,
            "",
            false,
            Some(finish_reason(reply.finish)),
            usage,
        ));
    }

    fn malformed(&self, n: usize) -> &'static str {
        MALFORMED_EVENTS[n % MALFORMED_EVENTS.len()]
    }

    fn whole(&self, reply: &Reply, text: &str) -> Option<String> {
        // `streamGenerateContent` without `alt=sse`: the chunks as one JSON array (here, one
        // chunk holding the whole text).
        let u = reply.usage;
        let usage = usage_out(
            reply,
            u.completion_tokens.saturating_sub(u.reasoning_tokens),
            u.reasoning_tokens,
        );
        let response = ResponseOut {
            candidates: [CandidateOut {
                content: ContentOut {
                    parts: [PartOut {
                        text,
                        thought: false,
                    }],
                    role: "model",
                },
                finish_reason: Some(finish_reason(reply.finish)),
                index: 0,
            }],
            usage_metadata: Some(usage),
            model_version: &reply.model,
            response_id: &reply.id,
        };
        Some(format!(
            "[{}]",
            serde_json::to_string(&response).unwrap_or_default()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaytop_core::protocol::gemini::{ChunkError, StreamData};
    use relaytop_core::protocol::sse::SseBuffer;

    fn reply() -> Reply {
        Reply {
            id: "sim1x1".into(),
            model: "gemini-2.5-flash".into(),
            created: 0,
            usage: crate::stream::Usage {
                prompt_tokens: 10,
                cached_tokens: 4,
                completion_tokens: 7,
                reasoning_tokens: 2,
                ..Default::default()
            },
            finish: Finish::Length,
            include_usage: true,
            seq: 0,
            block: 0,
            thinking_text: String::new(),
            answer_text: String::new(),
            thinking_open: false,
            answer_open: false,
        }
    }

    fn data_of(event: &str) -> String {
        let mut buffer = SseBuffer::new();
        buffer.push(event.as_bytes());
        let event = buffer.next_event().unwrap().unwrap();
        event.data.into_owned()
    }

    #[test]
    fn paths_and_models() {
        assert_eq!(
            model_of("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            Some("gemini-2.5-flash")
        );
        assert_eq!(
            model_of("/v1beta/models/gemini-2.5-flash:generateContent"),
            None
        );
        assert_eq!(model_of("/v1beta/models"), None);
        assert_eq!(model_of("/v1beta/models/:streamGenerateContent"), None);
    }

    #[test]
    fn events_read_back_as_the_client_reads_them() {
        let mut r = reply();
        let mut out = Vec::new();
        Gemini.thinking(&mut r, "hmm ", &mut out);
        Gemini.answer(&mut r, "Hi", &mut out);
        Gemini.closing(&mut r, &mut out);
        let chunks: Vec<_> = out
            .iter()
            .map(|e| {
                assert!(e.ends_with("\r\n\r\n"), "{e:?}");
                data_of(e)
            })
            .collect();
        fn parse(d: &str) -> relaytop_core::protocol::gemini::Chunk<'_> {
            match StreamData::parse(d).unwrap() {
                StreamData::Chunk(c) => c,
                StreamData::Error(e) => panic!("{e:?}"),
            }
        }
        let thought = parse(&chunks[0]);
        assert!(matches!(
            &thought.parts[..],
            [relaytop_core::protocol::gemini::ChunkPart::Thought(_)]
        ));
        let last = parse(&chunks[2]);
        assert_eq!(last.finish_reason.as_deref(), Some("MAX_TOKENS"));
        let usage = last.usage.unwrap();
        assert_eq!(
            (
                usage.prompt,
                usage.candidates,
                usage.thoughts,
                usage.cached,
                usage.total
            ),
            (10, 5, 2, 4, 17)
        );
        assert_eq!(last.response_id.as_deref(), Some("sim1x1"));

        let mut out = Vec::new();
        Gemini.failure(&mut r, &mut out);
        assert!(matches!(
            StreamData::parse(&data_of(&out[0])),
            Ok(StreamData::Error(e)) if e.status.as_deref() == Some("INTERNAL")
        ));
        for n in 0..2 {
            let data = data_of(Gemini.malformed(n));
            assert!(matches!(
                StreamData::parse(&data),
                Err(ChunkError::NotJson(_) | ChunkError::BadShape(_))
            ));
        }
        let whole = Gemini.whole(&r, "Hello").unwrap();
        assert!(whole.starts_with("[{") && whole.ends_with("}]"), "{whole}");
    }

    #[test]
    fn refusals_are_google_errors() {
        let key = Gemini.refusal_body(&Refusal {
            status: 400,
            kind: RefusalKind::Key,
            message: "unknown API key".into(),
            retry_after_ms: None,
        });
        let e = relaytop_core::protocol::gemini::parse_error_body(key.as_bytes()).unwrap();
        assert_eq!(e.reason.as_deref(), Some("API_KEY_INVALID"));
        assert_eq!(e.status.as_deref(), Some("INVALID_ARGUMENT"));
        let limited = Gemini.refusal_body(&Refusal {
            status: 429,
            kind: RefusalKind::RateLimited,
            message: "simulated".into(),
            retry_after_ms: Some(1500),
        });
        let e = relaytop_core::protocol::gemini::parse_error_body(limited.as_bytes()).unwrap();
        assert_eq!(e.retry_delay, Some(std::time::Duration::from_secs(2)));
    }
}
