//! The dashboard's whole state (`App`): the live data and a frozen copy, the clock, keys and
//! themes; building it, reading it, and folding events into it.

use std::collections::VecDeque;

use chrono::{DateTime, FixedOffset};

use crate::keys::KeyMap;
use crate::log::Category;
use crate::replay::ReplayView;
use crate::theme::Theme;
use relaytop_core::canary::CanaryView;
use relaytop_core::cost::Pricing;
use relaytop_core::metrics::{SessionStats, Window};
use relaytop_core::session::{SessionEvent, SessionId, SessionInfo, SessionState};

use super::data::*;
use super::view::*;

/// Lines of stream text kept for a session someone has looked at recently.
pub const VIEWED_STREAM_LINES: usize = 10_000;
/// Lines kept for every other session (enough to show its recent requests when selected).
pub const BACKGROUND_STREAM_LINES: usize = 100;
/// Sessions that keep `VIEWED_STREAM_LINES` at once; the least recently viewed shrinks back.
pub const MAX_VIEWED_SESSIONS: usize = 8;
/// How often the session order is recomputed while events arrive (a key press does it now).
pub(super) const ROW_REFRESH_US: u64 = 250_000;
/// The same when sorting by a latency, which asks every session's histograms.
pub(super) const LATENCY_ROW_REFRESH_US: u64 = 1_000_000;
/// How long a notice stays in the status bar.
pub(super) const NOTICE_US: u64 = 4_000_000;

/// The dashboard's whole state.
pub struct App {
    /// Why the recording stopped, when it failed (a full disk): the run goes on unrecorded.
    pub recording_failed: Option<String>,
    /// What the run watches when relaytop found it itself (a URL, the environment), shown
    /// atop the sessions.
    pub watching: Option<String>,
    pub(super) live: Data,
    pub(super) frozen: Option<Box<Frozen>>,
    pub(super) now_us: u64,
    pub(super) started_at: DateTime<FixedOffset>,
    pub(super) keys: KeyMap,
    pub(super) themes: Vec<Theme>,
    pub(super) theme: usize,
    pub(super) cost_warning_per_hour_usd: Option<f64>,
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
    pub(super) rows_stale: bool,
    pub(super) rows_at_us: Option<u64>,
    pub(crate) table_offset: usize,
    pub(crate) stream_scroll: Scroll,
    pub(crate) events_scroll: Scroll,
    pub(crate) health_offset: usize,
    pub(crate) cost_offset: usize,
    pub(crate) viewports: Viewports,
    /// Most recently viewed sessions last; these keep long stream rings.
    pub(super) viewed: VecDeque<SessionId>,
    pub(super) notice: Option<(String, u64)>,
    /// The widest session name, provider and model, in columns.
    pub(crate) label_widths: [u16; 3],
    /// Where the run is recorded, when it is.
    pub(super) recording: Option<std::path::PathBuf>,
    /// Markers written with the `mark` key so far.
    pub(super) markers: u32,
    /// The run's canary as it was at the last frame, when the run has one.
    pub(crate) canary: Option<Box<CanaryView>>,
    /// A destructive canary command waiting for `y`.
    pub(crate) confirm: Option<CanaryCommand>,
    /// The run's alerts as they were at the last evaluation, when the run has rules.
    pub(crate) alerts: Option<Box<relaytop_core::alert::AlertsView>>,
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
            recording_failed: None,
            watching: None,
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
            alerts: None,
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
    /// Says atop the sessions what the run watches (`watching …`), when relaytop found it
    /// itself rather than in a configuration file.
    pub fn with_source(mut self, source: &str) -> App {
        self.watching = source.starts_with("watching ").then(|| source.to_owned());
        self
    }

    /// Judges requests against the config's service-level objectives (goodput).
    pub fn with_slos(mut self, slos: relaytop_core::config::slo::Slos) -> App {
        let live = std::mem::replace(&mut self.live, Data::new(&[], Default::default()));
        self.live = live.with_slos(slos);
        self
    }

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

    /// The alerts as they are now (runs with rules; every evaluation).
    pub fn set_alerts(&mut self, view: Option<relaytop_core::alert::AlertsView>) {
        self.alerts = view.map(Box::new);
    }

    /// The alerts as last set.
    pub fn alerts(&self) -> Option<&relaytop_core::alert::AlertsView> {
        self.alerts.as_deref()
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

    /// The recording stopped (a full disk): said once in the status bar for good, and as a
    /// notice; the sessions and the summary go on.
    pub fn recording_stopped(&mut self, why: String) {
        if self.recording_failed.is_some() {
            return;
        }
        self.say(format!(
            "recording stopped: {why}; the run goes on unrecorded (the partial recording is kept)"
        ));
        self.recording_failed = Some(why);
    }

    /// Shows a notice about a chat pane (one that could not be opened).
    pub fn chat_notice(&mut self, text: String) {
        self.say(text);
    }

    /// Shows `text` in the status bar for a few seconds.
    pub fn notify(&mut self, text: String) {
        self.say(text);
    }

    pub(super) fn say(&mut self, text: String) {
        self.notice = Some((text, self.now_us + NOTICE_US));
    }
}
