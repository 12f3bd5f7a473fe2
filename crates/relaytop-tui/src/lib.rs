//! The terminal dashboard: live panes for every session of a world (sessions, stream,
//! health, cost, event log, and the canary when the run has one), driven by one loop.
//!
//! The loop (`run`) `select!`s over terminal events, session events, a frame deadline and
//! SIGTERM/SIGINT/SIGHUP. Session events are folded into the `App` as they come; the screen
//! is redrawn at most `fps` times a second and only when something changed (a key press
//! redraws at once; with nothing happening, once a second for the clock). Drawing reads the
//! `App` and never awaits. The engine knows nothing of this module.

pub mod app;
pub mod asciicast;
pub mod chat;
pub mod format;
pub mod keys;
pub mod log;
pub mod render;
pub mod replay;
pub mod stream;
pub mod terminal;
pub mod theme;

use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::StreamExt;
use ratatui::layout::Rect;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use relaytop_core::canary::CanaryDriver;
use relaytop_core::config::UiConfig;
use relaytop_core::record::{MarkerTarget, Recorder};
use relaytop_core::session::event::micros;
use relaytop_core::session::{RunClock, SessionCommand, SessionEvent};
use relaytop_core::supervisor::Supervisor;
use relaytop_core::world::World;

use app::{App, CanaryCommand, Effect, SelfUsage, SessionSetup};
use keys::KeyMap;
use theme::Theme;

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
/// restores the terminal and stops the sessions and simulators. Shaped like `headless::run`:
/// the run is recorded when the world says so, every event is shown to the world's observers
/// and to a canary, if the configuration has one.
pub async fn run(world: World, options: UiOptions) -> anyhow::Result<()> {
    let settings = Settings::resolve(&options, &world.config.ui, &world.config.source)?;
    let started_at = chrono::Utc::now();
    let clock = RunClock::new();
    let recorder = world.start_recording(started_at, clock)?;
    let (mut supervisor, mut events) = Supervisor::new(clock);
    let specs = world.session_specs(recorder.as_ref())?;
    for spec in &specs {
        supervisor.start(spec.clone());
    }
    let setups: Vec<SessionSetup> = supervisor
        .infos()
        .iter()
        .zip(&specs)
        .map(|(info, spec)| SessionSetup {
            info: info.clone(),
            heartbeat_every: spec.timing.heartbeat,
        })
        .collect();
    let canary = world
        .config
        .canary
        .clone()
        .map(|plan| CanaryDriver::start(plan, &supervisor, &world.config.providers));
    let observe = |event: &SessionEvent| {
        world.observe(event);
        if let Some(canary) = &canary {
            canary.observe(event);
        }
    };
    let started_local = started_at.with_timezone(&chrono::Local).fixed_offset();
    let app = App::new(&setups, world.config.pricing().into(), started_local)
        .with_keys(settings.keys.clone())
        .with_themes(settings.themes.clone(), settings.theme)
        .with_cost_warning(settings.cost_warning_per_hour_usd)
        .with_recording(recorder.as_ref().map(|r| r.dir().to_owned()));
    let mut app = match &canary {
        Some(canary) => app.with_canary(canary.view()),
        None => app,
    };

    let result = match terminal::TerminalGuard::enter(settings.mouse) {
        Ok(mut guard) => {
            let result = event_loop(
                &mut guard.terminal,
                &mut app,
                &mut events,
                &Run {
                    world: &world,
                    supervisor: &supervisor,
                    observe: &observe,
                    recorder: recorder.as_ref(),
                    canary: canary.as_ref(),
                    clock,
                    fps: settings.fps,
                },
            )
            .await;
            drop(guard);
            result
        }
        Err(e) => Err(anyhow::anyhow!("cannot set up the terminal: {e}")),
    };
    for message in terminal::take_held_panics() {
        eprintln!("relaytop: a background task panicked: {message}");
    }
    let duration = clock.now();
    if let Some(canary) = &canary {
        canary.shutdown(Duration::from_secs(10)).await;
    }
    supervisor
        .shutdown(Duration::from_secs(2), &mut events, &observe)
        .await;
    if let Some(recorder) = recorder {
        // Joins the recorder's writer thread: off the async workers.
        let reason = match &result {
            Ok(()) => "quit from the dashboard".to_owned(),
            Err(e) => format!("the dashboard failed: {e}"),
        };
        tokio::task::spawn_blocking(move || recorder.finish(&reason, duration))
            .await
            .map_err(|e| anyhow::anyhow!("the recorder stopped: {e}"))?
            .map_err(|e| anyhow::anyhow!("cannot finish the recording: {e}"))?;
    }
    // The terminal is restored by now: this stays on the screen.
    if let Some(dir) = world.recording_dir() {
        eprintln!("relaytop: recorded to {}", dir.display());
    }
    world.stop().await;
    result
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

/// What the loop drives besides the screen: the sessions, the observers of their events, the
/// recorder and the canary, and the run's clock.
struct Run<'a> {
    world: &'a World,
    supervisor: &'a Supervisor,
    observe: &'a dyn Fn(&SessionEvent),
    recorder: Option<&'a Recorder>,
    canary: Option<&'a CanaryDriver>,
    clock: RunClock,
    fps: u32,
}

async fn event_loop(
    terminal: &mut terminal::Term,
    app: &mut App,
    events: &mut relaytop_core::session::EventReceiver,
    run: &Run<'_>,
) -> anyhow::Result<()> {
    let Run {
        world,
        supervisor,
        observe,
        recorder,
        canary,
        clock,
        fps,
    } = *run;
    let frame_interval = Duration::from_secs_f64(1.0 / f64::from(fps));
    let mut terminal_events = EventStream::new();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut meter = SelfMeter::new();
    let mut next_measure = Instant::now();
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    let mut sessions_open = true;

    let mut dirty = true;
    let mut draw_now = true;
    let mut last_draw = Instant::now();
    let mut drawn_tick = u64::MAX;
    let panic_at = test_panic_at();
    // Chat panes opened with `c`: shown over the dashboard, each with its own session.
    let mut chats = chat::run::ChatHost::new();

    loop {
        let now = Instant::now();
        if panic_at.is_some_and(|at| now >= at) {
            panic!("RELAYTOP_TEST_PANIC_AFTER_MS: the test hook's panic in the dashboard's loop");
        }
        if now >= next_measure {
            app.set_self_usage(meter.measure());
            next_measure = now + Duration::from_secs(1);
            dirty = true;
        }
        let now_us = micros(clock.now());
        // The clock on screen moves once a second; countdowns every tenth.
        let tick = if app.any_backing_off() {
            100_000
        } else {
            1_000_000
        };
        if now_us / tick != drawn_tick {
            dirty = true;
        }
        if draw_now || (dirty && now >= last_draw + frame_interval) {
            app.set_now(now_us);
            if let Some(canary) = canary {
                app.set_canary(canary.view());
            }
            terminal.draw(|frame| {
                app.prepare(frame.area());
                render::draw(frame, app);
                if let Some(pane) = chats.shown() {
                    let area = frame.area();
                    render::chat::prepare(pane, area, app.theme());
                    render::chat::render(frame, area, pane, app.theme());
                }
            })?;
            last_draw = Instant::now();
            drawn_tick = now_us / tick;
            dirty = false;
            draw_now = false;
        }
        let next_tick = clock.instant_at(Duration::from_micros((now_us / tick + 1) * tick));
        let wake = if dirty {
            last_draw + frame_interval
        } else {
            next_tick.min(next_measure)
        };
        let wake = panic_at.map_or(wake, |at| wake.min(at));

        tokio::select! {
            event = terminal_events.next() => {
                let Some(event) = event else { break };
                match event? {
                    Event::Key(key) if key.kind != KeyEventKind::Release && chats.shown().is_some() => {
                        let effect = chats.shown().and_then(|pane| pane.handle_key(key));
                        if let Some(effect) = effect
                            && chats.perform(effect) == chat::run::After::Quit
                        {
                            break;
                        }
                        draw_now = true;
                    }
                    Event::Key(key) if key.kind != KeyEventKind::Release => {
                        app.set_now(micros(clock.now()));
                        match app.handle_key(key) {
                            Some(Effect::Quit) => break,
                            Some(Effect::Reconnect(id)) => {
                                let accepted = supervisor.command(id, SessionCommand::ReconnectNow);
                                app.reconnect_sent(id, accepted);
                            }
                            Some(Effect::Canary(command)) => {
                                if let Some(canary) = canary {
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
                                if let Some(recorder) = recorder {
                                    let label = app::marker_label(n);
                                    recorder.marker(MarkerTarget::All, &label);
                                    app.marked(&label);
                                }
                            }
                            Some(Effect::OpenChat(id)) => {
                                let provider = supervisor
                                    .infos()
                                    .get(id as usize)
                                    .map(|info| info.provider.clone())
                                    .unwrap_or_default();
                                if let Err(message) = chats.open(world, &provider, clock, supervisor.event_sender()) {
                                    app.chat_notice(format!("cannot open a chat: {message}"));
                                }
                            }
                            Some(Effect::ShowChat) if !chats.show_next() => {
                                app.chat_notice("no chat pane is open: c opens one".into());
                            }
                            // Live: no replay to drive (the app never asks).
                            Some(Effect::ShowChat) | Some(Effect::Replay(_)) | None => {}
                        }
                        draw_now = true;
                    }
                    Event::Mouse(mouse) if chats.shown().is_some() => {
                        if let Some(pane) = chats.shown() {
                            match mouse.kind {
                                crossterm::event::MouseEventKind::ScrollUp => pane.scroll_by(-3),
                                crossterm::event::MouseEventKind::ScrollDown => pane.scroll_by(3),
                                _ => continue,
                            }
                        }
                        draw_now = true;
                    }
                    Event::Mouse(mouse) => {
                        if matches!(mouse.kind, crossterm::event::MouseEventKind::Moved) {
                            continue;
                        }
                        let size = terminal.size()?;
                        let area = Rect::new(0, 0, size.width, size.height);
                        if let Some(Effect::Quit) = app.handle_mouse(mouse, area) {
                            break;
                        }
                        draw_now = true;
                    }
                    Event::Paste(text) => {
                        match chats.shown() {
                            Some(pane) => pane.handle_paste(&text),
                            None => app.handle_paste(&text),
                        }
                        draw_now = true;
                    }
                    Event::Resize(_, _) => {
                        terminal.autoresize()?;
                        draw_now = true;
                    }
                    _ => {}
                }
            }
            received = events.recv_many(&mut batch, EVENT_BATCH), if sessions_open => {
                if received == 0 {
                    sessions_open = false;
                } else {
                    for event in batch.drain(..) {
                        if chat::run::ChatHost::owns(&event) {
                            chats.apply(&event);
                            continue;
                        }
                        app.apply(&event);
                        observe(&event);
                    }
                    dirty = true;
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sighup.recv() => break,
        }
    }
    chats.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

#[cfg(test)]
mod tests;
