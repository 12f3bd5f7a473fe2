//! Counts: what happened to a session, a provider or the run — requests, responses, tokens,
//! spend (exact, in nano-dollars), errors by kind, heartbeats, connections — and the bounds on
//! the messages kept.

use serde::Serialize;

use crate::cost::Cost;
use crate::session::{Completed, ErrorKind, EventKind};

/// Longest error message or stop reason kept, in characters.
pub const MAX_MESSAGE_CHARS: usize = 240;
/// Most models remembered as having no price, per provider.
pub const MAX_UNPRICED_MODELS: usize = 8;
/// The name of the run-wide totals.
pub const TOTALS_NAME: &str = "all";

/// Counts of errors by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; ErrorCounts::KINDS.len()]);

impl ErrorCounts {
    /// Every error kind, in the order `iter` yields them.
    pub const KINDS: [ErrorKind; 10] = [
        ErrorKind::Auth,
        ErrorKind::RateLimited,
        ErrorKind::Overloaded,
        ErrorKind::Upstream,
        ErrorKind::InvalidRequest,
        ErrorKind::Network,
        ErrorKind::Timeout,
        ErrorKind::Protocol,
        ErrorKind::Cut,
        ErrorKind::Other,
    ];

    pub(super) fn slot(kind: ErrorKind) -> usize {
        match kind {
            ErrorKind::Auth => 0,
            ErrorKind::RateLimited => 1,
            ErrorKind::Overloaded => 2,
            ErrorKind::Upstream => 3,
            ErrorKind::InvalidRequest => 4,
            ErrorKind::Network => 5,
            ErrorKind::Timeout => 6,
            ErrorKind::Protocol => 7,
            ErrorKind::Other => 8,
            ErrorKind::Cut => 9,
        }
    }

    /// How many errors of `kind`.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.0[Self::slot(kind)]
    }

    pub(super) fn add(&mut self, kind: ErrorKind) {
        let n = &mut self.0[Self::slot(kind)];
        *n = n.saturating_add(1);
    }

    /// Every kind with its count (zeros included), in `KINDS` order.
    pub fn iter(&self) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
        Self::KINDS.iter().map(|k| (*k, self.get(*k)))
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Token counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TokenCounts {
    /// Prompt tokens (cached ones included).
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
    /// Prompt tokens served from a cache.
    pub cached_input: u64,
    /// Input and output tokens that were estimated because the relay sent no usage.
    pub estimated: u64,
    /// Responses whose tokens were estimated.
    pub estimated_responses: u64,
}

/// Spend, summed exactly in nano-dollars so that many small costs add up to the exact total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CostTotals {
    pub(super) list_nano_usd: u64,
    pub(super) fee_nano_usd: u64,
    pub(super) billed_nano: u64,
    /// Responses priced from estimated tokens.
    pub estimated_responses: u64,
    /// Responses of a model with no price (counted at 0).
    pub unpriced_responses: u64,
}

pub(super) fn nano(x: f64) -> u64 {
    // Costs are finite and not negative (cost.rs); `as` saturates anything else.
    (x * 1e9).round() as u64
}

impl CostTotals {
    pub(super) fn add(&mut self, c: &Cost) {
        self.list_nano_usd = self.list_nano_usd.saturating_add(nano(c.list_usd));
        self.fee_nano_usd = self.fee_nano_usd.saturating_add(nano(c.fee_usd));
        self.billed_nano = self.billed_nano.saturating_add(nano(c.billed));
        self.estimated_responses += u64::from(c.estimated);
        self.unpriced_responses += u64::from(!c.priced);
    }

    /// Token cost at list price (or as the relay reported it), US $.
    pub fn list_usd(&self) -> f64 {
        self.list_nano_usd as f64 / 1e9
    }
    /// Per-call fees, US $.
    pub fn fees_usd(&self) -> f64 {
        self.fee_nano_usd as f64 / 1e9
    }
    /// Tokens and fees, US $.
    pub fn total_usd(&self) -> f64 {
        self.total_nano_usd() as f64 / 1e9
    }
    /// Tokens and fees in nano-dollars (exact).
    pub fn total_nano_usd(&self) -> u64 {
        self.list_nano_usd.saturating_add(self.fee_nano_usd)
    }
    /// What it costs in the provider's billing currency.
    pub fn billed(&self) -> f64 {
        self.billed_nano as f64 / 1e9
    }
    /// Whether any of it was priced from estimated tokens.
    pub fn is_estimated(&self) -> bool {
        self.estimated_responses > 0
    }
}

/// The last heartbeat answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    /// Round trip, microseconds.
    pub rtt_us: u64,
    /// When the `pong` came, microseconds since the run started.
    pub at_us: u64,
}

/// The last error reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// When, microseconds since the run started.
    pub at_us: u64,
    pub kind: ErrorKind,
    /// The message, cut to `MAX_MESSAGE_CHARS`.
    pub message: String,
}

/// Everything counted, alike for a session, a provider and the run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts {
    /// Requests sent.
    pub requests_sent: u64,
    /// Responses that completed (`done`).
    pub responses_completed: u64,
    /// Requests that ended without `done`.
    pub requests_failed: u64,
    /// Failed requests by kind.
    pub failures_by_kind: ErrorCounts,
    /// Errors reported (by the relay or the connection).
    pub errors: u64,
    /// Errors by kind.
    pub errors_by_kind: ErrorCounts,
    /// Connections established.
    pub connects: u64,
    /// Connections after a session's first.
    pub reconnects: u64,
    /// Closes this client did not ask for.
    pub drops: u64,
    /// Streamed chunks received.
    pub chunks: u64,
    /// Bytes of streamed text (and transcripts) received.
    pub bytes: u64,
    /// Transcription results received.
    pub transcripts: u64,
    /// Frames that could not be parsed.
    pub malformed_frames: u64,
    /// Well-formed frames of an unknown type.
    pub unknown_frames: u64,
    /// Heartbeats answered (`pong`).
    pub heartbeats_answered: u64,
    /// Heartbeats left unanswered for a whole interval.
    pub heartbeats_missed: u64,
    /// The last heartbeat answered.
    pub last_heartbeat: Option<Heartbeat>,
    /// Tokens of completed responses.
    pub tokens: TokenCounts,
    /// Spend on completed responses.
    pub cost: CostTotals,
    /// Times sending was held back by a rate limit.
    pub rate_limit_waits: u64,
    /// Milliseconds of those waits, added up.
    pub rate_limit_wait_ms: u64,
    /// Reconnect waits (backoffs) begun.
    pub backoffs: u64,
    /// The last error or failed request.
    pub last_error: Option<LastError>,
    /// Responses cut short: ended (or lost their connection) after text came but without
    /// their terminal mark, or ended clean yet not whole (no finish reason, `incomplete`,
    /// events lost, no answer at all). Apart from `responses_completed` and `requests_failed`.
    pub responses_cut: u64,
    /// Requests that got at least one token.
    pub responded: u64,
    /// Completed requests that met the service-level objective (`[slo]`).
    pub good: u64,
    /// Connection attempts refused or failed (an upgrade answered 401, 429, 503; a connect
    /// refused): errors, though no request went out.
    pub connects_refused: u64,
    /// Connection time, microseconds, over every connection (up to the last event).
    pub connected_us: u64,
    /// The longest stall of any response, microseconds.
    pub longest_stall_us: u64,
    /// Output tokens the relay reported against those counted in the text it sent.
    pub usage_audit: UsageAudit,
}

/// The usage audit: for responses whose answer relaytop counted (at most one a second per
/// session; none with thinking, whose billed tokens the text does not show), the output
/// tokens the relay reported and those the text holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UsageAudit {
    /// Responses audited.
    pub responses: u64,
    /// Output tokens the relay reported for them.
    pub reported: u64,
    /// Output tokens counted in their text.
    pub counted: u64,
}

impl UsageAudit {
    /// How much more the relay reported than the text holds: 0.25 is 25 % more; negative
    /// when it reported fewer. `None` before anything was audited.
    pub fn excess(&self) -> Option<f64> {
        (self.counted > 0).then(|| self.reported as f64 / self.counted as f64 - 1.0)
    }

    /// Whether the relay reported more than the text holds beyond `tolerance` (0.1: 10 %),
    /// over at least `MIN_AUDITED_TOKENS` counted tokens.
    pub fn overbills(&self, tolerance: f64) -> bool {
        self.counted >= MIN_AUDITED_TOKENS && self.excess().is_some_and(|e| e > tolerance)
    }
}

/// Fewest counted tokens behind an overbilling verdict.
pub const MIN_AUDITED_TOKENS: u64 = 50;

impl Counts {
    /// Drops per connection: `drops / connects` (0 without connections).
    pub fn drop_rate(&self) -> f64 {
        ratio(self.drops, self.connects)
    }

    /// Requests that ended one way or another: completed, cut or failed.
    pub fn finished(&self) -> u64 {
        self.responses_completed + self.responses_cut + self.requests_failed
    }

    /// Errors per attempt: failed requests and refused connects over finished requests and
    /// refused connects (cut responses are counted apart: `cut_rate`).
    pub fn error_rate(&self) -> f64 {
        ratio(
            self.requests_failed + self.connects_refused,
            self.finished() + self.connects_refused,
        )
    }

    /// Cut responses per finished request.
    pub fn cut_rate(&self) -> f64 {
        ratio(self.responses_cut, self.finished())
    }

    /// Drops per 100 finished requests.
    pub fn drops_per_100_responses(&self) -> f64 {
        100.0 * ratio(self.drops, self.finished())
    }

    /// Share of finished requests that got at least one token.
    pub fn response_rate(&self) -> f64 {
        ratio(self.responded, self.finished())
    }

    /// Share of finished requests that met the service-level objective.
    pub fn good_rate(&self) -> f64 {
        ratio(self.good, self.finished())
    }

    /// Effective spend per 1,000 completed calls, US $ (`None` before the first).
    pub fn cost_per_1000_calls_usd(&self) -> Option<f64> {
        (self.responses_completed > 0)
            .then(|| self.cost.total_usd() * 1000.0 / self.responses_completed as f64)
    }

    pub(super) fn add(&mut self, at_us: u64, kind: &EventKind, seen: &Seen) {
        let inc = |n: &mut u64| *n = n.saturating_add(1);
        if seen.responded {
            inc(&mut self.responded);
        }
        if seen.refused {
            inc(&mut self.connects_refused);
        }
        if let Some(r) = &seen.request {
            if r.good {
                inc(&mut self.good);
            }
            if let Some(stall) = r.stall_us {
                self.longest_stall_us = self.longest_stall_us.max(stall);
            }
        }
        match kind {
            EventKind::State(_)
            | EventKind::Marker { .. }
            | EventKind::RateLimitStatus(_)
            | EventKind::Account(_)
            | EventKind::RelayError(_) => {}
            EventKind::Connected { .. } => {
                inc(&mut self.connects);
                if seen.reconnect {
                    inc(&mut self.reconnects);
                }
            }
            EventKind::RequestSent { .. } => inc(&mut self.requests_sent),
            EventKind::FirstToken { .. } => {}
            EventKind::Chunk { text, .. } => {
                inc(&mut self.chunks);
                self.bytes = self.bytes.saturating_add(text.len() as u64);
            }
            EventKind::Done(done) => {
                let Completed {
                    tokens,
                    cut,
                    text_tokens,
                    ..
                } = &**done;
                if cut.is_some() {
                    inc(&mut self.responses_cut);
                } else {
                    inc(&mut self.responses_completed);
                }
                if let Some(counted) = text_tokens
                    && !tokens.estimated
                {
                    let a = &mut self.usage_audit;
                    inc(&mut a.responses);
                    a.reported = a
                        .reported
                        .saturating_add(tokens.output.saturating_sub(tokens.reasoning_output));
                    a.counted = a.counted.saturating_add(*counted);
                }
                let t = &mut self.tokens;
                t.input = t.input.saturating_add(tokens.input);
                t.output = t.output.saturating_add(tokens.output);
                t.cached_input = t.cached_input.saturating_add(tokens.cached_input);
                if tokens.estimated {
                    t.estimated = t
                        .estimated
                        .saturating_add(tokens.input.saturating_add(tokens.output));
                    inc(&mut t.estimated_responses);
                }
                if let Some(cost) = &seen.cost {
                    self.cost.add(cost);
                }
            }
            EventKind::RequestFailed { kind, reason, .. } => {
                if *kind == ErrorKind::Cut {
                    inc(&mut self.responses_cut);
                } else {
                    inc(&mut self.requests_failed);
                }
                self.failures_by_kind.add(*kind);
                self.last_error = Some(last_error(at_us, *kind, reason));
            }
            EventKind::Error { kind, message, .. } => {
                inc(&mut self.errors);
                self.errors_by_kind.add(*kind);
                self.last_error = Some(last_error(at_us, *kind, message));
            }
            EventKind::Pong { rtt_us } => {
                inc(&mut self.heartbeats_answered);
                self.last_heartbeat = Some(Heartbeat {
                    rtt_us: *rtt_us,
                    at_us,
                });
            }
            EventKind::HeartbeatMissed { .. } => inc(&mut self.heartbeats_missed),
            EventKind::Closed { requested, .. } => {
                if !requested {
                    inc(&mut self.drops);
                }
            }
            EventKind::BackingOff { .. } => inc(&mut self.backoffs),
            EventKind::RateLimited { wait_ms, .. } => {
                inc(&mut self.rate_limit_waits);
                self.rate_limit_wait_ms = self.rate_limit_wait_ms.saturating_add(*wait_ms);
            }
            EventKind::Malformed { .. } => inc(&mut self.malformed_frames),
            EventKind::UnknownFrame { .. } => inc(&mut self.unknown_frames),
            EventKind::Transcript { text, .. } => {
                inc(&mut self.transcripts);
                self.bytes = self.bytes.saturating_add(text.len() as u64);
            }
        }
    }
}

pub(super) fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// `s` cut to `MAX_MESSAGE_CHARS` characters (with "…" when cut).
pub(super) fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_string(),
    }
}

pub(super) fn last_error(at_us: u64, kind: ErrorKind, message: &str) -> LastError {
    LastError {
        at_us,
        kind,
        message: bounded(message),
    }
}

/// What the session's own history says about an event, shared with its provider and the run.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// A connect after the session's first.
    pub(super) reconnect: bool,
    /// A time-to-first-token sample not counted before for this request.
    pub(super) ttft_us: Option<u64>,
    /// The priced response.
    pub(super) cost: Option<Cost>,
    /// The model of a response without a price.
    pub(super) unpriced_model: Option<String>,
    /// A connection attempt refused or failed.
    pub(super) refused: bool,
    /// A request ended that had got at least one token.
    pub(super) responded: bool,
    /// A connection came up at this time.
    pub(super) connection_up_at: Option<u64>,
    /// A connection that was up over this span went away.
    pub(super) connection_span: Option<(u64, u64)>,
    /// The figures of a request that just ended.
    pub(super) request: Option<Box<RequestFigures>>,
    /// +1 when a connection came up, -1 when one went away.
    pub(super) connection: i8,
}

/// The figures of one finished request, computed once by its session and recorded by its
/// provider, its model and the run alike.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestFigures {
    /// Time to the first answer token.
    pub ttfa_us: Option<u64>,
    /// Time per output token.
    pub tpot_us: Option<u64>,
    /// Inter-token gaps: (gap per token, tokens), one entry per chunk after the first.
    pub itl: Vec<(u64, u64)>,
    /// The longest stall.
    pub stall_us: Option<u64>,
    /// Whether it met the service-level objective.
    pub good: bool,
}
