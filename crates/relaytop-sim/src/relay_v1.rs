//! The relay/v1 route of the simulated relay: the WebSocket session after a `101`, with its
//! completions, transcriptions, heartbeats and the profile's injected faults (latency, drops,
//! errors, rate limits, malformed frames, unanswered pings, idle cut-offs).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use rand::rngs::SmallRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::conn::SimStream;
use super::server::{Shared, bump};
use relaytop_core::config::sim_profile::{DropMode, SimProfile, chance};
use relaytop_core::protocol::relay_v1::{ChatMessage, ClientFrame, ServerFrame, Usage};

/// One binary frame and nothing more for this long: transcribe on that frame.
const SINGLE_FRAME_AUDIO_WAIT: Duration = Duration::from_millis(300);
/// A transcription's audio may not exceed this.
const MAX_AUDIO_BYTES: usize = 64 * 1024 * 1024;
/// Frames sent between two flushes (and two looks at the client) when a stream is behind
/// schedule or runs as fast as possible.
const MAX_FRAMES_PER_FLUSH: usize = 256;
/// How long a simulated close waits for the client's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Largest WebSocket message (and frame) accepted from a client.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// The malformed frames `malformed_rate` injects, in turn: JSON cut short, and a type no
/// client knows.
const MALFORMED_FRAMES: [&str; 2] = [r#"{"type":"chunk","content":"#, r#"{"type":"sim.noise"}"#];

/// Serves the relay/v1 WebSocket session on a connection that was answered `101`.
pub(crate) async fn serve(
    tcp: TcpStream,
    leftover: Vec<u8>,
    seed: u64,
    profile: Arc<SimProfile>,
    shared: Arc<Shared>,
) {
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let stream = SimStream { tcp, mute: false };
    let ws =
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config)).await;
    Connection::new(ws, seed, profile, shared).run().await;
}

/// Whether the connection goes on after an event.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// The connection is over (the socket closes when the task ends).
    End,
}

/// One completion under way.
struct Completion {
    /// The profile as it was when the request came.
    profile: Arc<SimProfile>,
    /// The model asked for (the account charges its price).
    model: String,
    id: Option<String>,
    /// An upstream error is sent instead of the first chunk.
    fails: bool,
    /// Chunks to send.
    total: u32,
    /// Chunks sent so far.
    sent: u32,
    /// The connection drops instead of sending chunk number `drop_at`.
    drop_at: Option<u32>,
    /// `"stop"`, or `"length"` when the request's `max_tokens` cut the response short.
    finish_reason: &'static str,
    prompt_tokens: u64,
    first_due: Instant,
    /// `None`: as fast as possible.
    token_interval: Option<Duration>,
    /// When the next frame is due.
    next_due: Instant,
}

impl Completion {
    /// When chunk number `index` is due.
    fn due(&self, index: u32) -> Instant {
        self.token_interval
            .and_then(|interval| interval.checked_mul(index))
            .and_then(|offset| self.first_due.checked_add(offset))
            .unwrap_or(self.first_due)
    }

    /// The tokens `done` reports, as relaytop counts them.
    fn tokens(&self) -> relaytop_core::session::Tokens {
        relaytop_core::session::Tokens {
            input: self.prompt_tokens,
            output: u64::from(self.sent),
            ..Default::default()
        }
    }

    fn done_frame(&self, finish_reason: &str) -> String {
        ServerFrame::Done {
            usage: self.profile.send_usage.then_some(Usage {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: u64::from(self.sent),
            }),
            id: self.id.as_deref().map(Cow::Borrowed),
            finish_reason: Some(Cow::Borrowed(finish_reason)),
        }
        .to_text()
    }
}

/// A transcription under way.
enum Transcription {
    /// Audio is coming in.
    Collecting {
        id: Option<String>,
        audio: Vec<u8>,
        frames: u32,
        /// Set while exactly one binary frame has come: when to transcribe on it alone.
        single_frame_due: Option<Instant>,
    },
    /// The audio is complete; the transcript goes out at `due`.
    Answering {
        id: Option<String>,
        text: String,
        due: Instant,
    },
}

/// What woke the connection up.
enum Wake {
    Client(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    StreamDue,
    IdleCutoff,
    TranscriptionDue,
}

/// The state of one relay/v1 session, owned by its task.
struct Connection {
    ws: WebSocketStream<SimStream>,
    shared: Arc<Shared>,
    /// The profile as of the last frame from the client.
    profile: Arc<SimProfile>,
    rng: SmallRng,
    last_heard: Instant,
    completion: Option<Completion>,
    transcription: Option<Transcription>,
    /// Which of `MALFORMED_FRAMES` goes out next.
    next_malformed: usize,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared
            .stats
            .open_connections
            .fetch_sub(1, Ordering::Relaxed);
        if self.completion.is_some() {
            bump(&self.shared.stats.responses_dropped);
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn text(frame: String) -> Message {
    Message::Text(Utf8Bytes::from(frame))
}

fn error_frame(details: &str, code: &str, retry_after_ms: Option<u64>, id: Option<&str>) -> String {
    ServerFrame::Error {
        details: Cow::Borrowed(details),
        code: Some(Cow::Borrowed(code)),
        retry_after_ms,
        id: id.map(Cow::Borrowed),
    }
    .to_text()
}

/// Prompt tokens as relays estimate them: ceil(characters / 4) over all message contents.
fn estimate_prompt_tokens(messages: &[ChatMessage]) -> u64 {
    let chars: usize = messages.iter().map(|m| m.content.chars().count()).sum();
    (chars as u64).div_ceil(4)
}

impl Connection {
    fn new(
        ws: WebSocketStream<SimStream>,
        seed: u64,
        profile: Arc<SimProfile>,
        shared: Arc<Shared>,
    ) -> Self {
        bump(&shared.stats.connections_accepted);
        bump(&shared.stats.open_connections);
        Self {
            ws,
            shared,
            profile,
            rng: SmallRng::seed_from_u64(seed),
            last_heard: Instant::now(),
            completion: None,
            transcription: None,
            next_malformed: 0,
        }
    }

    async fn run(mut self) {
        loop {
            let stream_due = self.completion.as_ref().map(|c| c.next_due);
            let idle_cutoff = self
                .profile
                .idle_cutoff_ms
                .map(|ms| self.last_heard + Duration::from_millis(ms));
            let transcription_due = match &self.transcription {
                Some(Transcription::Collecting {
                    single_frame_due, ..
                }) => *single_frame_due,
                Some(Transcription::Answering { due, .. }) => Some(*due),
                None => None,
            };
            let wake = tokio::select! {
                biased;
                message = self.ws.next() => Wake::Client(message),
                () = until(idle_cutoff) => Wake::IdleCutoff,
                () = until(stream_due) => Wake::StreamDue,
                () = until(transcription_due) => Wake::TranscriptionDue,
            };
            let flow = match wake {
                Wake::Client(Some(Ok(message))) => self.on_message(message).await,
                Wake::Client(Some(Err(_)) | None) => Flow::End,
                Wake::StreamDue => self.stream().await,
                Wake::IdleCutoff => {
                    // What a proxy does: the TCP connection just ends.
                    let _ = self.ws.get_mut().tcp.shutdown().await;
                    Flow::End
                }
                Wake::TranscriptionDue => self.advance_transcription().await,
            };
            if flow == Flow::End {
                return;
            }
        }
    }

    /// Sends one frame now.
    async fn send(&mut self, frame: String) -> Flow {
        match self.ws.send(text(frame)).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::End,
        }
    }

    async fn on_message(&mut self, message: Message) -> Flow {
        self.last_heard = Instant::now();
        self.profile = self.shared.live_profile().profile.clone();
        match message {
            Message::Text(frame) => self.on_frame(frame.as_str()).await,
            Message::Binary(audio) => self.on_audio(&audio).await,
            Message::Ping(_) => {
                // tungstenite has queued the Pong. Every path that writes flushes before it
                // returns to the select loop, so that Pong is all this flush writes: it goes
                // out, or, muted, is swallowed whole without disturbing the stream.
                let answer = self.profile.answer_pings;
                if answer {
                    bump(&self.shared.stats.pings_answered);
                }
                self.ws.get_mut().mute = !answer;
                let flushed = self.ws.flush().await;
                self.ws.get_mut().mute = false;
                if flushed.is_ok() {
                    Flow::Continue
                } else {
                    Flow::End
                }
            }
            // A Close is answered by tungstenite; the next read then ends the stream.
            Message::Pong(_) | Message::Close(_) | Message::Frame(_) => Flow::Continue,
        }
    }

    async fn on_frame(&mut self, frame: &str) -> Flow {
        match ClientFrame::parse(frame) {
            Ok(ClientFrame::ChatCompletion {
                model,
                messages,
                max_tokens,
                id,
                ..
            }) => {
                self.start_completion(model, &messages, max_tokens, id)
                    .await
            }
            Ok(ClientFrame::Ping) => {
                if !self.profile.answer_pings {
                    return Flow::Continue;
                }
                bump(&self.shared.stats.pings_answered);
                self.send(ServerFrame::Pong.to_text()).await
            }
            Ok(ClientFrame::AudioTranscription { id, .. }) => {
                bump(&self.shared.stats.requests);
                if let Some(refusal) = self.refuse_if_busy(id.as_deref()) {
                    return self.send(refusal).await;
                }
                self.transcription = Some(Transcription::Collecting {
                    id,
                    audio: Vec::new(),
                    frames: 0,
                    single_frame_due: None,
                });
                Flow::Continue
            }
            Ok(ClientFrame::AudioEnd) => match self.transcription.take() {
                Some(Transcription::Collecting { id, audio, .. }) => {
                    self.answer_transcription(id, &audio);
                    Flow::Continue
                }
                answering => {
                    self.transcription = answering;
                    let details = "`audio.end` without audio coming in: send \
                                   `audio.transcription` first";
                    self.send(error_frame(details, "invalid_request", None, None))
                        .await
                }
            },
            Ok(ClientFrame::Cancel { id }) => self.cancel(id.as_deref()).await,
            Err(e) => {
                let details = format!("cannot read this frame: {e}");
                self.send(error_frame(&details, "invalid_request", None, None))
                    .await
            }
        }
    }

    /// The `invalid_request` error for a request that comes while another is under way.
    fn refuse_if_busy(&self, id: Option<&str>) -> Option<String> {
        let busy = self.completion.is_some() || self.transcription.is_some();
        busy.then(|| {
            error_frame(
                "a request is already under way on this connection (one at a time): \
                 wait for its `done`, or send `cancel`",
                "invalid_request",
                None,
                id,
            )
        })
    }

    async fn start_completion(
        &mut self,
        model: String,
        messages: &[ChatMessage],
        max_tokens: Option<u32>,
        id: Option<String>,
    ) -> Flow {
        bump(&self.shared.stats.requests);
        if let Some(refusal) = self.refuse_if_busy(id.as_deref()) {
            return self.send(refusal).await;
        }
        let received = Instant::now();
        let profile = self.profile.clone();
        let rng = &mut self.rng;
        if chance(rng, profile.rate_limit_rate) {
            let frame = error_frame(
                "rate limit reached for this key (simulated): retry later",
                "rate_limited",
                Some(profile.rate_limit_retry_after_ms),
                id.as_deref(),
            );
            return self.send(frame).await;
        }
        let fails = chance(rng, profile.error_rate);
        let total = max_tokens.map_or(profile.tokens_per_response, |max| {
            max.min(profile.tokens_per_response)
        });
        let finish_reason = if total < profile.tokens_per_response {
            "length"
        } else {
            "stop"
        };
        let drop_at = chance(rng, profile.drop_rate).then(|| {
            if total >= 2 {
                rng.random_range(1..total)
            } else {
                0
            }
        });
        let first_due = received + profile.time_to_first_token().sample(rng);
        self.completion = Some(Completion {
            model,
            id,
            fails,
            total,
            sent: 0,
            drop_at,
            finish_reason,
            prompt_tokens: estimate_prompt_tokens(messages),
            first_due,
            token_interval: profile.token_interval(),
            next_due: first_due,
            profile,
        });
        Flow::Continue
    }

    /// Sends the frames of the completion that are due: chunks (with malformed frames mixed
    /// in), then `done`; or the upstream error; or the drop. Several frames go out per flush.
    async fn stream(&mut self) -> Flow {
        let now = Instant::now();
        let mut frames = 0;
        let mut drop = false;
        let Self {
            ws,
            completion,
            rng,
            shared,
            next_malformed,
            ..
        } = self;
        while let Some(c) = completion.as_mut() {
            if c.next_due > now || frames >= MAX_FRAMES_PER_FLUSH {
                break;
            }
            if c.fails {
                let frame = error_frame(
                    "the upstream model failed (simulated)",
                    "upstream_error",
                    None,
                    c.id.as_deref(),
                );
                *completion = None;
                if ws.feed(text(frame)).await.is_err() {
                    return Flow::End;
                }
                break;
            }
            if c.drop_at == Some(c.sent) {
                drop = true;
                break;
            }
            if c.sent < c.total {
                let frame = ServerFrame::Chunk {
                    content: Cow::Borrowed(c.profile.chunk_word(c.sent)),
                    id: c.id.as_deref().map(Cow::Borrowed),
                }
                .to_text();
                c.sent += 1;
                c.next_due = c.due(c.sent);
                frames += 1;
                if ws.feed(text(frame)).await.is_err() {
                    return Flow::End;
                }
                if chance(rng, c.profile.malformed_rate) {
                    let noise = MALFORMED_FRAMES[*next_malformed];
                    *next_malformed = (*next_malformed + 1) % MALFORMED_FRAMES.len();
                    if ws
                        .feed(Message::Text(Utf8Bytes::from_static(noise)))
                        .await
                        .is_err()
                    {
                        return Flow::End;
                    }
                }
            }
            if c.sent >= c.total {
                let frame = c.done_frame(c.finish_reason);
                shared.account.charge(&c.profile, &c.model, &c.tokens());
                *completion = None;
                bump(&shared.stats.responses_completed);
                if ws.feed(text(frame)).await.is_err() {
                    return Flow::End;
                }
                break;
            }
        }
        if ws.flush().await.is_err() {
            return Flow::End;
        }
        if drop {
            self.drop_mid_stream().await
        } else {
            Flow::Continue
        }
    }

    /// Ends the connection the way the profile of the running completion says; the completion
    /// stays set so that it is counted as dropped when the connection goes.
    async fn drop_mid_stream(&mut self) -> Flow {
        let mode = self
            .completion
            .as_ref()
            .map_or(DropMode::Abrupt, |c| c.profile.drop_mode);
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

    /// `cancel`: the running completion ends with `done` (finish_reason "cancelled"). A cancel
    /// with nothing to cancel (it crossed the `done`) or for another id is ignored.
    async fn cancel(&mut self, id: Option<&str>) -> Flow {
        let matches = self
            .completion
            .as_ref()
            .is_some_and(|c| id.is_none() || c.id.as_deref() == id);
        if !matches {
            return Flow::Continue;
        }
        let Some(completion) = self.completion.take() else {
            return Flow::Continue;
        };
        self.shared
            .account
            .charge(&completion.profile, &completion.model, &completion.tokens());
        bump(&self.shared.stats.responses_completed);
        self.send(completion.done_frame("cancelled")).await
    }

    async fn on_audio(&mut self, bytes: &[u8]) -> Flow {
        let Some(Transcription::Collecting {
            id,
            audio,
            frames,
            single_frame_due,
        }) = &mut self.transcription
        else {
            let details = "binary frame without a transcription under way: send \
                           `audio.transcription` first";
            return self
                .send(error_frame(details, "invalid_request", None, None))
                .await;
        };
        if audio.len() + bytes.len() > MAX_AUDIO_BYTES {
            let details = format!(
                "audio too large: a transcription takes at most {} MiB",
                MAX_AUDIO_BYTES >> 20
            );
            let frame = error_frame(&details, "invalid_request", None, id.as_deref());
            self.transcription = None;
            return self.send(frame).await;
        }
        audio.extend_from_slice(bytes);
        *frames += 1;
        *single_frame_due = (*frames == 1).then(|| Instant::now() + SINGLE_FRAME_AUDIO_WAIT);
        Flow::Continue
    }

    /// The audio is complete: the transcript goes out after a time-to-first-token delay.
    fn answer_transcription(&mut self, id: Option<String>, audio: &[u8]) {
        let delay = self.profile.time_to_first_token().sample(&mut self.rng);
        self.transcription = Some(Transcription::Answering {
            id,
            text: super::audio::transcript_text(audio),
            due: Instant::now() + delay,
        });
    }

    async fn advance_transcription(&mut self) -> Flow {
        match self.transcription.take() {
            Some(Transcription::Collecting { id, audio, .. }) => {
                self.answer_transcription(id, &audio);
                Flow::Continue
            }
            Some(Transcription::Answering {
                id, text: words, ..
            }) => {
                let transcript = ServerFrame::Transcript {
                    text: Cow::Borrowed(&words),
                    is_final: true,
                    id: id.as_deref().map(Cow::Borrowed),
                }
                .to_text();
                // A transcription has no text prompt; its output is estimated like a prompt.
                let done = ServerFrame::Done {
                    usage: self.profile.send_usage.then_some(Usage {
                        prompt_tokens: 0,
                        completion_tokens: (words.chars().count() as u64).div_ceil(4),
                    }),
                    id: id.as_deref().map(Cow::Borrowed),
                    finish_reason: Some(Cow::Borrowed("stop")),
                }
                .to_text();
                bump(&self.shared.stats.transcriptions);
                let sent = async {
                    self.ws.feed(text(transcript)).await?;
                    self.ws.feed(text(done)).await?;
                    self.ws.flush().await
                };
                if sent.await.is_ok() {
                    Flow::Continue
                } else {
                    Flow::End
                }
            }
            None => Flow::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaytop_core::protocol::relay_v1::Role as ChatRole;

    #[test]
    fn prompt_tokens_round_up_over_all_messages() {
        let messages = [
            ChatMessage::new(ChatRole::System, "abcd"),
            ChatMessage::new(ChatRole::User, "é"),
        ];
        assert_eq!(estimate_prompt_tokens(&messages), 2);
        assert_eq!(estimate_prompt_tokens(&[]), 0);
    }

    #[test]
    fn malformed_frames_are_malformed() {
        assert!(ServerFrame::parse(MALFORMED_FRAMES[0]).is_err());
        assert!(matches!(
            ServerFrame::parse(MALFORMED_FRAMES[1]),
            Ok(ServerFrame::Unknown { .. })
        ));
    }
}
