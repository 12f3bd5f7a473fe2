//! The simulator's openai-realtime side: `GET /v1/realtime` upgraded to a WebSocket that
//! speaks the Realtime API's GA events (text only), driven by the same profile knobs as
//! relay/v1: time to first token, tokens per second, drops (abrupt or a close code), failed
//! responses (`response.done` with status `failed`), rate limits (`rate_limit_exceeded`),
//! stalls, unanswered WebSocket Pings, idle cut-offs and malformed frames.
//!
//! As the real service does, a bad key is told after the upgrade (an `error` event with
//! `invalid_api_key`, then close 3000), and a beta client (`OpenAI-Beta` header) gets
//! `beta_api_shape_disabled` and close 4000. The official OpenAI SDKs' realtime clients work
//! against it unchanged.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::conn::SimStream;
use super::http::{self, RequestHead};
use super::server::{Shared, bump};
use relaytop_core::config::sim_profile::{DropMode, SimProfile, chance};
use relaytop_core::protocol::openai_realtime::{
    CLOSE_BETA_SHAPE_DISABLED, CLOSE_INVALID_API_KEY, ClientEvent, Item,
};

/// Largest message accepted from a client (audio travels as base64 in JSON).
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Items a conversation keeps; older ones are dropped (the service truncates too).
const MAX_ITEMS: usize = 512;
/// How long a simulated close waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// The model a session reports.
const MODEL: &str = "gpt-realtime";
/// The malformed frames `malformed_rate` injects, in turn.
const MALFORMED_FRAMES: [&str; 2] = [
    r#"{"type":"response.output_text.delta","delta":"#,
    r#"{"type":"sim.noise"}"#,
];

/// Serves an upgraded Realtime connection (the `101` is already written).
pub(crate) async fn serve(
    tcp: TcpStream,
    leftover: Vec<u8>,
    head: &RequestHead,
    connection_number: u64,
    shared: Arc<Shared>,
) {
    let profile = shared.live_profile().profile.clone();
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let stream = SimStream { tcp, mute: false };
    let mut ws =
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config)).await;
    let refusal = if head.openai_beta.is_some() {
        Some((
            CLOSE_BETA_SHAPE_DISABLED,
            "beta_api_shape_disabled",
            "The beta Realtime API shape is disabled on this endpoint: drop the OpenAI-Beta header and use the GA shape.".to_owned(),
        ))
    } else {
        http::check_key(
            head.authorization.as_deref(),
            profile.accepted_keys.as_deref(),
        )
        .err()
        .map(|why| {
            (
                CLOSE_INVALID_API_KEY,
                "invalid_api_key",
                format!("Incorrect API key provided: {why}"),
            )
        })
    };
    if let Some((close_code, code, message)) = refusal {
        let error = json!({
            "type": "error",
            "event_id": "event_0",
            "error": { "type": "invalid_request_error", "code": code, "message": message, "param": null, "event_id": null }
        });
        let _ = ws.send(Message::text(error.to_string())).await;
        let frame = CloseFrame {
            code: CloseCode::from(close_code),
            reason: Utf8Bytes::from(code),
        };
        if ws.close(Some(frame)).await.is_ok() {
            let _ = timeout(CLOSE_WAIT, async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
        bump(&shared.stats.upgrades_rejected);
        return;
    }
    let seed = profile.seed.wrapping_add(connection_number);
    Session::new(ws, seed, profile, shared, connection_number)
        .run()
        .await;
}

/// A conversation item the simulated server holds.
struct SimItem {
    id: String,
    text: String,
}

/// A response under way.
struct Response {
    id: String,
    item_id: String,
    profile: Arc<SimProfile>,
    rate_limited: bool,
    fails: bool,
    stalls: bool,
    total: u32,
    sent: u32,
    drop_at: Option<u32>,
    first_due: Instant,
    interval: Option<Duration>,
    /// `None`: stalled, nothing more comes.
    next_due: Option<Instant>,
    text: String,
    input_tokens: u64,
}

impl Response {
    fn due(&self, index: u32) -> Instant {
        self.interval
            .and_then(|i| i.checked_mul(index))
            .and_then(|offset| self.first_due.checked_add(offset))
            .unwrap_or(self.first_due)
    }
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event_id: String,
    response_id: &'a str,
    item_id: &'a str,
    output_index: u32,
    content_index: u32,
    delta: &'a str,
}

enum Wake {
    Client(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    ResponseDue,
    IdleCutoff,
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    End,
}

struct Session {
    ws: WebSocketStream<SimStream>,
    shared: Arc<Shared>,
    profile: Arc<SimProfile>,
    rng: SmallRng,
    session_id: String,
    last_heard: Instant,
    events_sent: u64,
    ids: u64,
    instructions: Option<String>,
    items: Vec<SimItem>,
    response: Option<Response>,
    next_malformed: usize,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared
            .stats
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
        if self.response.is_some() {
            bump(&self.shared.stats.responses_dropped);
        }
    }
}

async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn tokens_of(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

impl Session {
    fn new(
        ws: WebSocketStream<SimStream>,
        seed: u64,
        profile: Arc<SimProfile>,
        shared: Arc<Shared>,
        connection_number: u64,
    ) -> Self {
        bump(&shared.stats.connections_accepted);
        bump(&shared.stats.open_connections);
        Self {
            ws,
            shared,
            profile,
            rng: SmallRng::seed_from_u64(seed),
            session_id: format!("sess_sim{connection_number}"),
            last_heard: Instant::now(),
            events_sent: 0,
            ids: 0,
            instructions: None,
            items: Vec::new(),
            response: None,
            next_malformed: 0,
        }
    }

    fn event_id(&mut self) -> String {
        self.events_sent += 1;
        format!("event_sim{}", self.events_sent)
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.ids += 1;
        format!("{prefix}_sim{}", self.ids)
    }

    fn session_json(&self) -> serde_json::Value {
        json!({
            "id": self.session_id,
            "object": "realtime.session",
            "type": "realtime",
            "model": MODEL,
            "output_modalities": ["text"],
            "instructions": self.instructions.clone().unwrap_or_default(),
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
        })
    }

    /// Queues one event (sent at the next flush).
    async fn feed(&mut self, event: serde_json::Value) -> Flow {
        let mut event = event;
        if let Some(object) = event.as_object_mut() {
            let id = self.event_id();
            object.insert("event_id".into(), json!(id));
        }
        match self.ws.feed(Message::text(event.to_string())).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::End,
        }
    }

    async fn flush(&mut self) -> Flow {
        match self.ws.flush().await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::End,
        }
    }

    async fn send(&mut self, event: serde_json::Value) -> Flow {
        if self.feed(event).await == Flow::End {
            return Flow::End;
        }
        self.flush().await
    }

    async fn error(&mut self, kind: &str, code: Option<&str>, message: &str) -> Flow {
        self.send(json!({
            "type": "error",
            "error": { "type": kind, "code": code, "message": message, "param": null, "event_id": null }
        }))
        .await
    }

    async fn run(mut self) {
        let created = json!({ "type": "session.created", "session": self.session_json() });
        if self.send(created).await == Flow::End {
            return;
        }
        loop {
            let response_due = self.response.as_ref().and_then(|r| r.next_due);
            let idle_cutoff = self
                .profile
                .idle_cutoff_ms
                .map(|ms| self.last_heard + Duration::from_millis(ms));
            let wake = tokio::select! {
                biased;
                message = self.ws.next() => Wake::Client(message),
                () = until(idle_cutoff) => Wake::IdleCutoff,
                () = until(response_due) => Wake::ResponseDue,
            };
            let flow = match wake {
                Wake::Client(Some(Ok(message))) => self.on_message(message).await,
                Wake::Client(Some(Err(_)) | None) => Flow::End,
                Wake::ResponseDue => self.stream().await,
                Wake::IdleCutoff => {
                    let _ = self.ws.get_mut().tcp.shutdown().await;
                    Flow::End
                }
            };
            if flow == Flow::End {
                return;
            }
        }
    }

    async fn on_message(&mut self, message: Message) -> Flow {
        self.last_heard = Instant::now();
        self.profile = self.shared.live_profile().profile.clone();
        match message {
            Message::Text(text) => self.on_event(text.as_str()).await,
            Message::Binary(_) => {
                self.error(
                    "invalid_request_error",
                    Some("binary_frame"),
                    "events are JSON text frames; audio travels base64-encoded in input_audio_buffer.append",
                )
                .await
            }
            Message::Ping(_) => {
                // As in relay/v1's simulator: tungstenite queued the Pong; swallow it when the
                // profile plays a half-open peer.
                let answer = self.profile.answer_pings;
                if answer {
                    bump(&self.shared.stats.pings_answered);
                }
                self.ws.get_mut().mute = !answer;
                let flushed = self.ws.flush().await;
                self.ws.get_mut().mute = false;
                if flushed.is_ok() { Flow::Continue } else { Flow::End }
            }
            Message::Pong(_) | Message::Close(_) | Message::Frame(_) => Flow::Continue,
        }
    }

    async fn on_event(&mut self, text: &str) -> Flow {
        let event = match ClientEvent::parse(text) {
            Ok(event) => event,
            Err(e) => {
                let message = format!("cannot read this event: {e}");
                return self
                    .error("invalid_request_error", Some("invalid_value"), &message)
                    .await;
            }
        };
        match event {
            ClientEvent::SessionUpdate { session } => {
                if let Some(instructions) = session.instructions {
                    self.instructions = Some(instructions);
                }
                let updated = json!({ "type": "session.updated", "session": self.session_json() });
                self.send(updated).await
            }
            ClientEvent::ConversationItemCreate { item } => self.add_item(item).await,
            ClientEvent::ConversationItemDelete { item_id } => {
                let before = self.items.len();
                self.items.retain(|i| i.id != item_id);
                if self.items.len() == before {
                    let message = format!(
                        "Error deleting item: the item with id '{item_id}' does not exist."
                    );
                    return self
                        .error(
                            "invalid_request_error",
                            Some("item_delete_invalid_item_id"),
                            &message,
                        )
                        .await;
                }
                self.send(json!({ "type": "conversation.item.deleted", "item_id": item_id }))
                    .await
            }
            ClientEvent::ResponseCreate { response } => {
                let max = response
                    .and_then(|r| r.max_output_tokens)
                    .and_then(|m| m.limit());
                self.start_response(max).await
            }
            ClientEvent::ResponseCancel { .. } => self.cancel().await,
            ClientEvent::InputAudioBufferAppend { .. }
            | ClientEvent::InputAudioBufferCommit
            | ClientEvent::InputAudioBufferClear => {
                self.error(
                    "invalid_request_error",
                    Some("not_simulated"),
                    "audio input is not simulated: send text items",
                )
                .await
            }
        }
    }

    async fn add_item(&mut self, item: Item) -> Flow {
        let id = match item.id.clone() {
            Some(id) => id,
            None => self.new_id("item"),
        };
        let previous = self.items.last().map(|i| i.id.clone());
        let text = item.text();
        let mut shown = serde_json::to_value(&item).unwrap_or_else(|_| json!({}));
        if let Some(object) = shown.as_object_mut() {
            object.insert("id".into(), json!(id));
            object.insert("object".into(), json!("realtime.item"));
            object.insert("status".into(), json!("completed"));
        }
        if self.items.len() >= MAX_ITEMS {
            self.items.remove(0);
        }
        self.items.push(SimItem { id, text });
        let added = json!({ "type": "conversation.item.added", "previous_item_id": previous, "item": shown.clone() });
        let done = json!({ "type": "conversation.item.done", "previous_item_id": previous, "item": shown });
        if self.feed(added).await == Flow::End || self.feed(done).await == Flow::End {
            return Flow::End;
        }
        self.flush().await
    }

    async fn start_response(&mut self, max_tokens: Option<u32>) -> Flow {
        bump(&self.shared.stats.requests);
        if self.response.is_some() {
            return self
                .error(
                    "invalid_request_error",
                    Some("conversation_already_has_active_response"),
                    "Conversation already has an active response in progress",
                )
                .await;
        }
        let profile = self.profile.clone();
        let received = Instant::now();
        let rng = &mut self.rng;
        let rate_limited = chance(rng, profile.rate_limit_rate);
        let fails = chance(rng, profile.error_rate);
        let stalls = chance(rng, profile.stall_rate);
        let total = max_tokens.map_or(profile.tokens_per_response, |m| {
            m.min(profile.tokens_per_response)
        });
        let drop_at = chance(rng, profile.drop_rate).then(|| {
            if total >= 2 {
                rng.random_range(1..total)
            } else {
                0
            }
        });
        let first_due = if rate_limited {
            received
        } else {
            received + profile.time_to_first_token().sample(rng)
        };
        let input_tokens = self.instructions.as_deref().map_or(0, tokens_of)
            + self.items.iter().map(|i| tokens_of(&i.text)).sum::<u64>();
        let id = self.new_id("resp");
        let item_id = self.new_id("item");
        let response = Response {
            id: id.clone(),
            item_id: item_id.clone(),
            rate_limited,
            fails,
            stalls,
            total,
            sent: 0,
            drop_at,
            first_due,
            interval: profile.token_interval(),
            next_due: Some(first_due),
            text: String::new(),
            input_tokens,
            profile,
        };
        self.response = Some(response);
        let created = json!({
            "type": "response.created",
            "response": { "id": id, "object": "realtime.response", "status": "in_progress", "status_details": null, "output": [], "usage": null }
        });
        if self.feed(created).await == Flow::End {
            return Flow::End;
        }
        if !rate_limited {
            let item = json!({ "id": item_id, "object": "realtime.item", "type": "message", "status": "in_progress", "role": "assistant", "content": [] });
            let added = json!({ "type": "response.output_item.added", "response_id": id, "output_index": 0, "item": item });
            let part = json!({ "type": "response.content_part.added", "response_id": id, "item_id": item_id, "output_index": 0, "content_index": 0, "part": { "type": "text", "text": "" } });
            if self.feed(added).await == Flow::End || self.feed(part).await == Flow::End {
                return Flow::End;
            }
        }
        self.flush().await
    }

    /// Sends what is due of the response under way.
    async fn stream(&mut self) -> Flow {
        let Some(mut r) = self.response.take() else {
            return Flow::Continue;
        };
        if r.rate_limited {
            return self
                .finish_failed(
                    &r,
                    "rate_limit_error",
                    "rate_limit_exceeded",
                    "Rate limit reached for requests (simulated): retry later",
                )
                .await;
        }
        if r.fails {
            return self
                .finish_failed(
                    &r,
                    "server_error",
                    "upstream_error",
                    "The upstream model failed (simulated)",
                )
                .await;
        }
        if r.stalls {
            // Silent from here on; the response stays open.
            r.next_due = None;
            self.response = Some(r);
            return Flow::Continue;
        }
        let now = Instant::now();
        while r.sent < r.total && r.due(r.sent) <= now {
            if r.drop_at == Some(r.sent) {
                let mode = r.profile.drop_mode;
                self.response = Some(r);
                if self.flush().await == Flow::End {
                    return Flow::End;
                }
                return self.drop_connection(mode).await;
            }
            let word = r.profile.chunk_word(r.sent).to_owned();
            r.text.push_str(&word);
            r.sent += 1;
            let event_id = self.event_id();
            let delta = Delta {
                kind: "response.output_text.delta",
                event_id,
                response_id: &r.id,
                item_id: &r.item_id,
                output_index: 0,
                content_index: 0,
                delta: &word,
            };
            let text = serde_json::to_string(&delta).unwrap_or_default();
            if self.ws.feed(Message::text(text)).await.is_err() {
                return Flow::End;
            }
            if chance(&mut self.rng, r.profile.malformed_rate) {
                let noise = MALFORMED_FRAMES[self.next_malformed];
                self.next_malformed = (self.next_malformed + 1) % MALFORMED_FRAMES.len();
                if self
                    .ws
                    .feed(Message::Text(Utf8Bytes::from_static(noise)))
                    .await
                    .is_err()
                {
                    return Flow::End;
                }
            }
        }
        if r.sent >= r.total {
            // Cut short by `max_output_tokens`: the service says "incomplete".
            if r.total < r.profile.tokens_per_response {
                return self
                    .finish(r, "incomplete", Some("max_output_tokens"))
                    .await;
            }
            return self.finish(r, "completed", None).await;
        }
        r.next_due = Some(r.due(r.sent));
        self.response = Some(r);
        self.flush().await
    }

    fn usage(&self, r: &Response) -> serde_json::Value {
        let cached =
            (r.input_tokens as f64 * r.profile.cached_prompt_fraction.clamp(0.0, 1.0)) as u64;
        let output = u64::from(r.sent);
        json!({
            "total_tokens": r.input_tokens + output,
            "input_tokens": r.input_tokens,
            "output_tokens": output,
            "input_token_details": {
                "text_tokens": r.input_tokens, "audio_tokens": 0, "image_tokens": 0,
                "cached_tokens": cached,
                "cached_tokens_details": { "text_tokens": cached, "audio_tokens": 0, "image_tokens": 0 }
            },
            "output_token_details": { "text_tokens": output, "audio_tokens": 0 }
        })
    }

    /// Ends the response with `response.done` (completed, or cancelled with `reason`).
    async fn finish(&mut self, r: Response, status: &str, reason: Option<&str>) -> Flow {
        let content = json!([{ "type": "output_text", "text": r.text }]);
        let item = json!({ "id": r.item_id, "object": "realtime.item", "type": "message", "status": if status == "completed" { "completed" } else { "incomplete" }, "role": "assistant", "content": content });
        let events = [
            json!({ "type": "response.output_text.done", "response_id": r.id, "item_id": r.item_id, "output_index": 0, "content_index": 0, "text": r.text }),
            json!({ "type": "response.content_part.done", "response_id": r.id, "item_id": r.item_id, "output_index": 0, "content_index": 0, "part": { "type": "text", "text": r.text } }),
            json!({ "type": "response.output_item.done", "response_id": r.id, "output_index": 0, "item": item.clone() }),
            json!({
                "type": "response.done",
                "response": {
                    "id": r.id, "object": "realtime.response", "status": status,
                    "status_details": reason.map(|reason| json!({ "type": status, "reason": reason })),
                    "output": [item], "conversation_id": "conv_sim", "output_modalities": ["text"],
                    "usage": self.usage(&r)
                }
            }),
            self.rate_limits(r.input_tokens + u64::from(r.sent)),
        ];
        if self.items.len() >= MAX_ITEMS {
            self.items.remove(0);
        }
        self.items.push(SimItem {
            id: r.item_id.clone(),
            text: r.text.clone(),
        });
        bump(&self.shared.stats.responses_completed);
        for event in events {
            if self.feed(event).await == Flow::End {
                return Flow::End;
            }
        }
        self.flush().await
    }

    async fn finish_failed(&mut self, r: &Response, kind: &str, code: &str, message: &str) -> Flow {
        let done = json!({
            "type": "response.done",
            "response": {
                "id": r.id, "object": "realtime.response", "status": "failed",
                "status_details": { "type": "failed", "error": { "type": kind, "code": code, "message": message } },
                "output": [], "usage": self.usage(r)
            }
        });
        bump(&self.shared.stats.responses_completed);
        self.send(done).await
    }

    fn rate_limits(&self, tokens: u64) -> serde_json::Value {
        let requests = self.shared.stats.requests.load(Ordering::Relaxed);
        json!({
            "type": "rate_limits.updated",
            "rate_limits": [
                { "name": "requests", "limit": 10_000, "remaining": 10_000 - (requests % 10_000), "reset_seconds": 0.006 },
                { "name": "tokens", "limit": 2_000_000, "remaining": 2_000_000u64.saturating_sub(tokens), "reset_seconds": 0.0 }
            ]
        })
    }

    async fn cancel(&mut self) -> Flow {
        match self.response.take() {
            Some(r) => self.finish(r, "cancelled", Some("client_cancelled")).await,
            None => {
                self.error(
                    "invalid_request_error",
                    Some("response_cancel_not_active"),
                    "Cancellation failed: no active response found",
                )
                .await
            }
        }
    }

    async fn drop_connection(&mut self, mode: DropMode) -> Flow {
        match mode {
            DropMode::Abrupt => {
                let _ = self.ws.get_mut().tcp.shutdown().await;
            }
            DropMode::Close(code) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: Utf8Bytes::from_static("simulated drop"),
                };
                if self.ws.close(Some(frame)).await.is_ok() {
                    let ws = &mut self.ws;
                    let _ = timeout(CLOSE_WAIT, async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                }
            }
        }
        Flow::End
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaytop_core::protocol::openai_realtime::ServerEvent;

    #[test]
    fn malformed_frames_are_malformed_or_unknown() {
        assert!(ServerEvent::parse(MALFORMED_FRAMES[0]).is_err());
        assert!(matches!(
            ServerEvent::parse(MALFORMED_FRAMES[1]),
            Ok(ServerEvent::Unknown { .. })
        ));
    }
}
