//! One simulated relay connection's start: the HTTP request head, the key and upgrade checks,
//! and the route by path to the protocol that serves it (`relay_v1`, `openai_realtime`, or the
//! SSE format's `stream::Shape`), or a plain-HTTP answer (`/v1/models`, `/v1beta/models`,
//! wrong methods, unknown paths).
//! The protocol's task owns the socket from there; it shares nothing with other connections
//! but the live profile and the stats counters.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

use super::http::{self, HeadError, RequestHead};
use super::server::{MODELS_PATH, Shared, bump};
use relaytop_core::config::sim_profile::SimProfile;
use relaytop_core::protocol::openai_chat::CHAT_COMPLETIONS_PATH;
use relaytop_core::protocol::openai_realtime::REALTIME_PATH;
use relaytop_core::protocol::relay_v1::STREAM_PATH;

/// Gemini's model list.
const GEMINI_MODELS_PATH: &str = "/v1beta/models";

/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Serves one accepted TCP connection until it ends.
pub(crate) async fn serve(mut tcp: TcpStream, connection_number: u64, shared: Arc<Shared>) {
    let (head, leftover) = match http::read_head(&mut tcp, HEAD_TIMEOUT).await {
        Ok(read) => read,
        Err(HeadError::Gone) => return,
        Err(HeadError::Bad { status, why }) => {
            let response = http::json_response(status, &[], &http::error_body(why));
            http::respond_and_close(tcp, &response).await;
            return;
        }
    };
    let live = shared.live_profile();
    if head.path == REALTIME_PATH && head.wants_websocket {
        // A bad key is told after the upgrade, as the Realtime API does.
        match check_upgrade(&head, &live, false) {
            Ok(websocket_key) => {
                let switching = http::switching_protocols(&websocket_key);
                if tcp.write_all(switching.as_bytes()).await.is_ok() {
                    super::openai_realtime::serve(tcp, leftover, &head, connection_number, shared)
                        .await;
                }
            }
            Err(refusal) => {
                bump(&shared.stats.upgrades_rejected);
                http::respond_and_close(tcp, &refusal).await;
            }
        }
        return;
    }
    if super::stream::shape_for(&head).is_some() {
        super::stream::serve(tcp, head, leftover, connection_number, shared).await;
        return;
    }
    if head.path == STREAM_PATH && head.wants_websocket {
        match check_upgrade(&head, &live, true) {
            Ok(websocket_key) => {
                let switching = http::switching_protocols(&websocket_key);
                if tcp.write_all(switching.as_bytes()).await.is_ok() {
                    let profile = live.profile.clone();
                    let seed = profile.seed.wrapping_add(connection_number);
                    super::relay_v1::serve(tcp, leftover, seed, profile, shared).await;
                }
            }
            Err(refusal) => {
                bump(&shared.stats.upgrades_rejected);
                http::respond_and_close(tcp, &refusal).await;
            }
        }
        return;
    }
    let answer = plain_http_answer(&head, &live.profile, &shared);
    http::respond_and_close(tcp, &answer).await;
}

/// The answer to a request that is neither a WebSocket upgrade nor a chat completion.
pub(super) fn plain_http_answer(
    head: &RequestHead,
    profile: &SimProfile,
    shared: &Shared,
) -> String {
    if let Some(answer) = shared.account.answer(head, profile) {
        return answer;
    }
    let path = head.path.as_str();
    match (head.method.as_str(), path) {
        ("GET", MODELS_PATH | GEMINI_MODELS_PATH) => {
            match http::check_request_key(head, profile.accepted_keys.as_deref()) {
                Ok(()) => http::json_response(200, &[], &http::models_body_for(head)),
                Err(why) => super::stream::refusal_response(
                    super::stream::shape_of_models(head),
                    &super::stream::Refusal {
                        status: 401,
                        kind: super::stream::RefusalKind::Key,
                        message: format!("Incorrect API key provided: {why}"),
                        retry_after_ms: None,
                    },
                ),
            }
        }
        ("GET", STREAM_PATH | REALTIME_PATH) => http::json_response(
            426,
            &[("Upgrade", "websocket")],
            &http::error_body("this is a WebSocket endpoint: send an upgrade request"),
        ),
        (_, MODELS_PATH | STREAM_PATH | REALTIME_PATH) => http::json_response(
            405,
            &[("Allow", "GET")],
            &http::error_body("only GET is served here"),
        ),
        (_, CHAT_COMPLETIONS_PATH) => http::json_response(
            405,
            &[("Allow", "POST")],
            &http::error_body("only POST is served here"),
        ),
        (method, _) => {
            let message = format!("no route for {method} {path}");
            http::json_response(404, &[], &http::error_body(&message))
        }
    }
}

/// Decides a WebSocket upgrade: the `Sec-WebSocket-Key` to answer `101` with, or the whole
/// HTTP answer that refuses it.
fn check_upgrade(
    head: &RequestHead,
    live: &super::server::LiveProfile,
    check_api_key: bool,
) -> Result<String, String> {
    let refuse = |status, headers: &[(&str, &str)], message: &str| {
        http::json_response(status, headers, &http::error_body(message))
    };
    if head.method != "GET" {
        return Err(refuse(
            405,
            &[("Allow", "GET")],
            "a WebSocket upgrade must be a GET",
        ));
    }
    if head.websocket_version.as_deref() != Some("13") {
        return Err(refuse(
            426,
            &[("Sec-WebSocket-Version", "13")],
            "only WebSocket version 13 is spoken here",
        ));
    }
    let Some(key) = head.websocket_key.clone() else {
        return Err(refuse(400, &[], "the upgrade has no Sec-WebSocket-Key"));
    };
    if let Some(rejection) = live.take_upgrade_rejection() {
        let retry_after = rejection.retry_after.as_deref().map(|v| ("Retry-After", v));
        return Err(refuse(
            rejection.status,
            retry_after.as_slice(),
            rejection.message(),
        ));
    }
    if !check_api_key {
        return Ok(key);
    }
    let profile = &live.profile;
    http::check_key(
        head.authorization.as_deref(),
        profile.accepted_keys.as_deref(),
    )
    .map_err(|why| refuse(401, &[], &why))?;
    Ok(key)
}

/// The TCP stream under the WebSocket, with a switch that swallows writes: the one way to keep
/// tungstenite's automatic Pong answer off the wire when pings must go unanswered.
pub(super) struct SimStream {
    pub(super) tcp: TcpStream,
    /// While set, writes are reported done and dropped.
    pub(super) mute: bool,
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.mute {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
