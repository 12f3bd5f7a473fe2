//! The pane itself (`ChatPane`): key presses and pastes in the editor, the commands typed,
//! the session's events folded into turns, the conversation laid out once per change and
//! saved as Markdown; the effects it asks its host for (`ChatEffect`), its keys and commands.

use std::collections::VecDeque;
use std::fmt::Write as _;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::text::Line;

use super::editor::Editor;
use super::lines::{status_text, turn_lines};
use super::markdown::MarkdownStyle;
use super::turn::*;
use crate::format;
use crate::theme::Theme;
use relaytop_core::cost::{ProviderPricing, Response};
use relaytop_core::session::{
    Completed, ErrorKind, EventKind, Protocol, RequestId, SessionCommand, SessionEvent, SessionId,
    SessionState,
};

/// Most turns a pane keeps; the oldest go (the engine's history is not touched).
pub const MAX_TURNS: usize = 5_000;
/// Most characters of one reply shown; the rest is counted, not kept.
pub const MAX_REPLY_CHARS: usize = 1 << 20;

/// The keys of the chat pane, for its help line and the README.
pub const CHAT_KEYS: &[(&str, &str)] = &[
    ("enter", "send the message (or run a /command)"),
    ("alt-enter, shift-enter, ctrl-j", "a new line"),
    (
        "up, down",
        "move between lines; on the first or last, the input history",
    ),
    (
        "left, right, home, end, ctrl-a, ctrl-e, ctrl-w, ctrl-u, ctrl-k",
        "line editing",
    ),
    (
        "pageup, pagedown",
        "scroll the conversation (the end follows again)",
    ),
    (
        "esc",
        "cancel the reply streaming; with none, leave the pane",
    ),
    ("r (empty input), ctrl-r", "retry a reply that was cut"),
    ("ctrl-c", "quit relaytop"),
];

/// The commands typed in the input.
pub const CHAT_COMMANDS: &[(&str, &str)] = &[
    (
        "/model NAME",
        "ask for another model from the next message on",
    ),
    (
        "/system TEXT",
        "set the system prompt (`/system` alone removes it)",
    ),
    (
        "/clear",
        "forget the conversation (the relay gets no history)",
    ),
    ("/save FILE", "write the conversation to FILE as Markdown"),
    (
        "/transcribe FILE",
        "send a WAV file for transcription (relay-v1)",
    ),
    (
        "/retry",
        "send the last message again when its reply was cut",
    ),
    ("/help", "list these commands"),
];

/// What the pane asks its host to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatEffect {
    /// Send these commands to the pane's session.
    Send(Vec<SessionCommand>),
    /// Write the conversation (Markdown) to a file, then tell the pane (`saved`).
    Save { path: String, markdown: String },
    /// Read a WAV file and send it for transcription, then tell the pane
    /// (`transcription_queued` or `note_error`).
    Transcribe { path: String },
    /// Leave the pane (the session stays open while the pane does).
    Leave,
    /// Quit relaytop.
    Quit,
}

/// One chat pane.
#[derive(Clone, Debug)]
pub struct ChatPane {
    pub session: SessionId,
    pub name: String,
    pub provider: String,
    pub model: String,
    pub protocol: Protocol,
    pub system: Option<String>,
    pub state: Option<SessionState>,
    pub editor: Editor,
    pub scroll: ChatScroll,
    pub(super) pricing: ProviderPricing,
    turns: VecDeque<Turn>,
    /// Turns sent to the session and not yet answered with `RequestSent`, oldest first (as
    /// turn numbers: `first_turn` + index).
    queued: VecDeque<u64>,
    /// The request under way and its turn number.
    in_flight: Option<(RequestId, u64)>,
    /// The number of `turns[0]` (turns dropped from the front keep the numbers stable).
    first_turn: u64,
    /// Esc was pressed once to cancel: the next Esc leaves even if the reply goes on.
    cancel_asked: bool,
    /// Lines of all turns, as last laid out, and the width they were laid out for.
    total_lines: usize,
    width: usize,
    /// Rows the conversation had when last drawn (a page for PageUp/PageDown).
    pub page: usize,
}

impl ChatPane {
    pub fn new(
        session: SessionId,
        info: &relaytop_core::session::SessionInfo,
        system: Option<String>,
        pricing: ProviderPricing,
    ) -> ChatPane {
        ChatPane {
            session,
            name: info.name.clone(),
            provider: info.provider.clone(),
            model: info.model.clone(),
            protocol: info.protocol,
            system,
            state: None,
            editor: Editor::new(),
            scroll: ChatScroll::default(),
            pricing,
            turns: VecDeque::new(),
            queued: VecDeque::new(),
            in_flight: None,
            first_turn: 0,
            cancel_asked: false,
            total_lines: 0,
            width: 0,
            page: 10,
        }
    }

    pub fn turns(&self) -> impl DoubleEndedIterator<Item = &Turn> + ExactSizeIterator {
        self.turns.iter()
    }

    fn turn_mut(&mut self, number: u64) -> Option<&mut Turn> {
        let index = usize::try_from(number.checked_sub(self.first_turn)?).ok()?;
        self.turns.get_mut(index)
    }

    fn push_turn(&mut self, turn: Turn) -> u64 {
        if self.turns.len() >= MAX_TURNS {
            self.turns.pop_front();
            self.first_turn += 1;
        }
        self.turns.push_back(turn);
        self.first_turn + self.turns.len() as u64 - 1
    }

    /// A line from the pane itself (a command's result, an error).
    pub fn note(&mut self, text: impl Into<String>) {
        let turn = Turn::new(
            TurnKind::Note {
                text: text.into(),
                error: false,
            },
            ReplyStatus::Done,
            &self.model,
        );
        self.push_turn(turn);
    }

    /// An error the pane shows (a file that cannot be read, a command misused).
    pub fn note_error(&mut self, text: impl Into<String>) {
        let turn = Turn::new(
            TurnKind::Note {
                text: text.into(),
                error: true,
            },
            ReplyStatus::Done,
            &self.model,
        );
        self.push_turn(turn);
    }

    /// Whether a reply is queued, awaited or streaming.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some() || !self.queued.is_empty()
    }

    /// The last turn that can be retried (its reply was cut), if it is the last message.
    fn retryable(&self) -> Option<u64> {
        let (i, turn) = self
            .turns
            .iter()
            .enumerate()
            .rev()
            .find(|(_, t)| !matches!(t.kind, TurnKind::Note { .. }))?;
        (matches!(turn.kind, TurnKind::Message(_))
            && matches!(turn.status, ReplyStatus::Cut { .. }))
        .then_some(self.first_turn + i as u64)
    }

    /// A key press. The editor takes typing; Enter sends; Esc cancels, then leaves.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<ChatEffect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let shift = key.modifiers.contains(KeyModifiers::SHIFT);
        if key.code != KeyCode::Esc {
            self.cancel_asked = false;
        }
        match key.code {
            KeyCode::Char('c') if ctrl => return Some(ChatEffect::Quit),
            KeyCode::Esc => {
                if self.busy() && !self.cancel_asked {
                    self.cancel_asked = true;
                    return Some(ChatEffect::Send(vec![SessionCommand::Cancel]));
                }
                return Some(ChatEffect::Leave);
            }
            KeyCode::Enter if alt || shift => self.editor.newline(),
            KeyCode::Char('j') if ctrl => self.editor.newline(),
            KeyCode::Enter => return self.submit(),
            KeyCode::Char('r') if ctrl => return self.retry(),
            KeyCode::Char('r') if self.editor.is_empty() && self.retryable().is_some() => {
                return self.retry();
            }
            KeyCode::Char('a') if ctrl => self.editor.home(),
            KeyCode::Char('e') if ctrl => self.editor.end(),
            KeyCode::Char('w') if ctrl => self.editor.delete_word(),
            KeyCode::Char('u') if ctrl => self.editor.kill_to_start(),
            KeyCode::Char('k') if ctrl => self.editor.kill_to_end(),
            KeyCode::Char('b') if alt => self.editor.word_left(),
            KeyCode::Char('f') if alt => self.editor.word_right(),
            KeyCode::Char(c) if !ctrl => self.editor.insert_char(c),
            KeyCode::Backspace => self.editor.backspace(),
            KeyCode::Delete => self.editor.delete(),
            KeyCode::Left if ctrl || alt => self.editor.word_left(),
            KeyCode::Right if ctrl || alt => self.editor.word_right(),
            KeyCode::Left => self.editor.left(),
            KeyCode::Right => self.editor.right(),
            KeyCode::Home => self.editor.home(),
            KeyCode::End => self.editor.end(),
            KeyCode::Up => {
                self.editor.up();
            }
            KeyCode::Down => {
                self.editor.down();
            }
            KeyCode::PageUp => {
                let most = self.total_lines.saturating_sub(self.page);
                self.scroll.back = (self.scroll.back + self.page.max(1)).min(most);
            }
            KeyCode::PageDown => {
                self.scroll.back = self.scroll.back.saturating_sub(self.page.max(1));
            }
            KeyCode::Tab => self.editor.insert_str("    "),
            _ => {}
        }
        None
    }

    /// Pasted text goes into the input as it is.
    pub fn handle_paste(&mut self, text: &str) {
        self.editor.insert_str(text);
    }

    /// Scrolls by `lines` (negative: up), for the mouse wheel.
    pub fn scroll_by(&mut self, lines: isize) {
        let most = self.total_lines.saturating_sub(self.page);
        self.scroll.back = self.scroll.back.saturating_add_signed(-lines).min(most);
    }

    fn retry(&mut self) -> Option<ChatEffect> {
        let Some(number) = self.retryable() else {
            self.note_error("nothing to retry: the last reply was not cut");
            return None;
        };
        if self.busy() {
            self.note_error("a reply is under way: retry once it is done (Esc cancels it)");
            return None;
        }
        if let Some(turn) = self.turn_mut(number) {
            turn.status = ReplyStatus::Queued;
            turn.reply.clear();
            turn.stats = None;
            turn.ttft_us = None;
            turn.touch();
        }
        self.queued.push_back(number);
        self.scroll.back = 0;
        Some(ChatEffect::Send(vec![SessionCommand::Retry]))
    }

    /// Enter: sends the message, or runs the command.
    fn submit(&mut self) -> Option<ChatEffect> {
        let text = self.editor.text();
        if text.trim().is_empty() {
            return None;
        }
        self.editor.take();
        self.scroll.back = 0;
        if let Some(command) = text.trim_start().strip_prefix('/')
            && !command.starts_with('/')
        {
            return self.command(command.trim_end());
        }
        let turn = Turn::new(
            TurnKind::Message(text.clone()),
            ReplyStatus::Queued,
            &self.model,
        );
        let number = self.push_turn(turn);
        self.queued.push_back(number);
        Some(ChatEffect::Send(vec![SessionCommand::Chat { text }]))
    }

    fn command(&mut self, line: &str) -> Option<ChatEffect> {
        let (name, arg) = match line.split_once(char::is_whitespace) {
            Some((name, arg)) => (name, arg.trim()),
            None => (line, ""),
        };
        match name {
            "model" if !arg.is_empty() => {
                self.model = arg.to_owned();
                self.note(format!("model: {arg} from the next message on"));
                Some(ChatEffect::Send(vec![SessionCommand::SetModel {
                    model: arg.to_owned(),
                }]))
            }
            "model" => {
                self.note_error(format!("/model NAME: the model now is {}", self.model));
                None
            }
            "system" => {
                let text = (!arg.is_empty()).then(|| arg.to_owned());
                self.note(match &text {
                    Some(text) => format!("system prompt: {text}"),
                    None => "system prompt removed".to_owned(),
                });
                self.system = text.clone();
                Some(ChatEffect::Send(vec![SessionCommand::SetSystem { text }]))
            }
            "clear" if self.busy() => {
                self.note_error(
                    "a reply is under way or waiting: /clear once it is done (Esc cancels it)",
                );
                None
            }
            "clear" => {
                self.turns.clear();
                self.first_turn += 1 << 20;
                self.queued.clear();
                self.in_flight = None;
                self.scroll.back = 0;
                self.note("conversation cleared: the next message starts a new one");
                Some(ChatEffect::Send(vec![SessionCommand::ClearHistory]))
            }
            "save" if !arg.is_empty() => Some(ChatEffect::Save {
                path: arg.to_owned(),
                markdown: self.to_markdown(),
            }),
            "save" => {
                self.note_error("/save FILE: the file to write the conversation to");
                None
            }
            "transcribe" if !arg.is_empty() => {
                if self.protocol != Protocol::RelayV1 {
                    self.note_error(format!(
                        "transcription needs a relay-v1 provider; {} speaks {}",
                        self.provider,
                        self.protocol.label()
                    ));
                    return None;
                }
                Some(ChatEffect::Transcribe {
                    path: arg.to_owned(),
                })
            }
            "transcribe" => {
                self.note_error("/transcribe FILE: the WAV file to transcribe");
                None
            }
            "retry" => self.retry(),
            "help" => {
                let mut text = String::from("commands:");
                for (command, help) in CHAT_COMMANDS {
                    let _ = write!(text, "\n  {command:<18} {help}");
                }
                self.note(text);
                None
            }
            other => {
                self.note_error(format!(
                    "no command /{other}: /help lists them (start with // to send a slash)"
                ));
                None
            }
        }
    }

    /// The host wrote the file of `/save`.
    pub fn saved(&mut self, path: &str, result: Result<(), String>) {
        match result {
            Ok(()) => self.note(format!("saved the conversation to {path}")),
            Err(e) => self.note_error(format!("cannot save to {path}: {e}")),
        }
    }

    /// The host read the WAV of `/transcribe` and sent it.
    pub fn transcription_queued(&mut self, file: &str, audio: String) {
        let turn = Turn::new(
            TurnKind::Transcription {
                file: file.to_owned(),
                audio,
            },
            ReplyStatus::Queued,
            "whisper-1",
        );
        let number = self.push_turn(turn);
        self.queued.push_back(number);
    }

    /// One of the session's events (others' are ignored).
    pub fn apply(&mut self, event: &SessionEvent) {
        if event.session != self.session {
            return;
        }
        match &event.kind {
            EventKind::State(state) => self.state = Some(state.clone()),
            EventKind::RequestSent { request, model, .. } => {
                if let Some(number) = self.queued.pop_front() {
                    self.in_flight = Some((*request, number));
                    if let Some(turn) = self.turn_mut(number) {
                        turn.status = ReplyStatus::Waiting;
                        turn.model = model.clone();
                        turn.touch();
                    }
                }
            }
            EventKind::FirstToken { request, ttft_us } => {
                if let Some(turn) = self.current(*request) {
                    turn.ttft_us = Some(*ttft_us);
                }
            }
            EventKind::Chunk { request, text } => {
                if let Some(turn) = self.current(*request) {
                    if turn.reply.len() + text.len() <= MAX_REPLY_CHARS {
                        turn.reply.push_str(text);
                    }
                    turn.status = ReplyStatus::Streaming;
                    turn.touch();
                }
            }
            EventKind::Transcript { text, .. } => {
                if let Some((request, _)) = self.in_flight
                    && let Some(turn) = self.current(request)
                {
                    turn.reply.clear();
                    turn.reply.push_str(text);
                    turn.status = ReplyStatus::Streaming;
                    turn.touch();
                }
            }
            EventKind::Done(done) => {
                let Completed {
                    request,
                    model,
                    ttft_us,
                    total_us,
                    tokens,
                    reported_cost_usd,
                    finish_reason,
                    ..
                } = &**done;
                // The model the `Done` names, as it names it (the pane does not fall back on
                // the session's model).
                let cost = self.pricing.cost(&Response {
                    model,
                    tokens,
                    reported_cost_usd: *reported_cost_usd,
                });
                let cost = if cost.priced {
                    format::money(cost.billed, &self.pricing.billing_currency, cost.estimated)
                } else {
                    format!("no price for {model}")
                };
                if let Some(turn) = self.current(*request) {
                    turn.status = if finish_reason.as_deref() == Some("cancelled") {
                        ReplyStatus::Cancelled
                    } else {
                        ReplyStatus::Done
                    };
                    turn.stats = Some(ReplyStats {
                        ttft_us: ttft_us.or(turn.ttft_us),
                        total_us: *total_us,
                        tokens: *tokens,
                        cost,
                        finish_reason: finish_reason.clone(),
                    });
                    turn.touch();
                }
                self.end_request(*request);
            }
            EventKind::RequestFailed {
                request,
                kind,
                reason,
            } => {
                if let Some(turn) = self.current(*request) {
                    turn.status = ReplyStatus::Cut {
                        reason: match kind {
                            ErrorKind::Network | ErrorKind::Timeout | ErrorKind::Other => {
                                reason.clone()
                            }
                            kind => format!("{}: {reason}", kind.label()),
                        },
                    };
                    turn.touch();
                }
                self.end_request(*request);
            }
            EventKind::Error {
                kind: ErrorKind::InvalidRequest,
                message,
                retryable: false,
                ..
            } if self.in_flight.is_none() => {
                // A command the session refused (nothing to retry, not relay-v1, a full
                // queue): the turn it was for will not be sent.
                if let Some(number) = self.queued.pop_back()
                    && let Some(turn) = self.turn_mut(number)
                {
                    turn.status = ReplyStatus::Cut {
                        reason: message.clone(),
                    };
                    turn.touch();
                }
                self.note_error(message.clone());
            }
            _ => {}
        }
    }

    /// The turn of `request`, when it is the one under way.
    fn current(&mut self, request: RequestId) -> Option<&mut Turn> {
        let (under_way, number) = self.in_flight?;
        if under_way != request {
            return None;
        }
        self.turn_mut(number)
    }

    fn end_request(&mut self, request: RequestId) {
        if self.in_flight.is_some_and(|(r, _)| r == request) {
            self.in_flight = None;
            self.cancel_asked = false;
        }
    }

    /// The conversation as Markdown (`/save`).
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# Chat with {} ({}, {})\n\n",
            self.provider,
            self.model,
            self.protocol.label()
        );
        if let Some(system) = &self.system {
            let _ = write!(out, "_System:_ {system}\n\n");
        }
        for turn in &self.turns {
            match &turn.kind {
                TurnKind::Note { .. } => continue,
                TurnKind::Message(text) => {
                    let _ = write!(out, "## You\n\n{text}\n\n");
                }
                TurnKind::Transcription { file, audio } => {
                    let _ = write!(out, "## Transcription of {file}\n\n_{audio}_\n\n");
                }
            }
            let _ = write!(out, "## {}\n\n", turn.model);
            if !turn.reply.is_empty() {
                let _ = write!(out, "{}\n\n", turn.reply.trim_end());
            }
            let status = status_text(turn);
            if !status.is_empty() {
                let _ = write!(out, "_{status}_\n\n");
            }
        }
        out
    }

    /// Lays the turns out for `width` columns (only those changed since). Call before
    /// drawing; drawing then only reads.
    pub fn layout(&mut self, width: usize, theme: &Theme) {
        let width = width.max(10);
        let style = MarkdownStyle::from_theme(theme);
        let mut total = 0;
        let relaid = self.width != width;
        for turn in &mut self.turns {
            let key = (width, turn.version);
            if relaid || turn.laid_out != Some(key) {
                turn.lines = turn_lines(turn, width, theme, &style);
                turn.laid_out = Some(key);
            }
            total += turn.lines.len();
        }
        self.width = width;
        self.total_lines = total;
        self.scroll.back = self.scroll.back.min(total.saturating_sub(1));
    }

    /// Lines of the conversation, as laid out.
    pub fn total_lines(&self) -> usize {
        self.total_lines
    }

    /// The `rows` lines to draw, ending `scroll.back` lines before the last one.
    pub fn visible(&self, rows: usize) -> Vec<&Line<'static>> {
        let mut skip = self.scroll.back;
        let mut out = Vec::with_capacity(rows);
        'turns: for turn in self.turns.iter().rev() {
            for line in turn.lines.iter().rev() {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                out.push(line);
                if out.len() >= rows {
                    break 'turns;
                }
            }
        }
        out.reverse();
        out
    }
}
