//! The one terminal loop every screen runs on (the dashboard, the replay screen, `relaytop
//! chat`): `tokio::select!` over crossterm's `EventStream`, the screen's own source of events
//! (the session events), a frame deadline and SIGTERM/SIGINT/SIGHUP; the shared key, mouse,
//! paste and resize handling; and drawing only when something changed, at most `fps` times a
//! second (a key press, a click or a paste draws at once).
//!
//! A screen says what it does through `Screen`; `run` sets the terminal up (`TerminalGuard`:
//! given back on every way out, panics included), runs the loop and prints the panics of
//! other threads it held back.

use std::future::Future;
use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyEvent, KeyEventKind, MouseEvent, MouseEventKind};
use futures_util::StreamExt;
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
    let frame_interval = Duration::from_secs_f64(1.0 / f64::from(fps.max(1)));
    let mut terminal_events = EventStream::new();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut open = true;
    let mut dirty = true;
    let mut draw_now = true;
    let mut last_draw = Instant::now();
    loop {
        let now = Instant::now();
        if screen.prepare(now) {
            dirty = true;
        }
        if draw_now || (dirty && now >= last_draw + frame_interval) {
            terminal.draw(|frame| screen.draw(frame))?;
            last_draw = Instant::now();
            dirty = false;
            draw_now = false;
        }
        let next_frame = last_draw + frame_interval;
        let wanted = screen.wake(Instant::now(), next_frame);
        let wake = if dirty {
            wanted.min(next_frame)
        } else {
            wanted
        };
        tokio::select! {
            event = terminal_events.next() => {
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
                    Flow::Stay => draw_now = true,
                    Flow::Ignored => {}
                }
            }
            received = screen.receive(), if open => {
                open = received;
                dirty = true;
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = sigterm.recv() => return Ok(Ended::Signal("terminated (SIGTERM)")),
            _ = sigint.recv() => return Ok(Ended::Signal("interrupted (SIGINT)")),
            _ = sighup.recv() => return Ok(Ended::Signal("hung up (SIGHUP)")),
        }
    }
}
