//! The terminal's state while the dashboard runs, and getting it back: raw mode, the
//! alternate screen, mouse capture and bracketed paste are undone when the guard drops (quit,
//! error, SIGTERM: the loop returns) and by the panic hook (the message is printed after).
//!
//! Panics on other threads (a session task) must not print over the dashboard: while it is
//! up they are logged to the log file and kept, and printed once the terminal is restored.

use std::io::{self, BufWriter, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::thread::ThreadId;

use crossterm::cursor::{Hide, Show};
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The terminal the dashboard draws on.
pub type Term = Terminal<CrosstermBackend<BufWriter<Stdout>>>;

/// Whether the terminal is in the dashboard's state now.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Whether mouse capture was turned on.
static MOUSE: AtomicBool = AtomicBool::new(false);
/// The thread the dashboard runs on.
static UI_THREAD: OnceLock<ThreadId> = OnceLock::new();
/// Panics of other threads while the dashboard was up, to print afterwards.
static HELD_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static HOOK: Once = Once::new();

/// The terminal, set up for the dashboard; restores it when dropped.
pub struct TerminalGuard {
    pub terminal: Term,
}

impl TerminalGuard {
    /// Raw mode, alternate screen, bracketed paste, mouse capture (when `mouse`), cursor hidden.
    pub fn enter(mouse: bool) -> io::Result<TerminalGuard> {
        install_panic_hook();
        let _ = UI_THREAD.set(std::thread::current().id());
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        MOUSE.store(mouse, Ordering::SeqCst);
        let mut stdout = io::stdout();
        let setup = (|| {
            execute!(stdout, EnterAlternateScreen, EnableBracketedPaste, Hide)?;
            if mouse {
                execute!(stdout, EnableMouseCapture)?;
            }
            Terminal::new(CrosstermBackend::new(BufWriter::new(io::stdout())))
        })();
        match setup {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = self.terminal.backend_mut().flush();
        restore();
    }
}

/// Puts the terminal back as it was (once; later calls do nothing).
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut stdout = io::stdout();
    if MOUSE.swap(false, Ordering::SeqCst) {
        let _ = execute!(stdout, DisableMouseCapture);
    }
    let _ = execute!(stdout, DisableBracketedPaste, LeaveAlternateScreen, Show);
    let _ = disable_raw_mode();
    let _ = stdout.flush();
}

/// Panic messages of other threads held back while the dashboard was up.
pub fn take_held_panics() -> Vec<String> {
    HELD_PANICS
        .lock()
        .map(|mut held| std::mem::take(&mut *held))
        .unwrap_or_default()
}

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_ui_thread = UI_THREAD
                .get()
                .is_none_or(|id| *id == std::thread::current().id());
            if ACTIVE.load(Ordering::SeqCst) && !on_ui_thread {
                let thread = std::thread::current();
                let message = format!("thread '{}' {info}", thread.name().unwrap_or("<unnamed>"));
                tracing::error!(%message, "panic");
                if let Ok(mut held) = HELD_PANICS.lock() {
                    held.push(message);
                }
                return;
            }
            restore();
            previous(info);
        }));
    });
}
