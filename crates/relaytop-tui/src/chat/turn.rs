//! A turn of the conversation: what was asked, the reply as it streams in, where it is and its
//! stats; and where the conversation is scrolled to.

use ratatui::text::Line;

use relaytop_core::session::Tokens;

/// Where a turn's reply is.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyStatus {
    /// Waiting to be sent (not connected yet, or another reply is under way).
    Queued,
    /// Sent, nothing back yet.
    Waiting,
    /// Text is coming in.
    Streaming,
    Done,
    /// Stopped by Esc.
    Cancelled,
    /// Cut: a drop, an error frame, a timeout. `r` sends it again.
    Cut {
        reason: String,
    },
}

/// What a turn was.
#[derive(Clone, Debug, PartialEq)]
pub enum TurnKind {
    /// A message typed.
    Message(String),
    /// A WAV file sent for transcription.
    Transcription { file: String, audio: String },
    /// Something the pane says itself (command results, errors).
    Note { text: String, error: bool },
}

/// The figures under a reply.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplyStats {
    pub ttft_us: Option<u64>,
    pub total_us: u64,
    pub tokens: Tokens,
    pub cost: String,
    pub finish_reason: Option<String>,
}

/// One exchange: what was sent and what came back.
#[derive(Clone, Debug)]
pub struct Turn {
    pub kind: TurnKind,
    pub reply: String,
    pub status: ReplyStatus,
    pub stats: Option<ReplyStats>,
    pub model: String,
    /// Time to first token as soon as it is known.
    pub(super) ttft_us: Option<u64>,
    /// Laid-out lines and what they were laid out for.
    pub(super) lines: Vec<Line<'static>>,
    pub(super) laid_out: Option<(usize, u64)>,
    /// Bumped on every change, so the layout knows.
    pub(super) version: u64,
}

impl Turn {
    pub(super) fn new(kind: TurnKind, status: ReplyStatus, model: &str) -> Turn {
        Turn {
            kind,
            reply: String::new(),
            status,
            stats: None,
            model: model.to_owned(),
            ttft_us: None,
            lines: Vec::new(),
            laid_out: None,
            version: 0,
        }
    }

    pub(super) fn touch(&mut self) {
        self.version += 1;
    }
}

/// Where the conversation view is: following the end, or `back` lines up from it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChatScroll {
    pub back: usize,
}

impl ChatScroll {
    pub fn follow(&self) -> bool {
        self.back == 0
    }
}
