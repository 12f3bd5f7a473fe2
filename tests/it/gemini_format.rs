//! gemini: the fixtures of tests/fixtures/gemini/ (the documented stream, thoughts then text,
//! usage on every chunk, cached tokens, a mid-stream error object, CRLF line endings, a
//! truncated stream, a blocked prompt) fed whole and in 1- and 7-byte pieces with the same
//! events; the codec's URLs for every base, model spelling and auth style, its body, headers
//! and error classification, and the key absent from every name and message it makes.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};

use relaytop_core::config::secret::Secret;
use relaytop_core::protocol::gemini::codec::GeminiCodec;
use relaytop_core::protocol::gemini::decode::{GeminiDecoder, GeminiFormat, SseInbound};
use relaytop_core::protocol::gemini::wire::read_request;
use relaytop_core::protocol::relay_v1::{ChatMessage, Role};
use relaytop_core::session::workload::Outgoing;
use relaytop_core::session::{
    AuthStyle, Completed, ErrorKind, EventKind, Protocol, SessionSpec, Tokens,
};
use relaytop_core::transport::http_stream::{Action, HttpStreamCodec};

use crate::formats::{self, Fixtures, count, text_of};
use crate::support;

const GEMINI: Fixtures<GeminiFormat> = Fixtures::new("gemini", "gemini-2.5-flash");

/// The fixture whole, in 1-byte and in 7-byte pieces (`Fixtures::every_split`): each run's
/// weighty inbounds, events and the data the tap saw.
fn every_split(path: &str, check: impl Fn(&[SseInbound], &[EventKind], &[String])) {
    GEMINI.every_split(path, |r, _| check(&r.inbounds, &r.events, &r.data));
}

fn done_of(events: &[EventKind]) -> (Tokens, Option<String>) {
    let done = formats::done_of(events);
    assert!(done.ttft_us.is_some(), "a done with text has a TTFT");
    (done.tokens, done.finish)
}

fn tokens(input: u64, output: u64, cached: u64, reasoning: u64) -> Tokens {
    Tokens {
        input,
        output,
        cached_input: cached,
        cache_write_input: 0,
        reasoning_output: reasoning,
        estimated: false,
    }
}

#[test]
fn the_documented_stream() {
    every_split("documented.sse", |inbounds, events, data| {
        assert_eq!(inbounds, [SseInbound::ResponseDone]);
        assert_eq!(
            text_of(events),
            "The sky is blue because of Rayleigh scattering."
        );
        let (tokens_, finish) = done_of(events);
        assert_eq!(tokens_, tokens(9, 11, 0, 0));
        assert_eq!(finish.as_deref(), Some("STOP"));
        assert_eq!(data.len(), 3, "every event's data is shown to the tap");
        assert_eq!(
            count(events, |e| matches!(e, EventKind::FirstToken { .. })),
            1
        );
        assert_eq!(
            count(events, |e| matches!(
                e,
                EventKind::Malformed { .. } | EventKind::UnknownFrame { .. }
            )),
            0
        );
    });
}

#[test]
fn thoughts_then_text() {
    // Whole: everything arrives at 10 ms. In 1-byte pieces the times tell the parts apart.
    let events = GEMINI.run("thoughts_then_text.sse", 1).events;
    let body = GEMINI.fixture("thoughts_then_text.sse");
    let offset = |needle: &str| {
        body.windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap() as u64
    };
    // The piece holding the end of an event (its blank line) is when it is decoded.
    let decoded_at = |needle: &str| {
        let start = offset(needle) as usize;
        let end = start + body[start..].windows(2).position(|w| w == b"\n\n").unwrap() + 2;
        10_000 * end as u64
    };
    let first_thought = decoded_at("**Considering");
    let first_answer = decoded_at("\"Hello\"");
    let ttft = events.iter().find_map(|e| match e {
        EventKind::FirstToken { ttft_us, .. } => Some(*ttft_us),
        _ => None,
    });
    assert_eq!(ttft, Some(first_thought), "the first token is the thought");
    let Some(EventKind::Done(done)) = events.iter().find(|e| matches!(e, EventKind::Done(_)))
    else {
        panic!("{events:?}")
    };
    let Completed {
        ttft_us, answer_us, ..
    } = &**done;
    assert_eq!(*ttft_us, Some(first_thought));
    assert_eq!(
        *answer_us,
        Some(first_answer),
        "the first answer token is the first non-thought part"
    );

    every_split("thoughts_then_text.sse", |inbounds, events, _| {
        assert_eq!(inbounds, [SseInbound::ResponseDone]);
        assert_eq!(
            text_of(events),
            "Hello there!",
            "thoughts are never the answer"
        );
        let (tokens_, finish) = done_of(events);
        assert_eq!(
            tokens_,
            tokens(6, 91, 0, 88),
            "output = candidates + thoughts"
        );
        assert_eq!(finish.as_deref(), Some("STOP"));
    });
}

#[test]
fn usage_on_every_chunk_the_last_wins() {
    every_split("usage_every_chunk.sse", |inbounds, events, _| {
        assert_eq!(inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(events), "One, two, three");
        let (tokens_, finish) = done_of(events);
        assert_eq!(
            tokens_,
            tokens(12, 6, 0, 0),
            "the last, never a sum; numbers as strings and floats"
        );
        assert_eq!(finish.as_deref(), Some("MAX_TOKENS"));
    });
}

#[test]
fn cached_tokens_are_part_of_the_input() {
    every_split("cached_tokens.sse", |inbounds, events, _| {
        assert_eq!(inbounds, [SseInbound::ResponseDone]);
        let (tokens_, _) = done_of(events);
        assert_eq!(tokens_, tokens(4120, 9, 4096, 0));
    });
}

#[test]
fn a_mid_stream_error_object() {
    every_split("mid_stream_error.sse", |inbounds, events, _| {
        assert_eq!(
            inbounds,
            [SseInbound::ResponseFailed {
                kind: ErrorKind::Overloaded,
                message: "The model is overloaded. Please try again later. (UNAVAILABLE)".into(),
                fatal: false
            }]
        );
        assert_eq!(text_of(events), "Once upon");
        assert_eq!(
            count(events, |e| matches!(
                e,
                EventKind::RequestFailed {
                    kind: ErrorKind::Overloaded,
                    ..
                }
            )),
            1
        );
        assert_eq!(
            count(events, |e| matches!(
                e,
                EventKind::Error {
                    retryable: true,
                    ..
                }
            )),
            1
        );
        assert_eq!(count(events, |e| matches!(e, EventKind::Done(_))), 0);
    });
}

#[test]
fn crlf_line_endings() {
    every_split("crlf.sse", |inbounds, events, data| {
        assert_eq!(inbounds, [SseInbound::ResponseDone]);
        assert_eq!(text_of(events), "Line endings");
        assert_eq!(data.len(), 2);
        let (tokens_, finish) = done_of(events);
        assert_eq!(tokens_, tokens(3, 2, 0, 0));
        assert_eq!(finish.as_deref(), Some("STOP"));
    });
}

#[test]
fn a_stream_without_a_finish_reason_is_cut() {
    every_split("truncated.sse", |inbounds, events, _| {
        assert_eq!(inbounds, [SseInbound::StreamCut]);
        assert_eq!(text_of(events), "The answer is forty");
        assert_eq!(count(events, |e| matches!(e, EventKind::Done(_))), 0);
        assert_eq!(
            count(events, |e| matches!(e, EventKind::Malformed { .. })),
            1,
            "the half event at the end"
        );
    });
}

#[test]
fn a_blocked_prompt_fails_the_request() {
    every_split("blocked_prompt.sse", |inbounds, events, _| {
        assert_eq!(
            inbounds,
            [SseInbound::ResponseFailed {
                kind: ErrorKind::InvalidRequest,
                message: "blocked: PROHIBITED_CONTENT".into(),
                fatal: false
            }]
        );
        assert_eq!(
            count(events, |e| matches!(
                e,
                EventKind::Error {
                    retryable: false,
                    ..
                }
            )),
            1
        );
    });
}

// ------------------------------------------------------------------------------------------
// The codec
// ------------------------------------------------------------------------------------------

const KEY: &str = "AIzaSyTESTKEYrelaytopGEMINI0000000000";

fn codec_spec(base: &str, model: &str, auth: AuthStyle) -> SessionSpec {
    let mut spec = support::spec(base, support::probe(100), support::fast_timing());
    spec.info.protocol = Protocol::Gemini;
    spec.info.model = model.into();
    spec.api_key = Some(Secret::new(KEY));
    spec.auth = auth;
    spec
}

const AUTH_STYLES: [AuthStyle; 5] = [
    AuthStyle::Native,
    AuthStyle::XGoogApiKey,
    AuthStyle::Bearer,
    AuthStyle::XApiKey,
    AuthStyle::Query,
];

#[test]
fn urls_for_every_base_model_and_auth_style() {
    let google = "https://generativelanguage.googleapis.com";
    let bases = [
        google.to_owned(),
        format!("{google}/"),
        format!("{google}/v1beta"),
        format!("{google}/v1beta/"),
        format!("{google}/v1beta/models"),
    ];
    for base in &bases {
        for model in ["gemini-2.5-flash", "models/gemini-2.5-flash"] {
            for auth in AUTH_STYLES {
                let codec = GeminiCodec::new(&codec_spec(base, model, auth));
                let key = if auth == AuthStyle::Query {
                    format!("&key={KEY}")
                } else {
                    String::new()
                };
                assert_eq!(
                    codec.stream_url(model),
                    format!(
                        "{google}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse{key}"
                    ),
                    "{base} {model} {auth:?}"
                );
                assert_eq!(
                    codec.stream_url("gemini-2.5-pro"),
                    format!(
                        "{google}/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse{key}"
                    ),
                    "another model: {base} {auth:?}"
                );
                let check_key = key.replacen('&', "?", 1);
                assert_eq!(
                    codec.check_url(),
                    format!("{google}/v1beta/models{check_key}"),
                    "{base} {auth:?}"
                );
            }
        }
    }
}

#[test]
fn the_key_travels_as_the_auth_style_says() {
    let header = |auth| {
        let codec = GeminiCodec::new(&codec_spec("https://r.example", "m", auth));
        codec.auth().map(|(name, value)| {
            assert!(value.is_sensitive(), "{auth:?}: marked sensitive");
            (name.as_str().to_owned(), value.to_str().unwrap().to_owned())
        })
    };
    assert_eq!(
        header(AuthStyle::Native),
        Some(("x-goog-api-key".into(), KEY.into()))
    );
    assert_eq!(
        header(AuthStyle::XGoogApiKey),
        Some(("x-goog-api-key".into(), KEY.into()))
    );
    assert_eq!(
        header(AuthStyle::Bearer),
        Some(("authorization".into(), format!("Bearer {KEY}")))
    );
    assert_eq!(
        header(AuthStyle::XApiKey),
        Some(("x-api-key".into(), KEY.into()))
    );
    assert_eq!(header(AuthStyle::Query), None, "the key is in the URL");
    let codec = GeminiCodec::new(&codec_spec("https://r.example", "m", AuthStyle::Native));
    assert!(codec.extra_headers().is_empty());
    assert!(!codec.stream_url("m").contains(KEY));
    assert!(!codec.check_url().contains(KEY));
}

#[test]
fn the_body_is_a_generate_content_request() {
    let spec = codec_spec("https://r.example", "gemini-2.5-flash", AuthStyle::Native);
    let codec = GeminiCodec::new(&spec);
    let outgoing = Outgoing {
        messages: vec![
            ChatMessage::new(Role::System, "Answer briefly."),
            ChatMessage::new(Role::User, "Hi"),
            ChatMessage::new(Role::Assistant, "Hello!"),
            ChatMessage::new(Role::Assistant, "How can I help?"),
            ChatMessage::new(Role::User, "Say hello."),
        ],
        max_tokens: Some(64),
    };
    let request = codec.request(&spec, &outgoing);
    assert_eq!(request.model, "gemini-2.5-flash");
    assert!(request.prompt_tokens_estimate > 0);
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello!"}, {"text": "How can I help?"}]},
                {"role": "user", "parts": [{"text": "Say hello."}]}
            ],
            "systemInstruction": {"parts": [{"text": "Answer briefly."}]},
            "generationConfig": {"maxOutputTokens": 64}
        })
    );
    assert_eq!(
        read_request(&request.body),
        Some((outgoing.messages.clone(), Some(64))),
        "read back for replay --against"
    );
}

#[test]
fn classify_google_and_relay_errors() {
    let codec = GeminiCodec::new(&codec_spec(
        "https://r.example",
        "gemini-2.5-flash",
        AuthStyle::Native,
    ));
    let none = HeaderMap::new();
    let bad_key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}},{"@type":"type.googleapis.com/google.rpc.LocalizedMessage","locale":"en-US","message":"API key not valid. Please pass a valid API key."}]}}"#;
    let f = codec.classify(400, &none, bad_key, false);
    assert_eq!((f.kind, f.action), (ErrorKind::Auth, Action::Stop));
    assert_eq!(
        f.message,
        "POST /v1beta/models/…:streamGenerateContent answered 400: API key not valid. Please pass a valid API key. (API_KEY_INVALID)"
    );
    let f = codec.classify(400, &none, bad_key, true);
    assert!(f.message.starts_with("GET /v1beta/models answered 400: "));

    let cases: [(u16, &[u8], ErrorKind, Action); 10] = [
        (
            400,
            br#"{"error":{"code":400,"message":"* GenerateContentRequest.contents: contents is not specified","status":"INVALID_ARGUMENT"}}"#,
            ErrorKind::InvalidRequest,
            Action::Fail,
        ),
        (
            403,
            br#"{"error":{"code":403,"message":"Method doesn't allow unregistered callers","status":"PERMISSION_DENIED"}}"#,
            ErrorKind::Auth,
            Action::Stop,
        ),
        (
            404,
            br#"{"error":{"code":404,"message":"models/gemini-9 is not found for API version v1beta","status":"NOT_FOUND"}}"#,
            ErrorKind::InvalidRequest,
            Action::Fail,
        ),
        (
            429,
            br#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}"#,
            ErrorKind::RateLimited,
            Action::Retry,
        ),
        (
            503,
            br#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
            ErrorKind::Overloaded,
            Action::Retry,
        ),
        (
            500,
            br#"{"error":{"code":500,"message":"An internal error has occurred.","status":"INTERNAL"}}"#,
            ErrorKind::Upstream,
            Action::Retry,
        ),
        (
            401,
            "{\"error\":{\"message\":\"无效的令牌 (request id: 2025)\",\"type\":\"new_api_error\"}}"
                .as_bytes(),
            ErrorKind::Auth,
            Action::Stop,
        ),
        (
            403,
            "{\"error\":{\"message\":\"用户额度不足, 剩余额度: $0.01\",\"type\":\"new_api_error\",\"code\":\"insufficient_user_quota\"}}"
                .as_bytes(),
            ErrorKind::RateLimited,
            Action::Stop,
        ),
        (
            429,
            "{\"error\":{\"message\":\"该令牌额度已用尽\",\"type\":\"new_api_error\"}}".as_bytes(),
            ErrorKind::RateLimited,
            Action::Stop,
        ),
        (502, b"<html>Bad Gateway</html>", ErrorKind::Upstream, Action::Retry),
    ];
    for (status, body, kind, action) in cases {
        let f = codec.classify(status, &none, body, false);
        assert_eq!(
            (f.kind, f.action),
            (kind, action),
            "{status} {}",
            String::from_utf8_lossy(body)
        );
        assert!(
            f.message.starts_with(&format!(
                "POST /v1beta/models/…:streamGenerateContent answered {status}: "
            )),
            "{}",
            f.message
        );
    }
    let f = codec.classify(429, &none, cases[3].1, false);
    assert!(f.message.contains("[retry in 30 s]"), "{}", f.message);
}

#[test]
fn the_key_is_in_no_name_or_message() {
    let encoded_key = "AIza/TEST+key=relaytop";
    let bodies: Vec<Vec<u8>> = vec![
        format!(r#"{{"error":{{"code":400,"message":"API key {KEY} not valid","status":"INVALID_ARGUMENT"}}}}"#)
            .into_bytes(),
        format!(r#"{{"error":{{"message":"bad key {KEY}","type":"x","code":"{KEY}"}}}}"#).into_bytes(),
        format!("<html>GET /v1beta/models?key={KEY} failed</html>").into_bytes(),
        format!("<html>key=AIza%2FTEST%2Bkey%3Drelaytop {encoded_key}</html>").into_bytes(),
        format!(r#"{{"message":"{KEY}"}}"#).into_bytes(),
        b"{}".to_vec(),
        Vec::new(),
    ];
    for auth in AUTH_STYLES {
        for key in [KEY, encoded_key] {
            let mut spec = codec_spec(
                "https://generativelanguage.googleapis.com?x=1",
                "gemini-2.5-flash",
                auth,
            );
            spec.api_key = Some(Secret::new(key));
            let codec = GeminiCodec::new(&spec);
            let mut said = vec![
                codec.check_name().to_owned(),
                codec.stream_name().to_owned(),
            ];
            for status in [400, 401, 403, 404, 429, 500, 503] {
                for body in &bodies {
                    for check in [false, true] {
                        said.push(
                            codec
                                .classify(status, &HeaderMap::new(), body, check)
                                .message,
                        );
                    }
                }
            }
            for text in said {
                assert!(!text.contains(key), "{auth:?}: {text}");
                if key == encoded_key {
                    assert!(!text.contains("AIza%2FTEST"), "{auth:?}: {text}");
                }
            }
        }
    }
}

#[test]
fn rate_limit_headers_only_when_a_relay_sends_them() {
    let codec = GeminiCodec::new(&codec_spec("https://r.example", "m", AuthStyle::Native));
    assert_eq!(codec.rate_limits(&HeaderMap::new()), None);
    let mut headers = HeaderMap::new();
    headers.insert("x-ratelimit-limit-requests", HeaderValue::from_static("60"));
    headers.insert(
        "x-ratelimit-remaining-requests",
        HeaderValue::from_static("59"),
    );
    assert!(matches!(
        codec.rate_limits(&headers),
        Some(EventKind::RateLimitStatus(status))
            if status.requests_limit == Some(60) && status.requests_remaining == Some(59)
    ));
}

// ------------------------------------------------------------------------------------------
// Sessions against the simulator (127.0.0.1, port 0)
// ------------------------------------------------------------------------------------------

const LONG: Duration = Duration::from_secs(10);

fn quick(ttft_ms: f64, tokens: u32) -> relaytop_sim::SimProfile {
    relaytop_sim::SimProfile {
        ttft_p50_ms: ttft_ms,
        ttft_p99_ms: ttft_ms,
        tokens_per_response: tokens,
        tokens_per_second: 1000.0,
        ..relaytop_sim::SimProfile::default()
    }
}

fn sim_spec(server: &relaytop_sim::SimServer, auth: AuthStyle) -> SessionSpec {
    use relaytop_core::world::SimulatedRelay;
    codec_spec(
        &SimulatedRelay::url(server, Protocol::Gemini),
        "gemini-2.5-flash",
        auth,
    )
}

fn is_done(k: &EventKind) -> bool {
    matches!(k, EventKind::Done(_))
}

/// Every event's text, for "the key is nowhere" checks.
fn said(s: &support::Watched) -> String {
    s.seen.iter().map(|e| format!("{:?}\n", e.kind)).collect()
}

#[tokio::test]
async fn a_session_streams_thoughts_then_the_answer_from_the_simulator() {
    let server = support::sim(relaytop_sim::SimProfile {
        cached_prompt_fraction: 0.5,
        thinking_tokens: 2,
        ..quick(120.0, 6)
    })
    .await;
    let mut s = support::watch(sim_spec(&server, AuthStyle::Native));
    let done = s
        .wait_for(LONG, is_done)
        .await
        .unwrap_or_else(|| panic!("no response:\n{}", s.story()));
    let EventKind::Done(completed) = done.kind else {
        unreachable!()
    };
    let Completed {
        ttft_us,
        answer_us,
        tokens,
        finish_reason,
        chunks,
        ..
    } = *completed;
    let ttft_ms = ttft_us.expect("a first token") as f64 / 1000.0;
    assert!(
        (120.0..600.0).contains(&ttft_ms),
        "TTFT {ttft_ms} ms for 120 ms"
    );
    assert!(
        answer_us.is_some_and(|a| a >= ttft_us.unwrap_or(0)),
        "the answer after the thoughts: {answer_us:?}"
    );
    // 6 tokens: 2 thinking, 4 answering; "Say hello." is 3 prompt tokens, 1 of them cached.
    assert_eq!(chunks, 4, "{}", s.story());
    assert_eq!(tokens, tokens_(3, 6, 1, 2));
    assert_eq!(finish_reason.as_deref(), Some("STOP"));
    assert_eq!(
        s.count(|k| matches!(
            k,
            EventKind::Malformed { .. } | EventKind::Error { .. } | EventKind::UnknownFrame { .. }
        )),
        0,
        "{}",
        s.story()
    );
    server.stop().await;
}

fn tokens_(input: u64, output: u64, cached: u64, reasoning: u64) -> Tokens {
    tokens(input, output, cached, reasoning)
}

#[tokio::test]
async fn the_query_auth_style_works_and_the_key_is_never_said() {
    let server = support::sim(relaytop_sim::SimProfile {
        accepted_keys: Some(vec![KEY.into()]),
        ..quick(10.0, 3)
    })
    .await;
    let mut s = support::watch(sim_spec(&server, AuthStyle::Query));
    s.wait_for(LONG, is_done)
        .await
        .unwrap_or_else(|| panic!("no response with ?key=:\n{}", s.story()));
    assert!(!said(&s).contains(KEY));
    server.stop().await;

    // A key the relay does not know: stopped at the check, without backing off or the key.
    let server = support::sim(relaytop_sim::SimProfile {
        accepted_keys: Some(vec!["AIzaSomeoneElse000000000000".into()]),
        ..quick(10.0, 3)
    })
    .await;
    let mut s = support::watch(sim_spec(&server, AuthStyle::Query));
    let stop = s
        .wait_for(LONG, |k| {
            matches!(
                k,
                EventKind::State(relaytop_core::session::SessionState::Stopped { .. })
            )
        })
        .await
        .unwrap_or_else(|| panic!("did not stop:\n{}", s.story()));
    let EventKind::State(relaytop_core::session::SessionState::Stopped { reason }) = stop.kind
    else {
        unreachable!()
    };
    // Google's answer to a key it does not know: 400 INVALID_ARGUMENT, API_KEY_INVALID.
    assert!(
        reason.contains("GET /v1beta/models answered 400") && reason.contains("API_KEY_INVALID"),
        "{reason}"
    );
    assert_eq!(s.count(|k| matches!(k, EventKind::BackingOff { .. })), 0);
    assert_eq!(
        s.count(|k| matches!(
            k,
            EventKind::Error {
                kind: ErrorKind::Auth,
                retryable: false,
                ..
            }
        )),
        1,
        "{}",
        s.story()
    );
    assert!(!said(&s).contains(KEY), "{}", said(&s));
    server.stop().await;
}

#[tokio::test]
async fn a_key_in_the_url_is_not_in_a_connection_error() {
    // Nothing listens there: the client's error names the URL it tried.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut spec = codec_spec(
        &format!("http://{addr}"),
        "gemini-2.5-flash",
        AuthStyle::Query,
    );
    spec.timing.backoff.max_attempts = 1;
    let mut s = support::watch(spec);
    s.wait_for(LONG, |k| {
        matches!(
            k,
            EventKind::Error {
                kind: ErrorKind::Network,
                ..
            }
        )
    })
    .await
    .unwrap_or_else(|| panic!("no connection error:\n{}", s.story()));
    s.collect_for(Duration::from_millis(200)).await;
    assert!(!said(&s).contains(KEY), "{}", said(&s));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any bytes, split anywhere: no panic, and at most one end (done, failed or cut).
    #[test]
    fn any_body_split_anywhere_never_panics(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
        piece in 1usize..64,
    ) {
        let mut d = GeminiDecoder::new();
        d.request_sent(Duration::ZERO, "m", 1);
        let mut ends = 0;
        let mut tally = |i: SseInbound| {
            if !matches!(i, SseInbound::Nothing | SseInbound::Text) {
                ends += 1;
            }
        };
        for bytes in body.chunks(piece) {
            tally(d.on_bytes(Duration::ZERO, bytes, &mut |_| {}, &mut |_| {}));
        }
        tally(d.on_end(Duration::ZERO, &mut |_| {}, &mut |_| {}));
        proptest::prop_assert!(ends <= 1);
    }

    /// Chunks of Gemini's shape with any text, flags and numbers: read, never a panic.
    #[test]
    fn any_chunk_shape_is_read(
        text in ".{0,40}",
        thought in proptest::prelude::any::<bool>(),
        count in proptest::prelude::any::<i64>(),
        finish in proptest::option::of("[A-Z_]{0,12}"),
    ) {
        let finish = finish.map(|f| format!(r#","finishReason":"{f}""#)).unwrap_or_default();
        let data = format!(
            r#"{{"candidates":[{{"content":{{"parts":[{{"text":{},"thought":{thought}}}]}}{finish}}}],"usageMetadata":{{"promptTokenCount":{count},"candidatesTokenCount":"{count}"}}}}"#,
            serde_json::to_string(&text).unwrap()
        );
        let mut d = GeminiDecoder::new();
        d.request_sent(Duration::ZERO, "m", 1);
        let mut events = Vec::new();
        d.on_event(Duration::ZERO, None, &data, &mut |e| events.push(e));
        proptest::prop_assert!(
            !events.iter().any(|e| matches!(e, EventKind::Malformed { .. })),
            "{data}: {events:?}"
        );
    }
}
