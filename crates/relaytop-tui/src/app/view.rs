//! What the person is looking at, as values: the panes, the sort columns, scroll positions,
//! filters, the effects asked of the loop, canary commands, a frozen view, the viewports;
//! and the pure helpers that order, scroll and label them.

use crate::keys::Action;
use crate::stream::{self};
use relaytop_core::metrics::{LatencyMetric, SessionStats, Window};
use relaytop_core::session::{SessionId, SessionState};

use super::data::*;

/// A pane of the dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pane {
    Sessions,
    Stream,
    Health,
    Cost,
    Events,
    /// Only in runs with a canary.
    Canary,
    /// The alerts (`a`), over the whole screen; not in the `Tab` order.
    Alerts,
}

impl Pane {
    /// Every pane, in `Tab` order.
    pub const ALL: [Pane; 6] = [
        Pane::Sessions,
        Pane::Canary,
        Pane::Stream,
        Pane::Health,
        Pane::Cost,
        Pane::Events,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Sessions => "Sessions",
            Pane::Stream => "Stream",
            Pane::Health => "Health",
            Pane::Cost => "Cost",
            Pane::Events => "Events",
            Pane::Canary => "Canary",
            Pane::Alerts => "Alerts",
        }
    }

    /// The pane after (or before) this one; the canary's only when `canary`.
    pub(super) fn step(self, forward: bool, canary: bool) -> Pane {
        let panes: Vec<Pane> = Pane::ALL
            .into_iter()
            .filter(|p| canary || *p != Pane::Canary)
            .collect();
        let i = panes.iter().position(|p| *p == self).unwrap_or(0);
        let n = panes.len();
        panes[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

/// A column the sessions table can be sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortColumn {
    Name,
    Provider,
    Model,
    State,
    Reconnects,
    Drops,
    HeartbeatRtt,
    HeartbeatAge,
    Ttft,
    Speed,
    Itl,
    Tokens,
    Cost,
}

impl SortColumn {
    /// Every column, left to right.
    pub const ALL: [SortColumn; 13] = [
        SortColumn::Name,
        SortColumn::Provider,
        SortColumn::Model,
        SortColumn::State,
        SortColumn::Reconnects,
        SortColumn::Drops,
        SortColumn::HeartbeatRtt,
        SortColumn::HeartbeatAge,
        SortColumn::Ttft,
        SortColumn::Speed,
        SortColumn::Itl,
        SortColumn::Tokens,
        SortColumn::Cost,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SortColumn::Name => "name",
            SortColumn::Provider => "provider",
            SortColumn::Model => "model",
            SortColumn::State => "state",
            SortColumn::Reconnects => "reconnects",
            SortColumn::Drops => "drops",
            SortColumn::HeartbeatRtt => "heartbeat rtt",
            SortColumn::HeartbeatAge => "heartbeat age",
            SortColumn::Ttft => "ttft p50",
            SortColumn::Speed => "output speed",
            SortColumn::Itl => "itl p99",
            SortColumn::Tokens => "tokens",
            SortColumn::Cost => "cost",
        }
    }

    pub(super) fn step(self, forward: bool) -> SortColumn {
        let i = SortColumn::ALL.iter().position(|c| *c == self).unwrap_or(0);
        let n = SortColumn::ALL.len();
        SortColumn::ALL[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

/// Scrolled text (stream, event log): following the newest line, or held at one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scroll {
    /// Whether new lines scroll into view.
    pub follow: bool,
    /// When not following: the `seq` of the bottom line shown.
    pub bottom: u64,
}

impl Default for Scroll {
    fn default() -> Self {
        Scroll {
            follow: true,
            bottom: 0,
        }
    }
}

/// Which filter the prompt is editing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterTarget {
    Sessions,
    Events,
}

/// Something the loop must do for the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Quit,
    /// Reconnect this session now.
    Reconnect(SessionId),
    /// Write marker number `n` to the recording (`marker_label(n)`).
    Mark(u32),
    /// Tell the canary driver.
    Canary(CanaryCommand),
    /// Open a chat pane on this session's provider.
    OpenChat(SessionId),
    /// Show the next open chat pane.
    ShowChat,
    /// Drive the replay (a `Group::Replay` action).
    Replay(Action),
}

/// What a person can tell a running canary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanaryCommand {
    Pause,
    Resume,
    Promote,
    RollBack,
}

impl CanaryCommand {
    /// What was done, for the status bar.
    pub fn done(self) -> &'static str {
        match self {
            CanaryCommand::Pause => "canary paused (traffic keeps its split)",
            CanaryCommand::Resume => "canary resumed",
            CanaryCommand::Promote => "canary promoted to 100 %",
            CanaryCommand::RollBack => "canary rolled back to 0 %",
        }
    }

    /// The question asked before a destructive command.
    pub(super) fn question(self) -> &'static str {
        match self {
            CanaryCommand::Promote => "promote the canary to 100 % now?",
            CanaryCommand::RollBack => "roll the canary back to 0 % now?",
            CanaryCommand::Pause | CanaryCommand::Resume => "",
        }
    }
}

/// The label of the `n`th marker written with the `mark` key.
pub fn marker_label(n: u32) -> String {
    format!("marker {n} (key press)")
}

/// A frozen view: the data and the time as they were when `f` was pressed.
#[derive(Clone, Debug)]
pub(super) struct Frozen {
    pub(super) data: Data,
    pub(super) now_us: u64,
    pub(super) events_since: u64,
}

/// Sizes the last `prepare` found, for paging and mouse hits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Viewports {
    pub table_rows: usize,
    pub stream_rows: usize,
    pub events_rows: usize,
}

/// A time window as people say it.
pub fn window_name(window: Window) -> &'static str {
    match window {
        Window::OneMinute => "1 min",
        Window::FifteenMinutes => "15 min",
        Window::Run => "whole run",
    }
}

/// Rows a stream line takes at `width`.
pub fn line_height(line: &stream::StreamLine, width: usize) -> usize {
    match line.kind {
        stream::LineKind::Text => stream::wrapped_height(&line.text, width),
        _ => 1,
    }
}

/// Moves a scroll position by `delta` lines that pass `keep`, within `first..end`.
pub(super) fn scroll_seq(
    scroll: Scroll,
    first: u64,
    end: u64,
    delta: isize,
    keep: impl Fn(u64) -> bool,
) -> Scroll {
    if end == first {
        return Scroll::default();
    }
    let last = end - 1;
    let mut bottom = if scroll.follow {
        last
    } else {
        scroll.bottom.clamp(first, last)
    };
    // Following, the bottom line is the newest match.
    if scroll.follow {
        while bottom > first && !keep(bottom) {
            bottom -= 1;
        }
    }
    let mut steps = delta.unsigned_abs();
    if delta < 0 {
        while steps > 0 && bottom > first {
            bottom -= 1;
            if keep(bottom) {
                steps -= 1;
            }
        }
        Scroll {
            follow: false,
            bottom,
        }
    } else {
        while steps > 0 && bottom < last {
            bottom += 1;
            if keep(bottom) {
                steps -= 1;
            }
        }
        let newer = (bottom + 1..end).any(&keep);
        Scroll {
            follow: !newer,
            bottom,
        }
    }
}

/// The sort key of a session for `column`: smaller first; ties go by name.
pub(super) fn sort_key(
    column: SortColumn,
    s: &SessionStats,
    view: &SessionView,
    window: Window,
    now_us: u64,
) -> u64 {
    let c = &s.counts;
    match column {
        SortColumn::Name => 0,
        SortColumn::Provider => u64::from(view.ranks[1]),
        SortColumn::Model => u64::from(view.ranks[2]),
        SortColumn::State => match s.state() {
            SessionState::Stopped { .. } => 0,
            SessionState::BackingOff { .. } => 1,
            SessionState::Connecting { .. } => 2,
            SessionState::Streaming { .. } => 3,
            SessionState::Open => 4,
            SessionState::Closed => 5,
        },
        SortColumn::Reconnects => c.reconnects,
        SortColumn::Drops => c.drops,
        SortColumn::HeartbeatRtt => c.last_heartbeat.map_or(u64::MAX, |h| h.rtt_us),
        SortColumn::HeartbeatAge => c
            .last_heartbeat
            .map_or(u64::MAX, |h| now_us.saturating_sub(h.at_us)),
        SortColumn::Ttft => s
            .latency(LatencyMetric::TimeToFirstToken, window, now_us)
            .filter(|q| q.count > 0)
            .map_or(u64::MAX, |q| q.p50),
        // Slowest first when sorted ascending: the time per token, largest first.
        SortColumn::Speed => s
            .latency(LatencyMetric::TimePerOutputToken, window, now_us)
            .filter(|q| q.count > 0)
            .map_or(0, |q| u64::MAX - q.p50),
        SortColumn::Itl => s
            .latency(LatencyMetric::InterTokenLatency, window, now_us)
            .filter(|q| q.count > 0)
            .map_or(u64::MAX, |q| q.p99),
        SortColumn::Tokens => c.tokens.input + c.tokens.output,
        SortColumn::Cost => c.cost.total_nano_usd(),
    }
}

/// Compares names the way people count: `probe-2` before `probe-10`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (&a[..da], &b[..db]);
                let trim = |n: &[u8]| -> usize { n.iter().take_while(|c| **c == b'0').count() };
                let (ta, tb) = (&na[trim(na)..], &nb[trim(nb)..]);
                let order = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                let order = x.to_ascii_lowercase().cmp(&y.to_ascii_lowercase());
                if order != Ordering::Equal {
                    return order;
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}
