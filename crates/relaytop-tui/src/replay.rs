//! The dashboard's replay screen: a recording (`record::Replay`) as the source of the same
//! `SessionEvent`s the live dashboard folds, on the recorded clock, with the replay keys
//! (pause, step, speed, seek, markers, start and end) and the timeline bar's state.
//!
//! `ReplayDriver` is the controller and pure apart from reading files: every method takes
//! `now` (the caller's monotonic time). Events reach the `App` through `App::apply`, as live
//! ones do. The replay folds the dashboard's whole `Data` (metrics, stream text, event log,
//! spend by model) along, in its checkpoints too, so a seek hands the `App` exactly the state
//! that playing to that point would have built (`App::replace_live`). `run` puts it on the
//! terminal loop (`terminal_loop`).

use std::time::Duration;

use crossterm::event::{KeyEvent, MouseEvent};
use ratatui::Frame;
use ratatui::layout::Rect;
use tokio::time::Instant;

use crate::app::{App, Data, Effect, SessionSetup};
use crate::keys::Action;
use crate::terminal_loop::{self, Flow, Screen};
use crate::{Settings, UiOptions, render};
use relaytop_core::metrics::Metrics;
use relaytop_core::record::{FoldState, Replay, Speed};
use relaytop_core::session::event::micros;
use relaytop_core::session::{SessionEvent, SessionInfo};

/// Seconds a left or right arrow moves.
pub const SEEK_STEP_US: i64 = 10_000_000;
/// Events folded before the screen gets a chance to redraw (as fast as possible).
const EVENT_BATCH: usize = 4_096;
/// Markers the timeline keeps (ticks; more than a screen is wide would not show anyway).
const TIMELINE_MARKERS: usize = 4_096;

/// How a recording is replayed on the dashboard (`relaytop replay`).
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// `--speed` (default 1x).
    pub speed: Speed,
    /// `--idle-limit`: silences longer than this play as this long.
    pub idle_limit: Option<Duration>,
    /// `--start-at`: start this far into the recording.
    pub start_at: Option<Duration>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            speed: Speed::Times(1.0),
            idle_limit: None,
            start_at: None,
        }
    }
}

/// What the timeline bar shows: where the replay is, how it plays, and what the recording
/// could not give.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayView {
    /// Microseconds on the recording's timeline.
    pub position_us: u64,
    pub end_us: u64,
    pub speed: Speed,
    pub paused: bool,
    /// Every event has been played.
    pub at_end: bool,
    pub idle_limit: Option<Duration>,
    /// Marker times (the first `TIMELINE_MARKERS`), microseconds.
    pub markers: Vec<u64>,
    /// Markers in the whole recording (known so far).
    pub marker_count: usize,
    /// Whether the whole recording has been read (every marker is known).
    pub indexed: bool,
    /// Where damaged files stopped: `session.jsonl line 812 (byte 90112)`.
    pub torn: Vec<String>,
    /// Malformed lines skipped so far.
    pub malformed: u64,
    /// Files that could not be read on.
    pub read_errors: usize,
}

impl FoldState for Data {
    fn apply(&mut self, event: &SessionEvent) {
        Data::apply(self, event);
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn heap_bytes(&self) -> usize {
        let metrics = FoldState::heap_bytes(&self.metrics);
        let lines: usize = self.sessions.iter().map(|v| v.stream.len()).sum();
        // A line or an entry with its text: ~150 bytes on average (chunks are short).
        metrics + (lines + self.log.len()) * 150 + self.model_costs.len() * 128
    }

    fn clone_box(&self) -> Box<dyn FoldState> {
        Box::new(self.clone())
    }

    fn packed(&self) -> Box<dyn FoldState> {
        Box::new(Data {
            metrics: self.metrics.packed(),
            sessions: self.sessions.clone(),
            log: self.log.clone(),
            model_costs: self.model_costs.clone(),
            accounts: self.accounts.clone(),
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The dashboard's sessions of a recording: ids, names, heartbeat intervals from the headers.
pub fn setups(replay: &Replay) -> Vec<SessionSetup> {
    let heartbeats = replay.heartbeats();
    replay
        .sessions()
        .iter()
        .enumerate()
        .map(|(i, info): (usize, &SessionInfo)| SessionSetup {
            info: info.clone(),
            heartbeat_every: heartbeats.get(i).copied().flatten(),
        })
        .collect()
}

/// Drives the `App` from a `Replay`.
pub struct ReplayDriver {
    replay: Replay,
    setups: Vec<SessionSetup>,
    /// The last `now` seen (for `view`).
    now: Duration,
}

impl std::fmt::Debug for ReplayDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayDriver")
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl ReplayDriver {
    /// Takes `replay` before anything of it was played (the dashboard's data is folded along
    /// from the start).
    pub fn new(mut replay: Replay) -> anyhow::Result<ReplayDriver> {
        let setups = setups(&replay);
        // Good requests are judged by the run's own objectives, as the run judged them.
        let data = Data::new(&setups, replay.pricing().clone()).with_slos(replay.slos().clone());
        if !replay.fold_into(Box::new(data)) {
            anyhow::bail!("the replay was already played or indexed");
        }
        Ok(ReplayDriver {
            replay,
            setups,
            now: Duration::ZERO,
        })
    }

    /// The dashboard for this recording, at its start (keys, themes: `with_*` as live).
    pub fn app(&self) -> App {
        let started = self
            .replay
            .started_at()
            .with_timezone(&chrono::Local)
            .fixed_offset();
        self.app_at(started)
    }

    /// The same, with the wall clock in a given offset (tests: a fixed zone).
    pub fn app_at(&self, started: chrono::DateTime<chrono::FixedOffset>) -> App {
        let mut app = App::new(&self.setups, self.replay.pricing().clone(), started);
        app.set_replay(self.blank_view());
        app
    }

    pub fn replay(&self) -> &Replay {
        &self.replay
    }

    pub fn replay_mut(&mut self) -> &mut Replay {
        &mut self.replay
    }

    /// Applies the options at `now`: speed, idle limit, start position.
    pub fn configure(&mut self, app: &mut App, options: &ReplayOptions, now: Duration) {
        self.replay.set_idle_limit(options.idle_limit);
        self.replay.set_speed(now, options.speed);
        match options.start_at {
            Some(start) => self.seek_to(app, now, micros(start)),
            None => self.sync(app, now),
        }
    }

    /// Plays what is due at `now` into `app`, at most `max` events; how many.
    pub fn play(&mut self, app: &mut App, now: Duration, max: usize) -> usize {
        self.now = now;
        let mut played = 0;
        while played < max {
            let Some(event) = self.replay.poll(now) else {
                break;
            };
            app.apply(&event);
            played += 1;
        }
        played
    }

    /// When something is next due (`None`: paused or at the end).
    pub fn next_wake(&mut self, now: Duration) -> Option<Duration> {
        self.replay.next_wake(now)
    }

    /// Brings the app's clock and timeline up to `now`.
    pub fn sync(&mut self, app: &mut App, now: Duration) {
        self.now = now;
        let view = self.view(now);
        app.set_now(view.position_us);
        app.set_replay(view);
    }

    /// Does what a replay key asks, at `now`.
    pub fn control(&mut self, app: &mut App, action: Action, now: Duration) {
        let r = &mut self.replay;
        match action {
            Action::ReplayPause => {
                r.toggle_pause(now);
                self.sync(app, now);
                let what = if self.replay.is_paused() {
                    "paused"
                } else {
                    "playing"
                };
                app.notify(what.into());
            }
            Action::ReplayStep => {
                r.pause(now);
                match r.step(now) {
                    Some(event) => {
                        app.apply(&event);
                        self.sync(app, now);
                        app.notify(self.stepped(app, &event));
                    }
                    None => {
                        self.sync(app, now);
                        app.notify("the end of the recording: nothing more to step".into());
                    }
                }
            }
            Action::ReplaySlower | Action::ReplayFaster => {
                if action == Action::ReplayFaster {
                    r.faster(now);
                } else {
                    r.slower(now);
                }
                let label = speed_label(r.speed());
                self.sync(app, now);
                app.notify(format!("speed {label}"));
            }
            Action::ReplayBack | Action::ReplayForward => {
                let delta = if action == Action::ReplayBack {
                    -SEEK_STEP_US
                } else {
                    SEEK_STEP_US
                };
                // From the position shown (past the end the clock stops at the end).
                let from = self.view(now).position_us;
                let end = self.replay.end_us();
                let target = from.saturating_add_signed(delta).min(end.saturating_add(1));
                self.seek_to(app, now, target);
            }
            Action::ReplayPreviousMarker | Action::ReplayNextMarker => {
                let marker = if action == Action::ReplayNextMarker {
                    r.next_marker(now)
                } else {
                    r.previous_marker(now)
                };
                if marker.is_some() {
                    self.land(app);
                }
                self.sync(app, now);
                match marker {
                    Some(m) => {
                        let session = self
                            .setups
                            .get(m.session as usize)
                            .map_or("all", |s| s.info.name.as_str());
                        app.notify(format!("marker: {} ({session})", m.label));
                    }
                    None if action == Action::ReplayNextMarker => {
                        app.notify("no marker after this point".into());
                    }
                    None => app.notify("no marker before this point".into()),
                }
            }
            Action::ReplayStart => {
                r.seek_to_start(now);
                self.land(app);
                self.sync(app, now);
                app.notify("the start of the recording".into());
            }
            Action::ReplayEnd => {
                r.seek_to_end(now);
                self.land(app);
                self.sync(app, now);
                app.notify("the end of the recording".into());
            }
            _ => {}
        }
    }

    /// Goes to `target_us` on the recording's timeline (what `--start-at` and the seek keys
    /// do): the app shows the state there.
    pub fn seek_to(&mut self, app: &mut App, now: Duration, target_us: u64) {
        self.replay.seek_to(now, target_us);
        self.land(app);
        self.sync(app, now);
    }

    /// What a step played: `stepped to 12:41:38.123 probe-3: chunk`.
    fn stepped(&self, app: &App, event: &SessionEvent) -> String {
        let session = self
            .setups
            .get(event.session as usize)
            .map_or("?", |s| s.info.name.as_str());
        let what = crate::log::describe(&event.kind).map_or_else(
            || event_name(&event.kind),
            |(category, text)| format!("{} {text}", category.label()),
        );
        format!(
            "stepped to {} {session}: {what}",
            crate::format::clock_ms(app.started_at(), event.at_us)
        )
    }

    /// After a seek: the app takes the replay's state at the new position.
    fn land(&mut self, app: &mut App) {
        if let Some(data) = self.replay.state().as_any().downcast_ref::<Data>() {
            app.replace_live(data.clone());
        }
    }

    fn blank_view(&self) -> ReplayView {
        ReplayView {
            position_us: 0,
            end_us: self.replay.end_us(),
            speed: self.replay.speed(),
            paused: self.replay.is_paused(),
            at_end: false,
            idle_limit: self.replay.idle_limit(),
            markers: Vec::new(),
            marker_count: 0,
            indexed: false,
            torn: Vec::new(),
            malformed: 0,
            read_errors: 0,
        }
    }

    /// The timeline's state at `now`.
    pub fn view(&mut self, now: Duration) -> ReplayView {
        let r = &mut self.replay;
        let at_end = r.at_end();
        // Past the last event the clock would run on: the end is the end.
        let position_us = match r.position_us(now) {
            p if at_end => p.min(r.end_us()),
            p => p,
        };
        let markers = r.markers();
        let progress = r.indexing();
        // The index has read everything once it is done; before, the play head knows more
        // about what it has passed.
        let stats = match &progress.stats {
            Some(s) => s.clone(),
            None => r.read_stats().clone(),
        };
        let torn = stats
            .torn
            .iter()
            .map(|t| {
                let file = t.file.file_name().map_or_else(
                    || t.file.display().to_string(),
                    |n| n.to_string_lossy().into(),
                );
                format!("{file} line {} (byte {})", t.line, t.offset)
            })
            .collect();
        ReplayView {
            position_us,
            end_us: r.end_us().max(position_us),
            speed: r.speed(),
            paused: r.is_paused(),
            at_end,
            idle_limit: r.idle_limit(),
            marker_count: markers.len(),
            markers: markers
                .iter()
                .take(TIMELINE_MARKERS)
                .map(|m| m.at_us)
                .collect(),
            indexed: progress.done,
            torn,
            malformed: stats.malformed,
            read_errors: stats.read_errors.len(),
        }
    }
}

/// An event's kind as its serialized name says it: `chunk`, `pong`.
fn event_name(kind: &relaytop_core::session::EventKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "event".into())
}

/// "1x", "0.25x", "max".
pub fn speed_label(speed: Speed) -> String {
    speed.label()
}

/// Runs the replay screen until the person quits (or SIGTERM, SIGINT, SIGHUP), then
/// restores the terminal. Returns the warnings about the recording to print afterwards.
pub async fn run(
    replay: Replay,
    ui: &UiOptions,
    config: &relaytop_core::config::UiConfig,
    options: &ReplayOptions,
) -> anyhow::Result<Vec<String>> {
    let settings = Settings::resolve(ui, config, "[ui]")?;
    let mut driver = ReplayDriver::new(replay)?;
    driver.replay_mut().start_indexing();
    let mut app = driver
        .app()
        .with_keys(settings.keys.clone())
        .with_themes(settings.themes.clone(), settings.theme)
        .with_cost_warning(settings.cost_warning_per_hour_usd);
    let clock = Instant::now();
    driver.configure(&mut app, options, clock.elapsed());
    let mut screen = ReplayScreen {
        app: &mut app,
        driver: &mut driver,
        clock,
        played: 0,
        view: None,
        drawn_view: None,
    };
    let result = terminal_loop::run(&mut screen, settings.mouse, settings.fps).await;
    result?;
    let stats = driver
        .replay()
        .indexing()
        .stats
        .unwrap_or_else(|| driver.replay().read_stats().clone());
    Ok(stats.warnings())
}

/// The replay screen on the terminal loop: the `App` and the driver playing into it.
struct ReplayScreen<'a> {
    app: &'a mut App,
    driver: &'a mut ReplayDriver,
    /// The replay's own clock (`now` of the driver is time since this).
    clock: Instant,
    /// Events played this time round.
    played: usize,
    /// The timeline this time round, and the one on screen.
    view: Option<ReplayView>,
    drawn_view: Option<ReplayView>,
}

impl Screen for ReplayScreen<'_> {
    fn prepare(&mut self, _now: Instant) -> bool {
        let now = self.clock.elapsed();
        self.played = self.driver.play(self.app, now, EVENT_BATCH);
        self.driver.sync(self.app, now);
        self.view = self.app.replay().cloned();
        self.played > 0 || self.view != self.drawn_view
    }

    fn wake(&mut self, now: Instant, next_frame: Instant) -> Instant {
        // Playing, the position moves: a frame every interval; paused or at the end, the
        // screen waits for a key (and a second's tick for indexing progress).
        let playing = self
            .drawn_view
            .as_ref()
            .is_some_and(|v| !v.paused && !v.at_end);
        let next_event = self
            .driver
            .next_wake(self.clock.elapsed())
            .map(|at| self.clock + at);
        if self.played >= EVENT_BATCH {
            now
        } else if playing {
            next_event.map_or(next_frame, |e| e.min(next_frame))
        } else {
            now + Duration::from_secs(1)
        }
    }

    fn draw(&mut self, frame: &mut Frame) {
        self.app.prepare(frame.area());
        render::draw(frame, self.app);
        self.drawn_view = self.view.clone();
    }

    fn key(&mut self, key: KeyEvent) -> Flow {
        match self.app.handle_key(key) {
            Some(Effect::Quit) => return Flow::Quit,
            Some(Effect::Replay(action)) => {
                self.driver.control(self.app, action, self.clock.elapsed());
            }
            Some(Effect::Reconnect(_) | Effect::Canary(_) | Effect::Mark(_)) => {
                self.app
                    .notify("a replay only shows: nothing is sent".into());
            }
            Some(Effect::OpenChat(_) | Effect::ShowChat) => {
                self.app.notify(
                    "a replay only shows: chat with `relaytop chat` or the live dashboard".into(),
                );
            }
            None => {}
        }
        Flow::Stay
    }

    fn mouse(&mut self, mouse: MouseEvent, area: Rect) -> Flow {
        match self.app.handle_mouse(mouse, area) {
            Some(Effect::Quit) => Flow::Quit,
            _ => Flow::Stay,
        }
    }

    fn paste(&mut self, text: &str) {
        self.app.handle_paste(text);
    }
}
