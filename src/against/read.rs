//! Reading a recording's requests to re-send: every request's messages and `max_tokens`,
//! from the frames its sessions sent, in recorded order, with the recording's own report.

use std::path::PathBuf;

use anyhow::Context as _;

use relaytop_core::protocol::openai_chat::ChatRequest;
use relaytop_core::protocol::openai_realtime::ClientEvent;
use relaytop_core::protocol::relay_v1::{ChatMessage, ClientFrame, Role};
use relaytop_core::record::format::{Dir, Entry};
use relaytop_core::record::reader::{self, Item, LineReader, Position};
use relaytop_core::record::replay::Replay;
use relaytop_core::report::{Report, count};
use relaytop_core::session::{EventKind, Protocol};

use super::{MAX_MESSAGE_BYTES, MAX_REQUESTS};

/// One recorded request, ready to re-send.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedRequest {
    /// When it was sent, microseconds since the recording's start.
    pub at_us: u64,
    /// The recorded session's name and provider.
    pub session: String,
    pub provider: String,
    pub messages: Vec<ChatMessage>,
    pub max_tokens: Option<u32>,
}

/// What `read_recording` found: the requests and the recording's own report.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Every request whose body the recording shows, in recorded order.
    pub requests: Vec<RecordedRequest>,
    /// The recording's report (the replay's, equal to the live run's).
    pub report: Report,
    /// The most requests in flight at once.
    pub concurrency: u32,
    /// The recording's length, microseconds.
    pub duration_us: u64,
    /// The recorded providers, in the order first seen.
    pub providers: Vec<String>,
    /// Recorded requests that cannot be re-sent (an audio transcription, a body that does not
    /// parse) or were left out past `MAX_REQUESTS`/`MAX_MESSAGE_BYTES`.
    pub not_resent: u64,
    /// What the reading noticed (torn or malformed lines, requests left out).
    pub notes: Vec<String>,
}

/// A request body a session sent, by protocol.
#[derive(Default)]
struct BodyState {
    /// The last request body seen, waiting for its `request_sent`.
    last: Option<(Vec<ChatMessage>, Option<u32>)>,
    /// openai-realtime: the conversation's turns so far (the server keeps them).
    conversation: Vec<ChatMessage>,
    /// openai-realtime: a one-shot's items (named `relaytop_*`) since the last response.
    oneshot: Vec<ChatMessage>,
}

impl BodyState {
    fn frame(&mut self, protocol: Protocol, text: &str) {
        match protocol {
            Protocol::RelayV1 => {
                if let Ok(ClientFrame::ChatCompletion {
                    messages,
                    max_tokens,
                    ..
                }) = serde_json::from_str::<ClientFrame>(text)
                {
                    self.last = Some((messages, max_tokens));
                }
            }
            Protocol::OpenaiSse => {
                if let Ok(request) = serde_json::from_str::<ChatRequest>(text) {
                    self.last = Some((request.messages, request.max_tokens));
                }
            }
            Protocol::AnthropicMessages => {
                if let Some(last) =
                    relaytop_core::protocol::anthropic_messages::wire::read_request(text)
                {
                    self.last = Some(last);
                }
            }
            Protocol::OpenaiResponses => {
                if let Some(last) =
                    relaytop_core::protocol::openai_responses::wire::read_request(text)
                {
                    self.last = Some(last);
                }
            }
            Protocol::Gemini => {
                if let Some(last) = relaytop_core::protocol::gemini::wire::read_request(text) {
                    self.last = Some(last);
                }
            }
            Protocol::OpenaiRealtime => match serde_json::from_str::<ClientEvent>(text) {
                Ok(ClientEvent::ConversationItemCreate { item }) => {
                    let role = match item.role.as_deref() {
                        Some("assistant") => Role::Assistant,
                        Some("system") => Role::System,
                        _ => Role::User,
                    };
                    let message = ChatMessage::new(role, item.text());
                    if item.id.is_some() {
                        self.oneshot.push(message);
                    } else {
                        self.conversation.push(message);
                    }
                }
                Ok(ClientEvent::ResponseCreate { response }) => {
                    let max_tokens = response
                        .and_then(|r| r.max_output_tokens)
                        .and_then(|m| m.limit());
                    let messages = if self.oneshot.is_empty() {
                        self.conversation.clone()
                    } else {
                        std::mem::take(&mut self.oneshot)
                    };
                    self.last = Some((messages, max_tokens));
                }
                _ => {}
            },
        }
    }

    /// A new connection: a Realtime server starts a fresh conversation.
    fn reconnected(&mut self) {
        self.conversation.clear();
        self.oneshot.clear();
        self.last = None;
    }
}

/// Reads the requests out of a recording (run directory or session files), in recorded
/// order, and replays it as fast as possible for its report and its concurrency.
pub fn read_recording(paths: &[PathBuf]) -> anyhow::Result<Recorded> {
    let mut replay = Replay::open(paths)?;
    replay.play_forward_only();
    // The report, and the most requests in flight at once.
    let sessions = replay.sessions().len();
    let mut in_flight = vec![false; sessions];
    let (mut now_in_flight, mut concurrency) = (0u32, 0u32);
    let set = |busy: &mut bool, to: bool, now: &mut u32| {
        if *busy != to {
            *busy = to;
            if to {
                *now += 1;
            } else {
                *now = now.saturating_sub(1);
            }
        }
    };
    while let Some(event) = replay.next_event() {
        let Some(busy) = in_flight.get_mut(event.session as usize) else {
            continue;
        };
        match &event.kind {
            EventKind::RequestSent { .. } => set(busy, true, &mut now_in_flight),
            EventKind::Done(_) | EventKind::RequestFailed { .. } => {
                set(busy, false, &mut now_in_flight);
            }
            EventKind::State(state) if !state.is_up() => set(busy, false, &mut now_in_flight),
            _ => {}
        }
        concurrency = concurrency.max(now_in_flight);
    }
    let report = Report::build(replay.metrics(), replay.run_info());
    let mut notes: Vec<String> = replay.read_stats().warnings();
    let duration_us = replay.duration_us();

    // The bodies: each `request_sent` takes the request body its session sent just before.
    let found = reader::discover(paths)?;
    let mut requests = Vec::new();
    let mut not_resent = 0u64;
    let mut bytes = 0usize;
    let mut providers: Vec<String> = Vec::new();
    for (recording, offset_us) in found.sessions.iter().zip(&found.offsets_us) {
        let info = recording.header.info();
        if !providers.contains(&info.provider) {
            providers.push(info.provider.clone());
        }
        let mut lines = LineReader::new(recording.parts.clone(), Position::START);
        let mut body = BodyState::default();
        loop {
            let item = lines
                .next_item()
                .with_context(|| format!("cannot read the recording of {}", info.name))?;
            let record = match item {
                Item::Record { record, .. } => record,
                Item::Malformed { .. } => continue,
                Item::Torn { .. } | Item::End => break,
            };
            match record.entry {
                Entry::Text {
                    dir: Dir::ToRelay,
                    text,
                } => body.frame(info.protocol, &text),
                Entry::Upgrade { .. } if info.protocol == Protocol::OpenaiRealtime => {
                    body.reconnected();
                }
                Entry::Event(EventKind::RequestSent { .. }) => match body.last.take() {
                    Some((messages, max_tokens))
                        if requests.len() < MAX_REQUESTS && bytes < MAX_MESSAGE_BYTES =>
                    {
                        bytes += messages.iter().map(|m| m.content.len()).sum::<usize>();
                        requests.push(RecordedRequest {
                            at_us: record.t_us.saturating_add(*offset_us),
                            session: info.name.clone(),
                            provider: info.provider.clone(),
                            messages,
                            max_tokens,
                        });
                    }
                    _ => not_resent += 1,
                },
                _ => {}
            }
        }
    }
    // One timeline; a stable sort keeps each session's order and puts ties by session.
    requests.sort_by_key(|r| r.at_us);
    if not_resent > 0 {
        notes.push(format!(
            "{} recorded requests are not re-sent (no chat body in the recording: audio, or \
             past the first {} requests)",
            count(not_resent),
            count(MAX_REQUESTS as u64)
        ));
    }
    Ok(Recorded {
        requests,
        report,
        concurrency,
        duration_us,
        providers,
        not_resent,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_bodies_are_rebuilt_from_items() {
        let mut b = BodyState::default();
        let item = |id: Option<&str>, text: &str| {
            serde_json::to_string(&ClientEvent::message(id.map(str::to_owned), "user", text))
                .unwrap()
        };
        let create = r#"{"type":"response.create","response":{"max_output_tokens":12}}"#;
        b.frame(Protocol::OpenaiRealtime, &item(None, "hi"));
        b.frame(Protocol::OpenaiRealtime, create);
        let (m, max) = b.last.take().unwrap();
        assert_eq!((m.len(), max), (1, Some(12)));
        b.frame(
            Protocol::OpenaiRealtime,
            &item(Some("relaytop_1_0"), "probe"),
        );
        b.frame(Protocol::OpenaiRealtime, create);
        let (m, _) = b.last.take().unwrap();
        assert_eq!(m[0].content, "probe", "a one-shot is alone");
        b.frame(Protocol::OpenaiRealtime, &item(None, "again"));
        b.frame(Protocol::OpenaiRealtime, create);
        let (m, _) = b.last.take().unwrap();
        let texts: Vec<&str> = m.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["hi", "again"], "a turn carries the conversation");
    }
}
