//! The live dashboard: its settings (`UiOptions` from the command line over the
//! configuration's `[ui]`: `Settings`) and `run`, which starts a `Run` of the world, folds its
//! events into the `App` on the terminal loop (`terminal_loop`), carries out the app's effects
//! (reconnect, canary commands, markers, chat panes), evaluates the alert rules once a second
//! and ends the run.

use std::time::Duration;

use crossterm::event::{KeyEvent, MouseEvent};
use ratatui::Frame;
use ratatui::layout::Rect;
use tokio::time::Instant;

use relaytop_core::config::UiConfig;
use relaytop_core::record::MarkerTarget;
use relaytop_core::run::{Ending, Run, RunSetup};
use relaytop_core::session::event::micros;
use relaytop_core::session::{EventReceiver, SessionCommand, SessionEvent};
use relaytop_core::world::World;

use crate::app::{self, App, CanaryCommand, Effect, SelfUsage, SessionSetup};
use crate::chat::run::{After, ChatHost};
use crate::keys::KeyMap;
use crate::render;
use crate::terminal_loop::{self, Flow, Screen, wheel_lines};
use crate::theme::{self, Theme};

/// Frames a second when neither the command line nor the configuration says.
pub const DEFAULT_FPS: u32 = 30;
/// Session events folded before the screen gets a chance to redraw.
const EVENT_BATCH: usize = 4_096;

/// Dashboard settings from the command line; each overrides the configuration's `[ui]`.
#[derive(Clone, Debug, Default)]
pub struct UiOptions {
    /// `--fps`: the most frames a second.
    pub fps: Option<u32>,
    /// `--theme`: a built-in theme's name or a theme file.
    pub theme: Option<String>,
    /// `--no-mouse` gives `Some(false)`.
    pub mouse: Option<bool>,
}

/// Everything the dashboard needs that can be wrong, checked before the terminal is touched.
pub struct Settings {
    pub fps: u32,
    pub mouse: bool,
    pub keys: KeyMap,
    pub themes: Vec<Theme>,
    pub theme: usize,
    pub cost_warning_per_hour_usd: Option<f64>,
}

impl Settings {
    /// Command line over configuration over defaults. `NO_COLOR` picks the colourless theme
    /// unless a theme was asked for by name (as no-color.org asks).
    pub fn resolve(
        options: &UiOptions,
        config: &UiConfig,
        source: &str,
    ) -> anyhow::Result<Settings> {
        let fps = options.fps.or(config.fps).unwrap_or(DEFAULT_FPS);
        if !(1..=120).contains(&fps) {
            anyhow::bail!("fps must be 1 to 120, not {fps}");
        }
        let keys = KeyMap::new(&config.keys).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        let chosen = match options.theme.as_deref().or(config.theme.as_deref()) {
            Some(name) => Theme::load(name)?,
            None if theme::no_color_requested() => Theme::no_color(),
            None => Theme::dark(),
        };
        let (themes, theme) = theme::theme_cycle(chosen);
        Ok(Settings {
            fps,
            mouse: options.mouse.or(config.mouse).unwrap_or(true),
            keys,
            themes,
            theme,
            cost_warning_per_hour_usd: config.cost_warning_per_hour_usd,
        })
    }
}

/// Runs the dashboard over `world` until the person quits (or SIGTERM, SIGINT, SIGHUP), then
/// restores the terminal and stops the sessions and simulators. The run (`Run`: recording,
/// sessions, canary) is the one headless runs: every event is shown to the world's observers
/// and to a canary, if the configuration has one.
pub async fn run(world: World, options: UiOptions) -> anyhow::Result<()> {
    let settings = Settings::resolve(&options, &world.config.ui, &world.config.source)?;
    let (run, mut events) = Run::start(&world, RunSetup::default())?;
    let setups: Vec<SessionSetup> = run
        .supervisor()
        .infos()
        .iter()
        .zip(run.timings())
        .map(|(info, timing)| SessionSetup {
            info: info.clone(),
            heartbeat_every: timing.heartbeat,
        })
        .collect();
    let started_local = run
        .started_at()
        .with_timezone(&chrono::Local)
        .fixed_offset();
    let app = App::new(&setups, world.config.pricing().into(), started_local)
        .with_keys(settings.keys.clone())
        .with_themes(settings.themes.clone(), settings.theme)
        .with_cost_warning(settings.cost_warning_per_hour_usd)
        .with_source(&world.config.source)
        .with_slos(world.config.slo.clone())
        .with_recording(run.recorder().map(|r| r.dir().to_owned()));
    let mut app = match run.canary() {
        Some(canary) => app.with_canary(canary.view()),
        None => app,
    };

    let mut screen = Dashboard {
        run: &run,
        app: &mut app,
        events: &mut events,
        batch: Vec::with_capacity(EVENT_BATCH),
        chats: ChatHost::new(),
        meter: SelfMeter::new(),
        next_measure: Instant::now(),
        now_us: 0,
        tick: 1_000_000,
        drawn_tick: u64::MAX,
        moving: true,
        panic_at: test_panic_at(),
    };
    let result = terminal_loop::run(&mut screen, settings.mouse, settings.fps).await;
    // Chat panes opened with `c`: their sessions close with the dashboard.
    let Dashboard { chats, .. } = screen;
    chats.shutdown(Duration::from_secs(2)).await;
    let reason = match &result {
        Ok(ended) => ended.reason("quit from the dashboard"),
        Err(e) => format!("the dashboard failed: {e}"),
    };
    let ending = Ending {
        reason,
        duration: run.clock().now(),
    };
    run.finish(events, ending, |_| {}).await?;
    // The terminal is restored by now: this stays on the screen.
    match (world.recording_dir(), world.recording_failure()) {
        (Some(dir), Some(failure)) => eprintln!(
            "relaytop: warning: the recording failed ({failure}); the partial recording is in {} \
             (it replays up to the failure)",
            dir.display()
        ),
        (Some(dir), None) => eprintln!("relaytop: recorded to {}", dir.display()),
        _ => {}
    }
    world.stop().await;
    result.map(|_| ())
}

/// A test hook, in debug builds only: `RELAYTOP_TEST_PANIC_AFTER_MS=N` makes the dashboard's
/// loop panic N ms after it starts, so that tests/crash_safety.rs can check that the panic
/// hook gives the terminal back (and prints no key). Release builds never read it.
fn test_panic_at() -> Option<Instant> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let ms: u64 = std::env::var("RELAYTOP_TEST_PANIC_AFTER_MS")
        .ok()?
        .parse()
        .ok()?;
    Some(Instant::now() + Duration::from_millis(ms))
}

/// Reads relaytop's own CPU and memory use.
struct SelfMeter {
    system: sysinfo::System,
    pid: Option<sysinfo::Pid>,
}

impl SelfMeter {
    fn new() -> SelfMeter {
        SelfMeter {
            system: sysinfo::System::new(),
            pid: sysinfo::get_current_pid().ok(),
        }
    }

    fn measure(&mut self) -> Option<SelfUsage> {
        let pid = self.pid?;
        self.system.refresh_processes_specifics(
            sysinfo::ProcessesToUpdate::Some(&[pid]),
            false,
            sysinfo::ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory(),
        );
        let process = self.system.process(pid)?;
        Some(SelfUsage {
            cpu_percent: process.cpu_usage(),
            memory_bytes: process.memory(),
        })
    }
}

/// The live dashboard on the terminal loop: the `App`, the run it shows, the chat panes over it.
struct Dashboard<'a, 'w> {
    run: &'a Run<'w>,
    app: &'a mut App,
    events: &'a mut EventReceiver,
    batch: Vec<SessionEvent>,
    /// Chat panes opened with `c`: shown over the dashboard, each with its own session.
    chats: ChatHost,
    meter: SelfMeter,
    next_measure: Instant,
    /// The run's clock at this time round.
    now_us: u64,
    /// The clock on screen moves once a second; countdowns every tenth (as of the last frame).
    tick: u64,
    drawn_tick: u64,
    /// Events of the selected session (its stream is on screen) or of a chat pane came
    /// since the loop last asked: the next frame comes at the full rate, not the figures'.
    moving: bool,
    panic_at: Option<Instant>,
}

impl Screen for Dashboard<'_, '_> {
    fn prepare(&mut self, now: Instant) -> bool {
        if self.panic_at.is_some_and(|at| now >= at) {
            panic!("RELAYTOP_TEST_PANIC_AFTER_MS: the test hook's panic in the dashboard's loop");
        }
        let mut changed = false;
        if now >= self.next_measure {
            self.app.set_self_usage(self.meter.measure());
            if self.app.recording_failed.is_none()
                && let Some(why) = self.run.recorder().and_then(|r| r.failure())
            {
                self.app.recording_stopped(why);
            }
            // The alert rules, once a second, over the live figures.
            if self.run.alerting().is_some() {
                self.run.evaluate_alerts(&self.app.live().metrics);
                self.app
                    .set_alerts(self.run.alerts(&self.app.live().metrics));
            }
            self.next_measure = now + Duration::from_secs(1);
            changed = true;
        }
        self.now_us = micros(self.run.clock().now());
        changed || self.now_us / self.tick != self.drawn_tick
    }

    fn wake(&mut self, _now: Instant, _next_frame: Instant) -> Instant {
        let next_tick = self.run.clock().instant_at(Duration::from_micros(
            (self.now_us / self.tick + 1) * self.tick,
        ));
        let wake = next_tick.min(self.next_measure);
        self.panic_at.map_or(wake, |at| wake.min(at))
    }

    fn draw(&mut self, frame: &mut Frame) {
        self.app.set_now(self.now_us);
        if let Some(canary) = self.run.canary() {
            self.app.set_canary(canary.view());
        }
        self.app.prepare(frame.area());
        render::draw(frame, self.app);
        if let Some(pane) = self.chats.shown() {
            let area = frame.area();
            render::chat::prepare(pane, area, self.app.theme());
            render::chat::render(frame, area, pane, self.app.theme());
        }
        // Whether a countdown is on screen is known once a frame (a session starts or stops
        // backing off only with an event, and every event is followed by a frame): looking
        // through every session each time round the loop was 12 % of this thread with 1,000.
        self.tick = if self.app.any_backing_off() {
            100_000
        } else {
            1_000_000
        };
        self.drawn_tick = self.now_us / self.tick;
    }

    fn key(&mut self, key: KeyEvent) -> Flow {
        if let Some(pane) = self.chats.shown() {
            if let Some(effect) = pane.handle_key(key)
                && self.chats.perform(effect) == After::Quit
            {
                return Flow::Quit;
            }
            return Flow::Stay;
        }
        let run = self.run;
        let app = &mut *self.app;
        app.set_now(micros(run.clock().now()));
        match app.handle_key(key) {
            Some(Effect::Quit) => return Flow::Quit,
            Some(Effect::Reconnect(id)) => {
                let accepted = run.supervisor().command(id, SessionCommand::ReconnectNow);
                app.reconnect_sent(id, accepted);
            }
            Some(Effect::Canary(command)) => {
                if let Some(canary) = run.canary() {
                    match command {
                        CanaryCommand::Pause => canary.pause(),
                        CanaryCommand::Resume => canary.resume(),
                        CanaryCommand::Promote => canary.promote(),
                        CanaryCommand::RollBack => canary.roll_back(),
                    }
                    app.set_canary(canary.view());
                    app.canary_sent(command);
                }
            }
            Some(Effect::Mark(n)) => {
                if let Some(recorder) = run.recorder() {
                    let label = app::marker_label(n);
                    recorder.marker(MarkerTarget::All, &label);
                    app.marked(&label);
                }
            }
            Some(Effect::OpenChat(id)) => {
                let supervisor = run.supervisor();
                // The chat speaks as the selected session does: its provider, format, URL
                // and model (a station's Claude session chats in Anthropic's format).
                let like = supervisor.infos().get(id as usize).cloned();
                if let Err(message) = self.chats.open(
                    run.world(),
                    like.as_ref(),
                    run.clock(),
                    supervisor.event_sender(),
                ) {
                    app.chat_notice(format!("cannot open a chat: {message}"));
                }
            }
            Some(Effect::ShowChat) if !self.chats.show_next() => {
                app.chat_notice("no chat pane is open: c opens one".into());
            }
            // Live: no replay to drive (the app never asks).
            Some(Effect::ShowChat) | Some(Effect::Replay(_)) | None => {}
        }
        Flow::Stay
    }

    fn mouse(&mut self, mouse: MouseEvent, area: Rect) -> Flow {
        if let Some(pane) = self.chats.shown() {
            return match wheel_lines(&mouse) {
                Some(lines) => {
                    pane.scroll_by(lines);
                    Flow::Stay
                }
                None => Flow::Ignored,
            };
        }
        match self.app.handle_mouse(mouse, area) {
            Some(Effect::Quit) => Flow::Quit,
            _ => Flow::Stay,
        }
    }

    fn paste(&mut self, text: &str) {
        match self.chats.shown() {
            Some(pane) => pane.handle_paste(text),
            None => self.app.handle_paste(text),
        }
    }

    async fn receive(&mut self) -> bool {
        let received = self.events.recv_many(&mut self.batch, EVENT_BATCH).await;
        let selected = self.app.selected;
        for event in self.batch.drain(..) {
            if ChatHost::owns(&event) {
                self.chats.apply(&event);
                self.moving = true;
                continue;
            }
            // The selected session's stream is on screen: its text moves at the full rate.
            self.moving |= Some(event.session) == selected;
            self.app.apply(&event);
            self.run.observe(&event);
        }
        received > 0
    }

    fn moved(&mut self) -> bool {
        std::mem::take(&mut self.moving)
    }
}
