//! openai-realtime's codec for the shared WebSocket half. The upgrade carries
//! `Authorization` only (no `OpenAI-Beta`: GA shape). A connection opens with `session.update`
//! (text output, the chat's system prompt as instructions); each request sends the messages
//! the server has not seen (`conversation.item.create`) and `response.create`. A probe's items
//! are deleted after its response, so a long-running probe session does not grow its
//! conversation. Liveness is WebSocket Ping/Pong only (never relay/v1's `ping`). An `error`
//! with a bad key, or a close 3000 (`invalid_api_key`), 4000 (`beta_api_shape_disabled`) or
//! 1008 after the upgrade, is a configuration failure: the session stops. Esc in a chat sends
//! `response.cancel`.

use std::time::Duration;

use crate::protocol::openai_realtime::decode::{RealtimeDecoder, RealtimeInbound};
use crate::protocol::openai_realtime::{
    CLOSE_BETA_SHAPE_DISABLED, CLOSE_INVALID_API_KEY, ClientEvent, MaxTokens, ResponseConfig,
    SessionConfig, url_with_model,
};
use crate::protocol::relay_v1::{ChatMessage, Role};
use crate::session::connect::Flavor;
use crate::session::response::estimate_tokens_from_chars;
use crate::session::workload::Outgoing;
use crate::session::{ErrorKind, EventKind, RequestId, SessionSpec, Workload};
use crate::transport::websocket::{Frame, HoldBack, Liveness, Reaction, Request, WebSocketCodec};

/// One Realtime session's codec: the decoder (request numbers go on across reconnects) and
/// the conversation the server holds on the current connection.
pub struct RealtimeCodec {
    url: String,
    decoder: RealtimeDecoder,
    /// Chat messages the server holds on this connection (its conversation).
    items_sent: usize,
    /// Items of the probe (or one-shot) under way, deleted once it is over.
    probe_items: Vec<String>,
    /// The request being sent, or under way, is a chat turn (its reply stays in the
    /// conversation).
    turn_under_way: bool,
    /// The request being sent is a chat turn holding this many messages.
    turn_sending: Option<usize>,
}

fn text(event: &ClientEvent) -> Frame {
    Frame::Text(event.to_text())
}

impl RealtimeCodec {
    pub fn new(spec: &SessionSpec) -> Self {
        Self {
            url: url_with_model(&spec.info.url, &spec.info.model),
            decoder: RealtimeDecoder::new(),
            items_sent: 0,
            probe_items: Vec::new(),
            turn_under_way: false,
            turn_sending: None,
        }
    }
}

impl WebSocketCodec for RealtimeCodec {
    fn url(&self) -> &str {
        &self.url
    }

    fn flavor(&self) -> Flavor {
        Flavor::Realtime
    }

    fn liveness(&self) -> Liveness {
        Liveness::WebSocketPing
    }

    fn hold_back(&self) -> HoldBack {
        HoldBack::AsAsked
    }

    fn done_name(&self) -> &'static str {
        "response.done"
    }

    fn in_flight(&self) -> Option<RequestId> {
        self.decoder.in_flight()
    }

    fn sent_at(&self) -> Option<Duration> {
        self.decoder.sent_at()
    }

    fn request_sent(
        &mut self,
        now: Duration,
        model: &str,
        prompt_tokens_estimate: u64,
    ) -> (RequestId, EventKind) {
        self.decoder
            .request_sent(now, model, prompt_tokens_estimate)
    }

    fn fail(&mut self, kind: ErrorKind, reason: String) -> Option<EventKind> {
        self.decoder.fail(kind, reason)
    }

    fn opening(&mut self, spec: &SessionSpec) -> Vec<Frame> {
        self.items_sent = 0;
        self.probe_items.clear();
        let system = match &spec.workload {
            Workload::Chat { system } => system.clone(),
            _ => None,
        };
        let update = ClientEvent::SessionUpdate {
            session: SessionConfig {
                kind: Some("realtime".into()),
                instructions: system,
                output_modalities: Some(vec!["text".into()]),
                model: None,
            },
        };
        vec![text(&update)]
    }

    fn request(
        &mut self,
        spec: &SessionSpec,
        history: &[ChatMessage],
        outgoing: Outgoing,
    ) -> Request {
        let conversation: Vec<_> = outgoing
            .messages
            .iter()
            .filter(|m| m.role != Role::System)
            .collect();
        // A chat turn carries the whole history (the one-shots of `Send` do not): the server
        // already holds its first `items_sent` messages.
        let is_turn = matches!(spec.workload, Workload::Chat { .. })
            && !history.is_empty()
            && conversation.len() == history.len()
            && conversation.last().map(|m| &m.content) == history.last().map(|m| &m.content);
        // A probe's (or a one-shot's) items are deleted once it is over.
        let is_probe = !is_turn;
        let fresh = if is_turn && self.items_sent <= conversation.len() {
            &conversation[self.items_sent..]
        } else {
            &conversation[..]
        };
        let prompt_chars: u64 = conversation
            .iter()
            .map(|m| m.content.chars().count() as u64)
            .sum();
        // The decoder learns of the request once it is out (as a replay does, from the
        // `RequestSent` event), so that a request that never went out takes no number.
        let request = self.decoder.next_request();
        let mut frames = Vec::with_capacity(fresh.len() + 1);
        for (n, message) in fresh.iter().enumerate() {
            let role = match message.role {
                Role::Assistant => "assistant",
                _ => "user",
            };
            let id = is_probe.then(|| format!("relaytop_{request}_{n}"));
            if let Some(id) = &id {
                self.probe_items.push(id.clone());
            }
            frames.push(text(&ClientEvent::message(id, role, &message.content)));
        }
        frames.push(text(&ClientEvent::ResponseCreate {
            response: Some(ResponseConfig {
                output_modalities: Some(vec!["text".into()]),
                instructions: None,
                max_output_tokens: outgoing.max_tokens.map(MaxTokens::Tokens),
            }),
        }));
        self.turn_sending = is_turn.then_some(conversation.len());
        Request {
            frames,
            model: spec.info.model.clone(),
            prompt_tokens_estimate: estimate_tokens_from_chars(prompt_chars),
        }
    }

    fn request_out(&mut self) {
        let turn = self.turn_sending.take();
        if let Some(messages) = turn {
            self.items_sent = messages;
        }
        self.turn_under_way = turn.is_some();
    }

    fn cancel(&self) -> Frame {
        text(&ClientEvent::ResponseCancel { response_id: None })
    }

    /// The Realtime API sends JSON in text frames; a binary one is read as UTF-8 JSON.
    fn binary_is_text(&self) -> bool {
        true
    }

    fn on_text<F: FnMut(EventKind)>(&mut self, now: Duration, text: &str, out: &mut F) -> Reaction {
        match self.decoder.on_text(now, text, out) {
            RealtimeInbound::Nothing | RealtimeInbound::Text => Reaction::Nothing,
            RealtimeInbound::Error => Reaction::Error { wait: None },
            RealtimeInbound::OutputItem { item_id } => {
                if !self.turn_under_way {
                    self.probe_items.push(item_id);
                }
                Reaction::Nothing
            }
            RealtimeInbound::ResponseDone => Reaction::ResponseDone,
            RealtimeInbound::ResponseFailed { wait } => Reaction::ResponseFailed { wait },
            RealtimeInbound::Fatal { reason } => Reaction::Fatal {
                verdict: format!("the Realtime endpoint refused this configuration: {reason}"),
                reason,
            },
        }
    }

    /// Deletes the items of the probe just over, so the conversation stays small; a chat
    /// turn's reply is an item on the server too.
    fn response_over(&mut self, done: bool) -> Vec<Frame> {
        if done && self.turn_under_way {
            self.items_sent += 1;
        }
        std::mem::take(&mut self.probe_items)
            .into_iter()
            .map(|item_id| text(&ClientEvent::ConversationItemDelete { item_id }))
            .collect()
    }

    fn closed_for_good(&self, code: u16, _reason: &str) -> Option<String> {
        let what = match code {
            CLOSE_INVALID_API_KEY => "invalid_api_key: check the key",
            CLOSE_BETA_SHAPE_DISABLED => {
                "beta_api_shape_disabled: this endpoint speaks the GA shape only (no OpenAI-Beta header)"
            }
            1008 => "policy violation: usually the key",
            _ => return None,
        };
        Some(format!(
            "the Realtime endpoint closed with {code} after the upgrade: {what}; not retried"
        ))
    }
}
