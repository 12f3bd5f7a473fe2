//! The dashboard's state: a pure fold of session events (metrics, stream text, event log,
//! cost by model) plus what the person is looking at (focus, selection, sort, filters, time
//! window, scroll positions, freeze, theme, help).
//!
//! Nothing here reads a clock or touches the terminal: the loop in `ui/mod.rs` passes the
//! time in (`set_now`), and key and mouse events arrive as values. `prepare` fits the view to
//! the screen (which rows are visible, where scrolled text stands) before each frame, so that
//! drawing is a pure read. Tests drive an `App` with a fixture and a fixed clock.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use crate::keys::{Action, Key, KeyMap};
use crate::log::{Category, EventLog};
use crate::render::{self, Screen};
use crate::replay::ReplayView;
use crate::stream::{self, StreamRing};
use crate::theme::Theme;
use relaytop_core::canary::{CanaryView, Phase};
use relaytop_core::cost::{Pricing, Response};
use relaytop_core::metrics::{LatencyMetric, Metrics, SessionStats, Window};
use relaytop_core::session::event::micros;
use relaytop_core::session::{EventKind, SessionEvent, SessionId, SessionInfo, SessionState};

/// Lines of stream text kept for a session someone has looked at recently.
pub const VIEWED_STREAM_LINES: usize = 10_000;
/// Lines kept for every other session (enough to show its recent requests when selected).
pub const BACKGROUND_STREAM_LINES: usize = 100;
/// Sessions that keep `VIEWED_STREAM_LINES` at once; the least recently viewed shrinks back.
pub const MAX_VIEWED_SESSIONS: usize = 8;
/// How often the session order is recomputed while events arrive (a key press does it now).
const ROW_REFRESH_US: u64 = 250_000;
/// The same when sorting by a latency, which asks every session's histograms.
const LATENCY_ROW_REFRESH_US: u64 = 1_000_000;
/// How long a notice stays in the status bar.
const NOTICE_US: u64 = 4_000_000;

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
        }
    }

    /// The pane after (or before) this one; the canary's only when `canary`.
    fn step(self, forward: bool, canary: bool) -> Pane {
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
    Tokens,
    Cost,
}

impl SortColumn {
    /// Every column, left to right.
    pub const ALL: [SortColumn; 11] = [
        SortColumn::Name,
        SortColumn::Provider,
        SortColumn::Model,
        SortColumn::State,
        SortColumn::Reconnects,
        SortColumn::Drops,
        SortColumn::HeartbeatRtt,
        SortColumn::HeartbeatAge,
        SortColumn::Ttft,
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
            SortColumn::Tokens => "tokens",
            SortColumn::Cost => "cost",
        }
    }

    fn step(self, forward: bool) -> SortColumn {
        let i = SortColumn::ALL.iter().position(|c| *c == self).unwrap_or(0);
        let n = SortColumn::ALL.len();
        SortColumn::ALL[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

/// What a session is, as the dashboard needs it at the start.
#[derive(Clone, Debug)]
pub struct SessionSetup {
    pub info: SessionInfo,
    /// How often it sends heartbeats (`None`: it does not), to tell when one is late.
    pub heartbeat_every: Option<Duration>,
}

/// The dashboard's own view of one session, beside its metrics.
#[derive(Clone, Debug)]
pub struct SessionView {
    pub id: SessionId,
    pub stream: StreamRing,
    /// When a heartbeat was last missed.
    pub last_missed_heartbeat_us: Option<u64>,
    /// When the current (or last) connection came up.
    pub connected_at_us: Option<u64>,
    /// The relay's last word on its rate limits, if it says.
    pub rate_limits: Option<RateLimits>,
    /// The heartbeat interval, microseconds.
    pub heartbeat_every_us: Option<u64>,
    /// Lower-case name, provider and model: what the filter searches (with the state).
    search: String,
    /// Where the session's name, provider and model come in natural order among all sessions'
    /// (fixed for the run, so sorting compares numbers, not text).
    ranks: [u32; 3],
}

/// The relay's own account of its rate limits (`RateLimitStatus`): what is left of each
/// limit, and when it resets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// When the relay said so, microseconds since the run started.
    pub at_us: u64,
    pub requests_limit: Option<u64>,
    pub requests_remaining: Option<u64>,
    pub requests_reset_ms: Option<u64>,
    pub tokens_limit: Option<u64>,
    pub tokens_remaining: Option<u64>,
    pub tokens_reset_ms: Option<u64>,
}

/// Spend on one model at one provider.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelCost {
    pub provider: String,
    pub model: String,
    /// The provider's billing currency.
    pub currency: String,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// In the billing currency, nano-units (exact sums).
    pub billed_nano: u64,
    /// Responses priced from estimated tokens.
    pub estimated_responses: u64,
    /// Whether the model has no price (counted at 0).
    pub unpriced: bool,
}

impl ModelCost {
    /// What it cost, in the billing currency.
    pub fn billed(&self) -> f64 {
        self.billed_nano as f64 / 1e9
    }
}

/// Everything folded from events: what a frozen view keeps a copy of.
#[derive(Clone, Debug)]
pub struct Data {
    pub metrics: Metrics,
    /// By session id (ids are dense from 0).
    pub sessions: Vec<SessionView>,
    pub log: EventLog,
    /// Spend by provider and model, in the order first seen.
    pub model_costs: Vec<ModelCost>,
}

impl Data {
    pub fn new(sessions: &[SessionSetup], pricing: Pricing) -> Data {
        let metrics = Metrics::new(sessions.iter().map(|s| s.info.clone()).collect(), pricing);
        let mut views: Vec<SessionView> = sessions
            .iter()
            .map(|s| SessionView {
                id: s.info.id,
                stream: StreamRing::new(BACKGROUND_STREAM_LINES),
                last_missed_heartbeat_us: None,
                connected_at_us: None,
                rate_limits: None,
                heartbeat_every_us: s.heartbeat_every.map(micros),
                search: format!("{} {} {}", s.info.name, s.info.provider, s.info.model)
                    .to_lowercase(),
                ranks: [0; 3],
            })
            .collect();
        views.sort_by_key(|v| v.id);
        for field in 0..3 {
            let label = |s: &SessionSetup| -> String {
                match field {
                    0 => s.info.name.clone(),
                    1 => s.info.provider.clone(),
                    _ => s.info.model.clone(),
                }
            };
            let mut order: Vec<(String, SessionId)> =
                sessions.iter().map(|s| (label(s), s.info.id)).collect();
            order.sort_by(|a, b| natural_cmp(&a.0, &b.0).then(a.1.cmp(&b.1)));
            let mut rank = 0u32;
            for (i, (text, id)) in order.iter().enumerate() {
                if i > 0 && natural_cmp(&order[i - 1].0, text) != std::cmp::Ordering::Equal {
                    rank += 1;
                }
                if let Ok(at) = views.binary_search_by_key(id, |v| v.id) {
                    views[at].ranks[field] = rank;
                }
            }
        }
        Data {
            metrics,
            sessions: views,
            log: EventLog::default(),
            model_costs: Vec::new(),
        }
    }

    /// The view of session `id`.
    pub fn view(&self, id: SessionId) -> Option<&SessionView> {
        match self.sessions.get(id as usize) {
            Some(v) if v.id == id => Some(v),
            _ => self.sessions.iter().find(|v| v.id == id),
        }
    }

    fn view_mut(&mut self, id: SessionId) -> Option<&mut SessionView> {
        let index = match self.sessions.get(id as usize) {
            Some(v) if v.id == id => id as usize,
            _ => self.sessions.iter().position(|v| v.id == id)?,
        };
        self.sessions.get_mut(index)
    }

    pub fn apply(&mut self, event: &SessionEvent) {
        self.metrics.apply(event);
        let Some(stats) = self.metrics.session(event.session) else {
            return;
        };
        let name = stats.info().name.clone();
        let info = stats.info();
        if let Some(response) = Response::of_session(&event.kind, &info.model) {
            let (model, tokens) = (response.model, response.tokens);
            let pricing = self.metrics.pricing().provider(&info.provider);
            let cost = pricing.cost(&response);
            let index = match self
                .model_costs
                .iter()
                .position(|m| m.provider == info.provider && m.model == *model)
            {
                Some(i) => i,
                None => {
                    self.model_costs.push(ModelCost {
                        provider: info.provider.clone(),
                        model: model.to_owned(),
                        currency: pricing.billing_currency.clone(),
                        ..ModelCost::default()
                    });
                    self.model_costs.len() - 1
                }
            };
            let entry = &mut self.model_costs[index];
            entry.calls += 1;
            entry.input_tokens = entry.input_tokens.saturating_add(tokens.input);
            entry.output_tokens = entry.output_tokens.saturating_add(tokens.output);
            // Costs are finite and not negative (cost.rs); `as` saturates anything else.
            entry.billed_nano = entry
                .billed_nano
                .saturating_add((cost.billed * 1e9).round() as u64);
            entry.estimated_responses += u64::from(cost.estimated);
            entry.unpriced |= !cost.priced;
        }
        self.log.fold(event, &name);
        if let Some(view) = self.view_mut(event.session) {
            view.stream.fold(event);
            match event.kind {
                EventKind::HeartbeatMissed { .. } => {
                    view.last_missed_heartbeat_us = Some(event.at_us);
                }
                EventKind::Connected { .. } => view.connected_at_us = Some(event.at_us),
                EventKind::RateLimitStatus {
                    requests_limit,
                    requests_remaining,
                    requests_reset_ms,
                    tokens_limit,
                    tokens_remaining,
                    tokens_reset_ms,
                } => {
                    view.rate_limits = Some(RateLimits {
                        at_us: event.at_us,
                        requests_limit,
                        requests_remaining,
                        requests_reset_ms,
                        tokens_limit,
                        tokens_remaining,
                        tokens_reset_ms,
                    });
                }
                _ => {}
            }
        }
    }
}

/// relaytop's own use of the machine, measured by the loop.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SelfUsage {
    /// Percent of one core.
    pub cpu_percent: f32,
    /// Resident memory.
    pub memory_bytes: u64,
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
    fn question(self) -> &'static str {
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
struct Frozen {
    data: Data,
    now_us: u64,
    events_since: u64,
}

/// Sizes the last `prepare` found, for paging and mouse hits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Viewports {
    pub table_rows: usize,
    pub stream_rows: usize,
    pub events_rows: usize,
}

/// The dashboard's whole state.
pub struct App {
    live: Data,
    frozen: Option<Box<Frozen>>,
    now_us: u64,
    started_at: DateTime<FixedOffset>,
    keys: KeyMap,
    themes: Vec<Theme>,
    theme: usize,
    cost_warning_per_hour_usd: Option<f64>,
    pub(crate) self_usage: Option<SelfUsage>,

    pub(crate) focus: Pane,
    /// The pane shown under the sessions when the screen is too small for all of them.
    pub(crate) detail: Pane,
    pub(crate) zoomed: bool,
    /// The help overlay's scroll offset, when it is open.
    pub(crate) help: Option<usize>,
    /// The filter prompt, when open: which filter it edits.
    pub(crate) input: Option<FilterTarget>,
    pub(crate) session_filter: String,
    pub(crate) event_filter: String,
    pub(crate) sort: SortColumn,
    pub(crate) sort_reverse: bool,
    pub(crate) window: Window,

    pub(crate) selected: Option<SessionId>,
    /// The sessions that pass the filter, in sort order.
    pub(crate) rows: Vec<SessionId>,
    rows_stale: bool,
    rows_at_us: Option<u64>,
    pub(crate) table_offset: usize,
    pub(crate) stream_scroll: Scroll,
    pub(crate) events_scroll: Scroll,
    pub(crate) health_offset: usize,
    pub(crate) cost_offset: usize,
    pub(crate) viewports: Viewports,
    /// Most recently viewed sessions last; these keep long stream rings.
    viewed: VecDeque<SessionId>,
    notice: Option<(String, u64)>,
    /// The widest session name, provider and model, in columns.
    pub(crate) label_widths: [u16; 3],
    /// Where the run is recorded, when it is.
    recording: Option<std::path::PathBuf>,
    /// Markers written with the `mark` key so far.
    markers: u32,
    /// The run's canary as it was at the last frame, when the run has one.
    pub(crate) canary: Option<Box<CanaryView>>,
    /// A destructive canary command waiting for `y`.
    pub(crate) confirm: Option<CanaryCommand>,
    /// The replay's position and controls, when this is a replay.
    pub(crate) replay: Option<Box<ReplayView>>,
}

impl App {
    /// A dashboard over `sessions`, priced by `pricing`, for a run that started (on the wall
    /// clock) at `started_at`.
    pub fn new(
        sessions: &[SessionSetup],
        pricing: Pricing,
        started_at: DateTime<FixedOffset>,
    ) -> App {
        let live = Data::new(sessions, pricing);
        let width = |f: &dyn Fn(&SessionInfo) -> &str| {
            sessions
                .iter()
                .map(|s| f(&s.info).chars().count())
                .max()
                .unwrap_or(0)
                .min(usize::from(u16::MAX)) as u16
        };
        let label_widths = [
            width(&|i| &i.name),
            width(&|i| &i.provider),
            width(&|i| &i.model),
        ];
        let mut app = App {
            live,
            frozen: None,
            now_us: 0,
            started_at,
            keys: KeyMap::default(),
            themes: vec![Theme::dark()],
            theme: 0,
            cost_warning_per_hour_usd: None,
            self_usage: None,
            focus: Pane::Sessions,
            detail: Pane::Stream,
            zoomed: false,
            help: None,
            input: None,
            session_filter: String::new(),
            event_filter: String::new(),
            sort: SortColumn::Name,
            sort_reverse: false,
            window: Window::OneMinute,
            selected: None,
            rows: Vec::new(),
            rows_stale: true,
            rows_at_us: None,
            table_offset: 0,
            stream_scroll: Scroll::default(),
            events_scroll: Scroll::default(),
            health_offset: 0,
            cost_offset: 0,
            viewports: Viewports::default(),
            viewed: VecDeque::new(),
            notice: None,
            label_widths,
            recording: None,
            markers: 0,
            canary: None,
            confirm: None,
            replay: None,
        };
        app.refresh_rows();
        if let Some(first) = app.rows.first().copied() {
            app.select(first);
        }
        app
    }

    /// Uses `keys` for key presses.
    pub fn with_keys(mut self, keys: KeyMap) -> App {
        self.keys = keys;
        self
    }

    /// Cycles through `themes` with `t`, starting at `index`.
    pub fn with_themes(mut self, themes: Vec<Theme>, index: usize) -> App {
        if !themes.is_empty() {
            self.theme = index.min(themes.len() - 1);
            self.themes = themes;
        }
        self
    }

    /// Colours a provider's cost per hour above `usd` as a warning.
    pub fn with_cost_warning(mut self, usd: Option<f64>) -> App {
        self.cost_warning_per_hour_usd = usd.filter(|u| u.is_finite() && *u >= 0.0);
        self
    }

    /// Shows that the run is recorded in `dir` (status bar), and lets `mark` write markers.
    pub fn with_recording(mut self, dir: Option<std::path::PathBuf>) -> App {
        self.recording = dir;
        self
    }

    /// Shows the run's canary (`view`, updated with `set_canary`), in its own pane, which the
    /// compact layout shows first.
    pub fn with_canary(mut self, view: CanaryView) -> App {
        self.canary = Some(Box::new(view));
        self.detail = Pane::Canary;
        self
    }

    /// The canary as it is now (runs with a canary; every frame).
    pub fn set_canary(&mut self, view: CanaryView) {
        self.canary = Some(Box::new(view));
    }

    /// The canary as last set.
    pub fn canary(&self) -> Option<&CanaryView> {
        self.canary.as_deref()
    }

    /// Shows a replay: its timeline (updated with `set_replay`), and its keys first.
    pub fn set_replay(&mut self, view: ReplayView) {
        self.replay = Some(Box::new(view));
    }

    /// The replay as last set, when this is one.
    pub fn replay(&self) -> Option<&ReplayView> {
        self.replay.as_deref()
    }

    /// Replaces the folded data (a replay's seek: the state at the new position), keeping
    /// what the person is looking at; scrolled text follows the newest line again.
    pub fn replace_live(&mut self, data: Data) {
        self.live = data;
        self.frozen = None;
        for id in self.viewed.iter().copied() {
            if let Some(view) = self.live.view_mut(id) {
                view.stream.set_capacity(VIEWED_STREAM_LINES);
            }
        }
        self.stream_scroll = Scroll::default();
        self.events_scroll = Scroll::default();
        self.refresh_rows();
    }

    /// The question waiting for `y`, when one is.
    pub fn confirming(&self) -> Option<&'static str> {
        self.confirm.map(CanaryCommand::question)
    }

    // ---- reading -------------------------------------------------------------------------

    /// What is drawn: the live data, or the frozen copy.
    pub fn shown(&self) -> &Data {
        self.frozen.as_ref().map_or(&self.live, |f| &f.data)
    }

    /// The live data (always current, frozen or not).
    pub fn live(&self) -> &Data {
        &self.live
    }

    /// The time the drawn data is for: now, or when the view was frozen.
    pub fn now_us(&self) -> u64 {
        self.frozen.as_ref().map_or(self.now_us, |f| f.now_us)
    }

    /// Now, frozen or not (for the status bar's clock).
    pub fn live_now_us(&self) -> u64 {
        self.now_us
    }

    /// When the run started, on the wall clock.
    pub fn started_at(&self) -> DateTime<FixedOffset> {
        self.started_at
    }

    /// Events folded since the view was frozen, when it is.
    pub fn frozen_events(&self) -> Option<u64> {
        self.frozen.as_ref().map(|f| f.events_since)
    }

    pub fn keys(&self) -> &KeyMap {
        &self.keys
    }

    /// Where the run is recorded, when it is.
    pub fn recording(&self) -> Option<&std::path::Path> {
        self.recording.as_deref()
    }

    pub fn theme(&self) -> &Theme {
        // `themes` is never empty: `new` puts the dark theme in, `with_themes` keeps it unless
        // it is given others.
        &self.themes[self.theme.min(self.themes.len().saturating_sub(1))]
    }

    pub fn cost_warning_per_hour_usd(&self) -> Option<f64> {
        self.cost_warning_per_hour_usd
    }

    /// The status bar's notice, while it lasts.
    pub fn notice(&self) -> Option<&str> {
        self.notice
            .as_ref()
            .filter(|(_, until)| *until > self.now_us)
            .map(|(text, _)| text.as_str())
    }

    /// The selected session's figures.
    pub fn selected_stats(&self) -> Option<&SessionStats> {
        self.shown().metrics.session(self.selected?)
    }

    /// The window per-session latencies use: sessions keep 1 minute and the run, not 15.
    pub fn session_window(&self) -> Window {
        match self.window {
            Window::FifteenMinutes => Window::Run,
            w => w,
        }
    }

    /// Whether any session is backing off (its countdown wants frequent redraws).
    pub fn any_backing_off(&self) -> bool {
        self.shown()
            .metrics
            .sessions()
            .any(|s| matches!(s.state(), SessionState::BackingOff { .. }))
    }

    /// The filter as lower-case words.
    pub fn filter_words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_lowercase).collect()
    }

    // ---- folding -------------------------------------------------------------------------

    /// Folds one session event (into the live data; a frozen view stays as it was).
    pub fn apply(&mut self, event: &SessionEvent) {
        self.live.apply(event);
        match &mut self.frozen {
            Some(f) => f.events_since += 1,
            None => self.rows_stale = true,
        }
    }

    /// Sets the time, microseconds since the run started.
    pub fn set_now(&mut self, now_us: u64) {
        self.now_us = now_us;
    }

    /// Records relaytop's own CPU and memory use.
    pub fn set_self_usage(&mut self, usage: Option<SelfUsage>) {
        self.self_usage = usage;
    }

    /// Notes the answer to a reconnect the person asked for.
    pub fn reconnect_sent(&mut self, id: SessionId, accepted: bool) {
        let name = self
            .live
            .metrics
            .session(id)
            .map_or_else(|| format!("session {id}"), |s| s.info().name.clone());
        let text = if accepted {
            format!("reconnect requested for {name}")
        } else {
            format!("cannot reconnect {name}: the session has ended or is busy")
        };
        self.live
            .log
            .push(self.now_us, id, &name, Category::Note, text.clone());
        self.say(text);
    }

    /// Notes a marker written to the recording (the event log and the status bar).
    pub fn marked(&mut self, label: &str) {
        self.live.log.push(
            self.now_us,
            crate::log::ALL_SESSIONS,
            "all",
            Category::Note,
            format!("marker: {label}"),
        );
        self.say(format!("wrote {label} to the recording"));
    }

    /// Shows a notice about a chat pane (one that could not be opened).
    pub fn chat_notice(&mut self, text: String) {
        self.say(text);
    }

    /// Shows `text` in the status bar for a few seconds.
    pub fn notify(&mut self, text: String) {
        self.say(text);
    }

    fn say(&mut self, text: String) {
        self.notice = Some((text, self.now_us + NOTICE_US));
    }

    // ---- fitting the view to the screen --------------------------------------------------

    /// Brings the view up to date before a frame of size `area`: session order, selection,
    /// and scroll positions. Drawing then only reads.
    pub fn prepare(&mut self, area: Rect) {
        let every = if self.sort == SortColumn::Ttft {
            LATENCY_ROW_REFRESH_US
        } else {
            ROW_REFRESH_US
        };
        let due = self
            .rows_at_us
            .is_none_or(|at| self.now_us.saturating_sub(at) >= every || at > self.now_us);
        if self.rows_stale && due {
            self.refresh_rows();
        }
        if let Some(selected) = self.selected
            && !self.rows.contains(&selected)
        {
            self.selected = None;
        }
        if self.selected.is_none()
            && let Some(first) = self.rows.first().copied()
        {
            self.select(first);
        }
        let screen = render::layout(area, self);
        self.fit_table(&screen);
        self.fit_stream(&screen);
        self.fit_events(&screen);
    }

    fn fit_table(&mut self, screen: &Screen) {
        let rows = screen
            .pane(Pane::Sessions)
            .map_or(0, |r| usize::from(r.height.saturating_sub(3)));
        self.viewports.table_rows = rows;
        let len = self.rows.len();
        if rows == 0 || len == 0 {
            self.table_offset = 0;
            return;
        }
        if let Some(i) = self.selected_index() {
            if i < self.table_offset {
                self.table_offset = i;
            } else if i >= self.table_offset + rows {
                self.table_offset = i + 1 - rows;
            }
        }
        self.table_offset = self.table_offset.min(len.saturating_sub(rows));
    }

    fn fit_stream(&mut self, screen: &Screen) {
        let Some(area) = screen.pane(Pane::Stream) else {
            return;
        };
        let rows = usize::from(area.height.saturating_sub(2));
        let width = usize::from(area.width.saturating_sub(2));
        self.viewports.stream_rows = rows;
        if self.stream_scroll.follow {
            return;
        }
        let Some(view) = self.selected.and_then(|id| self.shown().view(id)) else {
            return;
        };
        let ring = &view.stream;
        if ring.is_empty() {
            self.stream_scroll = Scroll::default();
            return;
        }
        let last = ring.end_seq() - 1;
        let mut bottom = self.stream_scroll.bottom.clamp(ring.first_seq(), last);
        // Not enough lines above to fill the pane: show more below instead.
        let mut used: usize = (ring.first_seq()..=bottom)
            .rev()
            .map(|s| ring.get(s).map_or(1, |l| line_height(l, width)))
            .scan(0usize, |acc, h| {
                if *acc >= rows {
                    return None;
                }
                *acc += h;
                Some(h)
            })
            .sum();
        while used < rows && bottom < last {
            bottom += 1;
            used += ring.get(bottom).map_or(1, |l| line_height(l, width));
        }
        self.stream_scroll.bottom = bottom;
        if bottom >= last && used <= rows {
            self.stream_scroll.follow = true;
        }
    }

    fn fit_events(&mut self, screen: &Screen) {
        let rows = screen
            .pane(Pane::Events)
            .map_or(0, |r| usize::from(r.height.saturating_sub(2)));
        self.viewports.events_rows = rows;
        if self.events_scroll.follow {
            return;
        }
        let words = App::filter_words(&self.event_filter);
        let log = match &self.frozen {
            Some(f) => &f.data.log,
            None => &self.live.log,
        };
        if log.is_empty() {
            self.events_scroll = Scroll::default();
            return;
        }
        let last = log.end_seq() - 1;
        let mut bottom = self.events_scroll.bottom.clamp(log.first_seq(), last);
        let above = (log.first_seq()..=bottom)
            .rev()
            .filter(|s| log.get(*s).is_some_and(|e| e.matches(&words)))
            .take(rows)
            .count();
        let mut missing = rows.saturating_sub(above);
        while missing > 0 && bottom < last {
            bottom += 1;
            if log.get(bottom).is_some_and(|e| e.matches(&words)) {
                missing -= 1;
            }
        }
        self.events_scroll.bottom = bottom;
        let below = (bottom + 1..=last).any(|s| log.get(s).is_some_and(|e| e.matches(&words)));
        if !below {
            self.events_scroll.follow = true;
        }
    }

    /// Recomputes which sessions pass the filter, in sort order.
    fn refresh_rows(&mut self) {
        self.rows_stale = false;
        self.rows_at_us = Some(self.now_us);
        let words = App::filter_words(&self.session_filter);
        let window = self.session_window();
        let now = self.now_us();
        let data = self.shown();
        let mut keyed: Vec<(u64, u32, SessionId)> = data
            .metrics
            .sessions()
            .filter_map(|s| {
                let id = s.info().id;
                let view = data.view(id)?;
                let passes = words.is_empty() || {
                    let state = s.state().label();
                    words
                        .iter()
                        .all(|w| view.search.contains(w.as_str()) || state.contains(w.as_str()))
                };
                passes.then(|| (sort_key(self.sort, s, view, window, now), view.ranks[0], id))
            })
            .collect();
        keyed.sort_unstable();
        if self.sort_reverse {
            keyed.reverse();
        }
        self.rows = keyed.into_iter().map(|(_, _, id)| id).collect();
    }

    /// Where the selected session is in `rows`.
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected?;
        self.rows.iter().position(|r| *r == id)
    }

    fn select(&mut self, id: SessionId) {
        if self.selected != Some(id) {
            self.stream_scroll = Scroll::default();
        }
        self.selected = Some(id);
        // Keep long stream rings for the few sessions looked at most recently.
        self.viewed.retain(|v| *v != id);
        self.viewed.push_back(id);
        if let Some(view) = self.live.view_mut(id)
            && view.stream.capacity() < VIEWED_STREAM_LINES
        {
            view.stream.set_capacity(VIEWED_STREAM_LINES);
        }
        while self.viewed.len() > MAX_VIEWED_SESSIONS {
            if let Some(old) = self.viewed.pop_front()
                && let Some(view) = self.live.view_mut(old)
            {
                view.stream.set_capacity(BACKGROUND_STREAM_LINES);
            }
        }
    }

    // ---- keys and mouse ------------------------------------------------------------------

    /// Handles a key press.
    pub fn handle_key(&mut self, event: KeyEvent) -> Option<Effect> {
        let key = Key::from_event(&event)?;
        if let Some(command) = self.confirm.take() {
            if key.code == KeyCode::Char('y') && key.modifiers.is_empty() {
                return Some(Effect::Canary(command));
            }
            self.say("cancelled: the canary is as it was".into());
            return None;
        }
        if let Some(target) = self.input {
            return self.edit_filter(target, key);
        }
        if self.replay.is_some()
            && self.help.is_none()
            && let Some(action) = self.keys.replay_action(key)
        {
            return Some(Effect::Replay(action));
        }
        let action = self.keys.action(key)?;
        self.act(action)
    }

    /// Handles pasted text (only the filter prompt takes it).
    pub fn handle_paste(&mut self, text: &str) {
        if let Some(target) = self.input {
            let clean: String = text.chars().filter(|c| !c.is_control()).collect();
            self.filter_mut(target).push_str(&clean);
            self.filter_changed(target);
        }
    }

    fn filter_mut(&mut self, target: FilterTarget) -> &mut String {
        match target {
            FilterTarget::Sessions => &mut self.session_filter,
            FilterTarget::Events => &mut self.event_filter,
        }
    }

    fn filter_changed(&mut self, target: FilterTarget) {
        match target {
            FilterTarget::Sessions => {
                self.refresh_rows();
                self.table_offset = 0;
            }
            FilterTarget::Events => self.events_scroll = Scroll::default(),
        }
    }

    fn edit_filter(&mut self, target: FilterTarget, key: Key) -> Option<Effect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Enter => self.input = None,
            KeyCode::Esc => {
                self.filter_mut(target).clear();
                self.input = None;
                self.filter_changed(target);
            }
            KeyCode::Backspace => {
                self.filter_mut(target).pop();
                self.filter_changed(target);
            }
            KeyCode::Char('u') if ctrl => {
                self.filter_mut(target).clear();
                self.filter_changed(target);
            }
            KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => {
                self.filter_mut(target).push(c);
                self.filter_changed(target);
            }
            KeyCode::Up | KeyCode::Down | KeyCode::PageUp | KeyCode::PageDown => {
                if let Some(action) = self.keys.action(key) {
                    return self.act(action);
                }
            }
            _ => {
                // Quit still works while typing (Ctrl-c).
                if ctrl && self.keys.action(key) == Some(Action::Quit) {
                    return Some(Effect::Quit);
                }
            }
        }
        None
    }

    /// Does what `action` asks.
    pub fn act(&mut self, action: Action) -> Option<Effect> {
        if let Some(offset) = self.help {
            match action {
                Action::Help | Action::Back | Action::Quit => self.help = None,
                Action::Up => self.help = Some(offset.saturating_sub(1)),
                Action::Down => self.help = Some(offset + 1),
                Action::PageUp => self.help = Some(offset.saturating_sub(10)),
                Action::PageDown => self.help = Some(offset + 10),
                Action::Top => self.help = Some(0),
                _ => {}
            }
            return None;
        }
        match action {
            Action::Up => self.scroll(self.focus, -1),
            Action::Down => self.scroll(self.focus, 1),
            Action::PageUp => self.scroll(self.focus, -self.page(self.focus)),
            Action::PageDown => self.scroll(self.focus, self.page(self.focus)),
            Action::Top => self.scroll_to_top(self.focus),
            Action::Bottom => self.scroll_to_bottom(self.focus),
            Action::NextPane => self.set_focus(self.focus.step(true, self.canary.is_some())),
            Action::PreviousPane => {
                self.set_focus(self.focus.step(false, self.canary.is_some()));
            }
            Action::Focus => {
                if self.focus == Pane::Sessions
                    && let Some(id) = self.selected
                {
                    self.select(id);
                    self.set_focus(Pane::Stream);
                }
            }
            Action::Back => self.back(),
            Action::Zoom => self.zoomed = !self.zoomed,
            Action::Filter => {
                self.input = Some(if self.focus == Pane::Events {
                    FilterTarget::Events
                } else {
                    FilterTarget::Sessions
                });
            }
            Action::SortNext | Action::SortPrevious => {
                self.sort = self.sort.step(action == Action::SortNext);
                self.refresh_rows();
                self.say(format!("sorted by {}", self.sort.label()));
            }
            Action::SortReverse => {
                self.sort_reverse = !self.sort_reverse;
                self.refresh_rows();
            }
            Action::WindowLonger | Action::WindowShorter => {
                let i = Window::ALL
                    .iter()
                    .position(|w| *w == self.window)
                    .unwrap_or(0);
                let i = if action == Action::WindowLonger {
                    (i + 1).min(Window::ALL.len() - 1)
                } else {
                    i.saturating_sub(1)
                };
                self.window = Window::ALL[i];
                self.refresh_rows();
                self.say(format!("time window: {}", window_name(self.window)));
            }
            Action::Freeze => {
                if self.frozen.take().is_some() {
                    self.refresh_rows();
                    self.say("resumed: showing live data".into());
                } else {
                    self.frozen = Some(Box::new(Frozen {
                        data: self.live.clone(),
                        now_us: self.now_us,
                        events_since: 0,
                    }));
                }
            }
            Action::Reconnect => return self.selected.map(Effect::Reconnect),
            Action::Chat => match self.selected {
                Some(id) => return Some(Effect::OpenChat(id)),
                None => {
                    self.say("select a session first: its provider is the one chatted with".into())
                }
            },
            Action::ChatNext => return Some(Effect::ShowChat),
            Action::Mark => {
                if self.recording.is_none() {
                    self.say("not recording (--no-record): no marker written".into());
                } else {
                    self.markers += 1;
                    return Some(Effect::Mark(self.markers));
                }
            }
            Action::CanaryPause | Action::CanaryPromote | Action::CanaryRollBack => {
                return self.canary_action(action);
            }
            Action::Theme => {
                self.theme = (self.theme + 1) % self.themes.len().max(1);
                let name = self.theme().name().to_string();
                self.say(format!("theme: {name}"));
            }
            Action::Help => self.help = Some(0),
            Action::Quit => return Some(Effect::Quit),
            Action::ReplayPause
            | Action::ReplayStep
            | Action::ReplaySlower
            | Action::ReplayFaster
            | Action::ReplayBack
            | Action::ReplayForward
            | Action::ReplayPreviousMarker
            | Action::ReplayNextMarker
            | Action::ReplayStart
            | Action::ReplayEnd => return self.replay.is_some().then_some(Effect::Replay(action)),
        }
        None
    }

    /// Pause or resume at once; promote and roll back after `y`.
    fn canary_action(&mut self, action: Action) -> Option<Effect> {
        let Some(view) = self.canary.as_deref() else {
            self.say("no canary in this run".into());
            return None;
        };
        if view.phase.is_final() {
            let label = view.phase.label();
            self.say(format!("the canary is {label}: nothing more to do"));
            return None;
        }
        match action {
            Action::CanaryPause => {
                let command = if matches!(view.phase, Phase::Paused { .. }) {
                    CanaryCommand::Resume
                } else {
                    CanaryCommand::Pause
                };
                return Some(Effect::Canary(command));
            }
            Action::CanaryPromote => self.confirm = Some(CanaryCommand::Promote),
            Action::CanaryRollBack => self.confirm = Some(CanaryCommand::RollBack),
            _ => {}
        }
        None
    }

    /// Notes a canary command sent to the driver.
    pub fn canary_sent(&mut self, command: CanaryCommand) {
        self.say(command.done().into());
    }

    fn back(&mut self) {
        let filter = match self.focus {
            Pane::Events => &mut self.event_filter,
            _ => &mut self.session_filter,
        };
        if !filter.is_empty() {
            filter.clear();
            let target = if self.focus == Pane::Events {
                FilterTarget::Events
            } else {
                FilterTarget::Sessions
            };
            self.filter_changed(target);
        } else if self.zoomed {
            self.zoomed = false;
        } else {
            self.focus = Pane::Sessions;
        }
    }

    fn set_focus(&mut self, pane: Pane) {
        self.focus = pane;
        if pane != Pane::Sessions {
            self.detail = pane;
        }
    }

    fn page(&self, pane: Pane) -> isize {
        let rows = match pane {
            Pane::Sessions => self.viewports.table_rows,
            Pane::Stream => self.viewports.stream_rows,
            Pane::Events => self.viewports.events_rows,
            Pane::Health | Pane::Cost | Pane::Canary => 3,
        };
        isize::try_from(rows.saturating_sub(1).max(1)).unwrap_or(1)
    }

    /// Moves the selection or scrolls `pane` by `delta` lines (negative: up).
    fn scroll(&mut self, pane: Pane, delta: isize) {
        match pane {
            Pane::Sessions => {
                if self.rows.is_empty() {
                    return;
                }
                let i = self.selected_index().unwrap_or(0);
                let last = self.rows.len() - 1;
                let to = i.saturating_add_signed(delta).min(last);
                self.select(self.rows[to]);
            }
            Pane::Stream => {
                let Some(view) = self.selected.and_then(|id| self.shown().view(id)) else {
                    return;
                };
                let (first, end) = (view.stream.first_seq(), view.stream.end_seq());
                self.stream_scroll = scroll_seq(self.stream_scroll, first, end, delta, |_| true);
            }
            Pane::Events => {
                let words = App::filter_words(&self.event_filter);
                let log = &self.shown().log;
                let (first, end) = (log.first_seq(), log.end_seq());
                self.events_scroll = scroll_seq(self.events_scroll, first, end, delta, |s| {
                    log.get(s).is_some_and(|e| e.matches(&words))
                });
            }
            Pane::Health => {
                let n = self.shown().metrics.providers().len();
                self.health_offset = self
                    .health_offset
                    .saturating_add_signed(delta)
                    .min(n.saturating_sub(1));
            }
            Pane::Cost => {
                let n = self.shown().model_costs.len();
                self.cost_offset = self
                    .cost_offset
                    .saturating_add_signed(delta)
                    .min(n.saturating_sub(1));
            }
            Pane::Canary => {}
        }
    }

    fn scroll_to_top(&mut self, pane: Pane) {
        match pane {
            Pane::Sessions => {
                if let Some(first) = self.rows.first().copied() {
                    self.select(first);
                }
            }
            Pane::Stream => {
                let first = self
                    .selected
                    .and_then(|id| self.shown().view(id))
                    .map_or(0, |v| v.stream.first_seq());
                // `prepare` moves the bottom down until the pane is full.
                self.stream_scroll = Scroll {
                    follow: false,
                    bottom: first,
                };
            }
            Pane::Events => {
                self.events_scroll = Scroll {
                    follow: false,
                    bottom: self.shown().log.first_seq(),
                };
            }
            Pane::Health => self.health_offset = 0,
            Pane::Cost => self.cost_offset = 0,
            Pane::Canary => {}
        }
    }

    fn scroll_to_bottom(&mut self, pane: Pane) {
        match pane {
            Pane::Sessions => {
                if let Some(last) = self.rows.last().copied() {
                    self.select(last);
                }
            }
            Pane::Stream => self.stream_scroll = Scroll::default(),
            Pane::Events => self.events_scroll = Scroll::default(),
            Pane::Health => {
                self.health_offset = self.shown().metrics.providers().len().saturating_sub(1);
            }
            Pane::Cost => self.cost_offset = self.shown().model_costs.len().saturating_sub(1),
            Pane::Canary => {}
        }
    }

    /// Handles a mouse event on a screen of size `area`.
    pub fn handle_mouse(&mut self, event: MouseEvent, area: Rect) -> Option<Effect> {
        let screen = render::layout(area, self);
        let at = Position::new(event.column, event.row);
        let pane = screen.pane_at(at);
        match event.kind {
            MouseEventKind::Down(MouseButton::Left) => {
                if self.help.is_some() {
                    self.help = None;
                    return None;
                }
                if let Some(tab) = screen.tab_at(at) {
                    self.set_focus(tab);
                    return None;
                }
                let pane = pane?;
                self.set_focus(pane);
                if pane == Pane::Sessions
                    && let Some(rect) = screen.pane(Pane::Sessions)
                {
                    // Two rows above the first session: the border and the header.
                    let first_row = rect.y + 2;
                    if event.row >= first_row && event.row < rect.bottom().saturating_sub(1) {
                        let index = self.table_offset + usize::from(event.row - first_row);
                        if let Some(id) = self.rows.get(index).copied() {
                            self.select(id);
                        }
                    }
                }
            }
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let up = event.kind == MouseEventKind::ScrollUp;
                if self.help.is_some() {
                    return self.act(if up { Action::Up } else { Action::Down });
                }
                let pane = pane?;
                let lines = if pane == Pane::Sessions { 1 } else { 3 };
                self.scroll(pane, if up { -lines } else { lines });
            }
            _ => {}
        }
        None
    }
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
fn scroll_seq(
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
fn sort_key(
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
