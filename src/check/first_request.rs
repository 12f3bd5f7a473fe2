//! The upgrade (WebSocket protocols) or first request (openai-sse), and `GET /v1/models`
//! for the key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

use relaytop_core::protocol::openai_chat::parse_error_body;
use relaytop_core::protocol::openai_realtime::{
    CLOSE_BETA_SHAPE_DISABLED, CLOSE_INVALID_API_KEY, REALTIME_PATH, ServerEvent, url_with_model,
};
use relaytop_core::protocol::relay_v1::STREAM_PATH;
use relaytop_core::session::Protocol;
use relaytop_core::session::connect::{self, ConnectError, ConnectRequest, Flavor};

use super::completion::model_of;
use super::key::Key;
use super::options::CheckOptions;
use super::report::Verdict;
use super::target::Target;
use super::walk::Walk;

pub(super) fn http_client(options: &CheckOptions) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(connect::ResolverHandle(options.resolver.clone())))
        .connect_timeout(options.timeout)
        .timeout(options.timeout)
        .user_agent(concat!("relaytop-check/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())
}

/// `GET url` with the key: status, the body, or a failure message.
/// A GET with the key as `target`'s protocol sends it (Bearer; Anthropic's `x-api-key` and
/// version; Gemini's `x-goog-api-key`), to `url`, or to the protocol's own check URL when
/// `url` is `None`.
pub(super) async fn get_with_key(
    options: &CheckOptions,
    target: &Target,
    url: Option<&str>,
    key: &Key,
) -> Result<(u16, Vec<u8>), reqwest::Error> {
    let client = match http_client(options) {
        Ok(client) => client,
        Err(_) => reqwest::Client::new(),
    };
    let spec = super::completion::session_spec(options, target, key, None);
    let mut request;
    match relaytop_core::session::http_check(&spec) {
        Some(check) => {
            request = client.get(url.unwrap_or(&check.url));
            for (name, value) in check.headers {
                request = request.header(name, value);
            }
        }
        None => {
            request = client.get(url.unwrap_or(&target.url));
            if let Some(secret) = &key.secret {
                request = request.bearer_auth(secret.expose());
            }
        }
    }
    let response = request.send().await.map_err(reqwest::Error::without_url)?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(reqwest::Error::without_url)?;
    Ok((status, body.iter().take(256 * 1024).copied().collect()))
}

pub(super) fn stalled_hint(target: &Target) -> String {
    if target.tls {
        "the server accepted the connection and sent nothing back: a stalled relay or a proxy holding the connection; try again later or ask its operator".into()
    } else {
        "the server accepted the connection and sent nothing back: a stalled relay, a proxy holding the connection, or a TLS port (try wss:// or https://)".into()
    }
}

pub(super) async fn check_first_request(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    walk: &mut Walk,
) -> bool {
    match target.protocol {
        Protocol::OpenaiSse
        | Protocol::AnthropicMessages
        | Protocol::OpenaiResponses
        | Protocol::Gemini => check_sse_request(options, target, key, walk).await,
        Protocol::RelayV1 | Protocol::OpenaiRealtime => {
            check_upgrade(options, target, key, walk).await
        }
    }
}

pub(super) async fn check_upgrade(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    walk: &mut Walk,
) -> bool {
    let started = Instant::now();
    let model = model_of(options, target.protocol);
    let (url, flavor) = match target.protocol {
        Protocol::OpenaiRealtime => (url_with_model(&target.url, &model), Flavor::Realtime),
        _ => (target.url.clone(), Flavor::RelayV1),
    };
    let request = ConnectRequest {
        url: &url,
        api_key: key.secret.as_ref(),
        model: &model,
        timeout: options.timeout,
        resolver: Some(&options.resolver),
    };
    let (mut socket, response) = match connect::connect_as(&request, flavor).await {
        Ok(ok) => ok,
        Err(error) => {
            let (detail, hint) = upgrade_failure(&error, target, key, options.timeout);
            walk.fail("upgrade", started, detail, hint);
            return false;
        }
    };
    let status = response.status().as_u16();
    if target.protocol == Protocol::RelayV1 {
        let _ = socket.close(None).await;
        walk.record(
            "upgrade",
            Some(started),
            pass_or_warn(key),
            format!("{status} Switching Protocols"),
            key.note(),
        );
        return true;
    }
    // Realtime: a key is refused only after the upgrade, by an error and a close.
    let first = tokio::time::timeout(options.timeout, async {
        let mut error_text = None;
        while let Some(message) = socket.next().await {
            match message {
                Ok(tokio_tungstenite::tungstenite::Message::Text(text)) => {
                    match ServerEvent::parse(text.as_str()) {
                        Ok(ServerEvent::SessionCreated) => return Ok(()),
                        Ok(ServerEvent::Error(error)) => error_text = Some(error.summary()),
                        _ => {}
                    }
                }
                Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) => {
                    let code = frame.as_ref().map_or(1005, |f| u16::from(f.code));
                    return Err((Some(code), error_text));
                }
                Ok(_) => {}
                Err(_) => return Err((None, error_text)),
            }
        }
        Err((None, error_text))
    })
    .await;
    let _ = socket.close(None).await;
    match first {
        Ok(Ok(())) => {
            walk.record(
                "upgrade",
                Some(started),
                pass_or_warn(key),
                format!("{status} Switching Protocols, session.created"),
                key.note(),
            );
            true
        }
        Ok(Err((code, error))) => {
            let said = error.map(|e| format!(": {e}")).unwrap_or_default();
            let (detail, hint) = match code {
                Some(CLOSE_INVALID_API_KEY) => (
                    format!("101, then an error and close 3000 (invalid_api_key){said}"),
                    key.hint(),
                ),
                Some(CLOSE_BETA_SHAPE_DISABLED) => (
                    format!("101, then close 4000 (beta_api_shape_disabled){said}"),
                    "this endpoint speaks the GA Realtime shape only: send no OpenAI-Beta header (relaytop does not)".into(),
                ),
                Some(code) => (
                    format!("101, then close {code}{said}"),
                    "the endpoint closed before session.created: check the model in ?model= and the key".into(),
                ),
                None => (
                    format!("101, then the connection ended{said}"),
                    "the endpoint dropped the connection before session.created".into(),
                ),
            };
            walk.fail("upgrade", started, detail, hint);
            false
        }
        Err(_) => {
            walk.fail(
                "upgrade",
                started,
                format!(
                    "101, but no session.created within {:.0} s",
                    options.timeout.as_secs_f64()
                ),
                stalled_hint(target),
            );
            false
        }
    }
}

pub(super) fn pass_or_warn(key: &Key) -> Verdict {
    if key.padded {
        Verdict::Warn
    } else {
        Verdict::Pass
    }
}

pub(super) fn upgrade_failure(
    error: &ConnectError,
    target: &Target,
    key: &Key,
    timeout: Duration,
) -> (String, String) {
    match error {
        ConnectError::Upgrade {
            status: 401 | 403,
            message,
            ..
        } => (
            format!("the upgrade was answered {}: {message}", status_of(error)),
            key.hint(),
        ),
        ConnectError::Upgrade {
            status: 429,
            retry_after,
            message,
        } => (
            format!("429: {message}"),
            match retry_after {
                Some(wait) => format!(
                    "rate limited: the relay asks to wait {:.0} s; too many connections from this key?",
                    wait.as_secs_f64()
                ),
                None => "rate limited: too many connections or requests from this key".into(),
            },
        ),
        ConnectError::Upgrade {
            status: 404 | 426 | 400 | 405,
            message,
            ..
        } => (
            format!("the upgrade was answered {}: {message}", status_of(error)),
            match target.protocol {
                Protocol::OpenaiRealtime => {
                    format!("wrong path? the Realtime API is at {REALTIME_PATH}")
                }
                _ => format!("wrong path? relay/v1 streams at {STREAM_PATH}"),
            },
        ),
        ConnectError::Upgrade { message, .. } => (
            format!("the upgrade was answered {}: {message}", status_of(error)),
            "the relay is failing: retry later, or ask its operator".into(),
        ),
        ConnectError::Timeout(_) => (
            format!(
                "TCP connected, but no answer to the upgrade within {:.0} s",
                timeout.as_secs_f64()
            ),
            stalled_hint(target),
        ),
        ConnectError::Handshake(e) => (
            format!("the upgrade failed: {e}"),
            if target.tls {
                "the server does not speak WebSocket here: check the path and the port".into()
            } else {
                "the server does not speak WebSocket here (is it a TLS port? try wss://)".into()
            },
        ),
        other => (other.to_string(), "see the steps above".into()),
    }
}

pub(super) fn status_of(error: &ConnectError) -> u16 {
    match error {
        ConnectError::Upgrade { status, .. } => *status,
        _ => 0,
    }
}

pub(super) async fn check_sse_request(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    walk: &mut Walk,
) -> bool {
    let started = Instant::now();
    let url = checked_url(options, target, key);
    match get_with_key(options, target, None, key).await {
        Ok((status, body)) => {
            // Read as the protocol reads it: Google answers a bad key 400 API_KEY_INVALID,
            // Anthropic and new-api say it in their own shapes.
            let spec = super::completion::session_spec(options, target, key, None);
            let failure = (!(200..300).contains(&status) && !matches!(status, 404 | 405))
                .then(|| {
                    relaytop_core::session::http_classify(
                        &spec,
                        status,
                        &reqwest::header::HeaderMap::new(),
                        &body,
                        true,
                    )
                })
                .flatten();
            let error = parse_error_body(&body);
            let bad_key = status == 401
                || error.as_ref().is_some_and(|e| e.is_bad_key())
                || failure.as_ref().is_some_and(|f| {
                    f.kind == relaytop_core::session::ErrorKind::Auth
                        && f.action == relaytop_core::transport::http_stream::Action::Stop
                });
            if bad_key {
                let said = match &failure {
                    Some(f) => f.message.clone(),
                    None => format!(
                        "GET {url} answered {status}: {}",
                        error.map(|e| e.summary()).unwrap_or_default()
                    ),
                };
                walk.fail("request", started, said, key.hint());
                return false;
            }
            // A refusal whose body says why is not a pass (404 and 405: a path without GET).
            if (400..500).contains(&status)
                && !matches!(status, 404 | 405)
                && let Some(error) = &error
            {
                walk.fail(
                    "request",
                    started,
                    format!("GET {url} answered {status}: {}", error.summary()),
                    "the relay refused the request: its reason is above".into(),
                );
                return false;
            }
            if status >= 500 {
                walk.fail(
                    "request",
                    started,
                    format!("GET {url} answered {status}"),
                    "the relay is failing: retry later, or ask its operator".into(),
                );
                return false;
            }
            walk.record(
                "request",
                Some(started),
                pass_or_warn(key),
                format!("GET {url} answered {status}"),
                key.note(),
            );
            true
        }
        Err(e) => {
            let (detail, hint) = if e.is_timeout() {
                (
                    format!(
                        "TCP connected, but no answer to GET {url} within {:.0} s",
                        options.timeout.as_secs_f64()
                    ),
                    stalled_hint(target),
                )
            } else {
                (
                    format!("GET {url} failed: {}", chain(&e)),
                    "the server does not speak HTTP here: check the port and the scheme".into(),
                )
            };
            walk.fail("request", started, detail, hint);
            false
        }
    }
}

pub(super) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// The REST URL of `/v1/models` beside a WebSocket URL (ws→http, wss→https).
/// The protocol's check URL as shown (without a query, where a key may travel).
fn checked_url(options: &CheckOptions, target: &Target, key: &Key) -> String {
    let spec = super::completion::session_spec(options, target, key, None);
    relaytop_core::session::http_check(&spec)
        .map(|c| c.shown_url().to_owned())
        .unwrap_or_else(|| target.url.clone())
}

pub(super) fn websocket_models_url(target: &Target) -> String {
    let scheme = if target.tls { "https" } else { "http" };
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    format!("{scheme}://{host}:{}/v1/models", target.port)
}

pub(super) async fn check_models(
    options: &CheckOptions,
    target: &Target,
    key: &Key,
    walk: &mut Walk,
) -> bool {
    let started = Instant::now();
    let (url, ask) = if target.protocol.is_http_stream() {
        (checked_url(options, target, key), None)
    } else {
        let url = websocket_models_url(target);
        (url.clone(), Some(url))
    };
    let model = model_of(options, target.protocol);
    match get_with_key(options, target, ask.as_deref(), key).await {
        Ok((200, body)) => {
            // OpenAI's and Anthropic's `data[].id`, Gemini's `models[].name` (`models/…`).
            #[derive(serde::Deserialize)]
            struct List {
                #[serde(default)]
                data: Vec<Entry>,
                #[serde(default)]
                models: Vec<GeminiEntry>,
            }
            #[derive(serde::Deserialize)]
            struct Entry {
                id: String,
            }
            #[derive(serde::Deserialize)]
            struct GeminiEntry {
                name: String,
            }
            let list: Option<Vec<String>> =
                serde_json::from_slice::<List>(&body)
                    .ok()
                    .map(|l| {
                        l.data
                            .into_iter()
                            .map(|e| e.id)
                            .chain(l.models.into_iter().map(|m| {
                                m.name.strip_prefix("models/").unwrap_or(&m.name).to_owned()
                            }))
                            .collect()
                    })
                    .filter(|ids: &Vec<String>| !ids.is_empty());
            match list {
                Some(ids) => {
                    let listed = ids.contains(&model);
                    let detail = format!(
                        "{} models for this key; {model} {}",
                        ids.len(),
                        if listed { "is listed" } else { "is not listed" }
                    );
                    if listed {
                        walk.pass("models", started, detail);
                    } else {
                        walk.record(
                            "models",
                            Some(started),
                            Verdict::Warn,
                            detail,
                            Some("pass --model with one of the listed models if the completion fails".into()),
                        );
                    }
                }
                None => walk.record(
                    "models",
                    Some(started),
                    Verdict::Warn,
                    "200, but not a model list".into(),
                    Some(
                        "the relay's model list is not in OpenAI, Anthropic or Gemini shape; the key may still be good"
                            .into(),
                    ),
                ),
            }
            true
        }
        Ok((401 | 403, body)) => {
            let said = parse_error_body(&body)
                .map(|e| e.summary())
                .unwrap_or_default();
            walk.fail(
                "models",
                started,
                format!("GET {url}: 401 {said}"),
                key.hint(),
            );
            false
        }
        Ok((status, _)) => {
            walk.record(
                "models",
                Some(started),
                Verdict::Warn,
                format!("GET {url} answered {status}"),
                Some("this relay does not list models; the key is tested by the completion".into()),
            );
            true
        }
        Err(e) => {
            walk.record(
                "models",
                Some(started),
                Verdict::Warn,
                format!("GET {url} failed: {}", chain(&e)),
                Some("this relay serves no REST beside the stream; the key is tested by the completion".into()),
            );
            true
        }
    }
}
