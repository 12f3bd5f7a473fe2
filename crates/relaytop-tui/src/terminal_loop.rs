//! The one terminal loop every screen runs on (the dashboard, the replay screen, `relaytop
//! chat`): `tokio::select!` over the terminal's input (read on a thread of its own), the
//! screen's own source of events (the session events), a frame deadline and
//! SIGTERM/SIGINT/SIGHUP; the shared key, mouse, paste and resize handling; and when to draw
//! (`FramePacer`): only when something changed, at most `fps` times a second, a key press, a
//! click or a paste at once, with the events that come while a frame waits folded together
//! just before it.
//!
//! A screen says what it does through `Screen`; `run` sets the terminal up (`TerminalGuard`:
//! given back on every way out, panics included), runs the loop and prints the panics of
//! other threads it held back.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{Event, KeyEvent, KeyEventKind, MouseEvent, MouseEventKind};
use futures_util::FutureExt;
use ratatui::Frame;
use ratatui::layout::Rect;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::terminal;

/// What the loop does after a key or a click.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on (and draw at once).
    Stay,
    /// Leave the loop.
    Quit,
    /// Nothing to show: no frame for it.
    Ignored,
}

/// One screen on the terminal loop: its state and its handlers. Nothing here awaits but
/// `receive`.
pub trait Screen {
    /// Called once each time round, before the frame decision: the screen's clock work (a
    /// countdown, a replay's playing). True when the screen changed and wants a frame.
    fn prepare(&mut self, now: Instant) -> bool;

    /// When the screen next wants the loop to wake if nothing else happens. `next_frame` is
    /// the earliest moment the next frame may be drawn.
    fn wake(&mut self, now: Instant, next_frame: Instant) -> Instant;

    /// Draws the screen (a pure read of its state, after `prepare`).
    fn draw(&mut self, frame: &mut Frame);

    /// A key press (or repeat).
    fn key(&mut self, key: KeyEvent) -> Flow;

    /// A mouse event other than a move; `area` is the whole screen.
    fn mouse(&mut self, mouse: MouseEvent, area: Rect) -> Flow;

    /// Bracketed paste.
    fn paste(&mut self, text: &str);

    /// Waits for the screen's own events and folds them; false once their source has ended
    /// (it is not asked again). The default has none.
    fn receive(&mut self) -> impl Future<Output = bool> {
        std::future::pending()
    }

    /// Whether what changed since the last call moves where the person is looking (drawn at
    /// the full rate), not only figures (drawn at most `FIGURES_FPS` a second); resets it.
    /// The default: everything moves.
    fn moved(&mut self) -> bool {
        true
    }
}

/// Lines a mouse wheel notch scrolls a chat pane (up is negative); `None` for anything else.
pub fn wheel_lines(mouse: &MouseEvent) -> Option<isize> {
    match mouse.kind {
        MouseEventKind::ScrollUp => Some(-3),
        MouseEventKind::ScrollDown => Some(3),
        _ => None,
    }
}

/// What ended the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The person quit (the screen said so).
    Quit,
    /// The terminal's input ended.
    InputEnded,
    /// A signal: `terminated (SIGTERM)`, `interrupted (SIGINT)`, `hung up (SIGHUP)`.
    Signal(&'static str),
}

impl Ended {
    /// What ended the run, for `ended_by`: `quit` (the screen's words for a person quitting,
    /// "quit from the dashboard") or what came instead.
    pub fn reason(self, quit: &str) -> String {
        match self {
            Ended::Quit => quit.to_owned(),
            Ended::InputEnded => "the terminal's input ended".to_owned(),
            Ended::Signal(words) => words.to_owned(),
        }
    }
}

/// Sets the terminal up (raw mode, alternate screen, bracketed paste, mouse capture when
/// `mouse`), runs `screen` on the loop at most `fps` frames a second until it quits, the
/// terminal's input ends or a signal comes, and gives the terminal back; says which it was.
pub async fn run<S: Screen>(screen: &mut S, mouse: bool, fps: u32) -> anyhow::Result<Ended> {
    let result = match terminal::TerminalGuard::enter(mouse) {
        Ok(mut guard) => {
            let result = event_loop(&mut guard.terminal, screen, fps).await;
            drop(guard);
            result
        }
        Err(e) => Err(anyhow::anyhow!("cannot set up the terminal: {e}")),
    };
    for message in terminal::take_held_panics() {
        eprintln!("relaytop: a background task panicked: {message}");
    }
    result
}

async fn event_loop<S: Screen>(
    terminal: &mut terminal::Term,
    screen: &mut S,
    fps: u32,
) -> anyhow::Result<Ended> {
    let mut input = TerminalInput::start()?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut open = true;
    let mut pacer = FramePacer::new(fps, Instant::now());
    loop {
        let now = Instant::now();
        if open && pacer.due(now) {
            // The frame shows what queued up while it waited (one fold, one frame).
            open = drain(screen);
        }
        if screen.prepare(now) {
            pacer.screen_changed(screen.moved(), now);
        }
        if pacer.due(now) {
            terminal.draw(|frame| screen.draw(frame))?;
            pacer.drawn(Instant::now());
            // The frame shows whatever moved so far.
            screen.moved();
        }
        let now = Instant::now();
        let wake = pacer.wake(now, screen.wake(now, pacer.next_frame()));
        let hold = pacer.hold_events(now);
        tokio::select! {
            event = input.next() => {
                let Some(event) = event else { return Ok(Ended::InputEnded) };
                let flow = match event? {
                    Event::Key(key) if key.kind != KeyEventKind::Release => screen.key(key),
                    Event::Mouse(mouse) if mouse.kind == MouseEventKind::Moved => Flow::Ignored,
                    Event::Mouse(mouse) => {
                        let size = terminal.size()?;
                        screen.mouse(mouse, Rect::new(0, 0, size.width, size.height))
                    }
                    Event::Paste(text) => {
                        screen.paste(&text);
                        Flow::Stay
                    }
                    Event::Resize(_, _) => {
                        terminal.autoresize()?;
                        Flow::Stay
                    }
                    _ => Flow::Ignored,
                };
                match flow {
                    Flow::Quit => return Ok(Ended::Quit),
                    Flow::Stay => pacer.urgent(),
                    Flow::Ignored => {}
                }
            }
            received = screen.receive(), if open && !hold => {
                open = received;
                pacer.screen_changed(screen.moved(), Instant::now());
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = sigterm.recv() => return Ok(Ended::Signal("terminated (SIGTERM)")),
            _ = sigint.recv() => return Ok(Ended::Signal("interrupted (SIGINT)")),
            _ = sighup.recv() => return Ok(Ended::Signal("hung up (SIGHUP)")),
        }
    }
}

/// Folds what the screen's source has queued now, without waiting (a few rounds at most, so
/// that a source faster than the fold cannot keep the frame from being drawn); false once
/// the source has ended.
fn drain<S: Screen>(screen: &mut S) -> bool {
    for _ in 0..DRAIN_ROUNDS {
        match screen.receive().now_or_never() {
            Some(true) => {}
            Some(false) => return false,
            None => break,
        }
    }
    true
}

/// Rounds of `receive` folded before a frame at most.
const DRAIN_ROUNDS: usize = 8;

/// When to draw: a frame when something the screen shows changed, at most `fps` a second,
/// and at once after a key, a click, a paste or a resize. Changes come in two kinds: what
/// moves where the person is looking (the selected session's streamed text, a chat's reply)
/// is drawn at up to `fps`; figures alone (other sessions' counts, the clock) at most
/// `FIGURES_FPS` times a second, as a person reads figures (htop redraws every 1.5 s). While
/// a frame waits for its turn, the screen's events wait in their (bounded) stream and are
/// folded at most once a `fps` interval: a burst of event batches is one wake of the loop,
/// not one a batch, and motion among them still draws within one interval. Pure: every
/// decision takes `now`.
#[derive(Clone, Debug)]
pub struct FramePacer {
    interval: Duration,
    /// Between two frames that show only figures.
    figures_interval: Duration,
    last_draw: Instant,
    /// When the screen's events were last folded (or the last frame).
    last_look: Instant,
    /// Something changed since the last frame.
    dirty: bool,
    /// What changed includes motion: the frame comes at the full rate.
    moving: bool,
    /// The person did something: draw at once.
    urgent: bool,
}

/// Frames a second at most when only figures changed (`FramePacer`).
pub const FIGURES_FPS: u32 = 10;

impl FramePacer {
    /// A pacer for at most `fps` frames a second (1 at least) whose first frame is due at once.
    pub fn new(fps: u32, now: Instant) -> FramePacer {
        let interval = Duration::from_secs_f64(1.0 / f64::from(fps.max(1)));
        let figures_interval = interval.max(Duration::from_secs_f64(1.0 / f64::from(FIGURES_FPS)));
        let last_draw = now.checked_sub(figures_interval).unwrap_or(now);
        FramePacer {
            interval,
            figures_interval,
            last_draw,
            last_look: last_draw,
            dirty: true,
            moving: true,
            urgent: true,
        }
    }

    /// Something that moves changed (streamed text in view): drawn at up to `fps`.
    pub fn changed(&mut self) {
        self.dirty = true;
        self.moving = true;
    }

    /// Only figures changed (counts, the screen's clock), as of `now`, when the screen's
    /// events were folded: drawn at up to `FIGURES_FPS`.
    pub fn figures_changed(&mut self, now: Instant) {
        self.dirty = true;
        self.last_look = now;
    }

    /// The screen changed, as of `now`: with motion (`Screen::moved`) or figures alone.
    pub fn screen_changed(&mut self, moved: bool, now: Instant) {
        if moved {
            self.changed();
        } else {
            self.figures_changed(now);
        }
    }

    /// A key, a click, a paste or a resize: the next frame is drawn at once.
    pub fn urgent(&mut self) {
        self.dirty = true;
        self.urgent = true;
    }

    /// Whether a frame is to be drawn at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.urgent || (self.dirty && now >= self.next_frame())
    }

    /// A frame was drawn at `now`.
    pub fn drawn(&mut self, now: Instant) {
        self.last_draw = now;
        self.last_look = now;
        self.dirty = false;
        self.moving = false;
        self.urgent = false;
    }

    /// The earliest moment the next frame may be drawn.
    pub fn next_frame(&self) -> Instant {
        let wait = if self.moving {
            self.interval
        } else {
            self.figures_interval
        };
        self.last_draw + wait
    }

    /// When the events waiting are next folded while a frame waits: once an interval, so
    /// that motion among them is drawn at the full rate.
    fn next_look(&self) -> Instant {
        self.last_look + self.interval
    }

    /// Whether the screen's events should wait at `now`: a frame is pending and not due yet,
    /// and the events were folded less than an interval ago.
    pub fn hold_events(&self, now: Instant) -> bool {
        self.dirty && !self.due(now) && now < self.next_look()
    }

    /// When the loop wakes at `now` if nothing comes: when the screen wants (`wanted`), for
    /// the pending frame, or, while events are held, to fold them (events that are not held
    /// wake the loop themselves).
    pub fn wake(&self, now: Instant, wanted: Instant) -> Instant {
        if !self.dirty {
            return wanted;
        }
        let wake = wanted.min(self.next_frame());
        if self.hold_events(now) {
            wake.min(self.next_look())
        } else {
            wake
        }
    }
}

/// The terminal's input, read on a thread of its own and handed over on a channel: waiting
/// for it costs the loop nothing. (crossterm's `EventStream`, polled every time round the
/// loop, spun on its reader's lock and woke its own thread each time: 10 % of the
/// dashboard's thread with 40 sessions streaming, `perf`.) The thread looks at its stop flag
/// every `INPUT_POLL`; it is told to stop when this is dropped.
struct TerminalInput {
    events: tokio::sync::mpsc::Receiver<std::io::Result<Event>>,
    stop: Arc<AtomicBool>,
}

/// How often the input thread looks whether it should stop while no input comes.
const INPUT_POLL: Duration = Duration::from_millis(100);

impl TerminalInput {
    fn start() -> std::io::Result<TerminalInput> {
        let (tx, events) = tokio::sync::mpsc::channel(256);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("relaytop-input".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    let event = match crossterm::event::poll(INPUT_POLL) {
                        Ok(false) => continue,
                        Ok(true) => crossterm::event::read(),
                        Err(e) => Err(e),
                    };
                    let failed = event.is_err();
                    if tx.blocking_send(event).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(TerminalInput { events, stop })
    }

    /// The next input event; `None` once the input has ended.
    async fn next(&mut self) -> Option<std::io::Result<Event>> {
        self.events.recv().await
    }
}

impl Drop for TerminalInput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.events.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(100);

    /// A pacer at `fps` that drew its first frame at the returned instant.
    fn drawn_once(fps: u32) -> (FramePacer, Instant) {
        let t0 = Instant::now();
        let mut pacer = FramePacer::new(fps, t0);
        assert!(pacer.due(t0));
        pacer.drawn(t0);
        (pacer, t0)
    }

    #[test]
    fn the_first_frame_is_due_at_once_and_nothing_more_until_something_changes() {
        let (pacer, t0) = drawn_once(10);
        assert!(!pacer.due(t0 + FRAME * 50));
        assert!(!pacer.hold_events(t0 + FRAME));
        let far = t0 + FRAME * 600;
        assert_eq!(
            pacer.wake(t0 + FRAME, far),
            far,
            "idle: only the screen's own clock wakes it"
        );
    }

    #[test]
    fn changes_draw_at_most_fps_times_a_second_and_events_wait_for_the_frame() {
        let (mut pacer, t0) = drawn_once(10);
        pacer.changed();
        let soon = t0 + Duration::from_millis(30);
        assert!(!pacer.due(soon));
        assert!(
            pacer.hold_events(soon),
            "the burst is folded just before the frame"
        );
        assert_eq!(pacer.wake(soon, t0 + FRAME * 10), t0 + FRAME);
        assert!(pacer.due(t0 + FRAME));
        assert!(!pacer.hold_events(t0 + FRAME));
        pacer.drawn(t0 + FRAME);
        assert!(!pacer.due(t0 + FRAME * 3));
    }

    #[test]
    fn a_key_draws_at_once_even_right_after_a_frame() {
        let (mut pacer, t0) = drawn_once(10);
        pacer.urgent();
        let now = t0 + Duration::from_millis(1);
        assert!(pacer.due(now));
        assert!(!pacer.hold_events(now));
        pacer.drawn(now);
        assert!(!pacer.due(now));
    }

    #[test]
    fn figures_alone_draw_at_the_figures_rate_and_motion_among_them_at_the_full_rate() {
        let (mut pacer, t0) = drawn_once(30);
        let frame = Duration::from_secs_f64(1.0 / 30.0);
        let figures = Duration::from_secs_f64(1.0 / f64::from(FIGURES_FPS));
        pacer.figures_changed(t0 + Duration::from_millis(5));
        assert!(!pacer.due(t0 + frame * 2), "figures wait for their rate");
        assert!(pacer.due(t0 + figures));
        // While the figures frame waits, events are folded once an interval, not held to it.
        let look = t0 + Duration::from_millis(5) + frame;
        assert!(pacer.hold_events(look - Duration::from_millis(1)));
        assert!(!pacer.hold_events(look));
        assert_eq!(
            pacer.wake(t0 + Duration::from_millis(6), t0 + figures * 10),
            look
        );
        // Past the look, events are not held: they wake the loop, and nothing else does
        // before the figures frame (no spinning on a look that has passed).
        assert_eq!(pacer.wake(look, t0 + figures * 10), t0 + figures);
        // Motion found among them: drawn at once, the full rate's frame being past.
        pacer.changed();
        assert!(pacer.due(look));
        pacer.drawn(look);
        assert!(!pacer.due(look + frame));
        // With fps below the figures rate, figures draw at fps.
        let (mut slow, t1) = drawn_once(2);
        slow.figures_changed(t1);
        assert!(slow.due(t1 + Duration::from_millis(500)));
    }

    #[test]
    fn a_change_after_a_long_quiet_draws_at_once() {
        let (mut pacer, t0) = drawn_once(30);
        let later = t0 + Duration::from_secs(5);
        pacer.changed();
        assert!(pacer.due(later));
        assert!(!pacer.hold_events(later));
    }
}
