//! `relaytop export --format asciicast`: the dashboard as it looked during a recorded run, as
//! an asciicast v2 file (asciinema's format) for sharing.
//!
//! The recording is replayed through the same `App` the live dashboard ran (events folded
//! with `App::apply`, the clock set to the recorded time) and drawn off-screen on a
//! `TestBackend` of the chosen size every `frame` of recorded time. A frame that changed the
//! screen becomes one output event: the changed cells as ANSI (cursor moves, colours, text),
//! so a frame costs what changed, not a whole screen. Silences longer than the idle limit
//! play as the idle limit (asciinema's `idle_time_limit`, written to the header too).

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::{Buffer, Cell};
use ratatui::style::{Color, Modifier};
use serde::Serialize;

use crate::app::App;
use crate::render;
use crate::replay::setups;
use crate::theme::Theme;
use relaytop_core::record::Replay;

/// How the cast is drawn.
#[derive(Clone, Debug)]
pub struct CastOptions {
    pub width: u16,
    pub height: u16,
    /// Recorded time between two frames.
    pub frame: Duration,
    /// Silences longer than this play as this long (`None`: as recorded).
    pub idle_limit: Option<Duration>,
    pub theme: Theme,
}

impl Default for CastOptions {
    fn default() -> Self {
        Self {
            width: 120,
            height: 36,
            frame: Duration::from_millis(250),
            idle_limit: Some(Duration::from_secs(2)),
            theme: Theme::dark(),
        }
    }
}

/// What was written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CastSummary {
    /// Output events (frames that changed the screen).
    pub frames: u64,
    /// The cast's length, seconds.
    pub duration_s: f64,
}

#[derive(Serialize)]
struct Header<'a> {
    version: u8,
    width: u16,
    height: u16,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_time_limit: Option<f64>,
    title: &'a str,
    env: Env<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct Env<'a> {
    term: &'a str,
    shell: &'a str,
}

/// Writes `replay` as an asciicast v2 cast of the dashboard to `out`.
pub fn export(
    replay: &mut Replay,
    options: &CastOptions,
    out: &mut dyn Write,
) -> anyhow::Result<CastSummary> {
    if options.width < 20 || options.height < 5 {
        anyhow::bail!(
            "a cast of {}x{} is too small for the dashboard: give --width 20 or more and \
             --height 5 or more",
            options.width,
            options.height
        );
    }
    let frame_us = relaytop_core::session::event::micros(options.frame).max(1_000);
    let idle_us = options
        .idle_limit
        .map(relaytop_core::session::event::micros);
    let started = replay.started_at();
    let mut app = App::new(
        &setups(replay),
        replay.pricing().clone(),
        started.fixed_offset(),
    )
    .with_slos(replay.slos().clone())
    .with_themes(vec![options.theme.clone()], 0);
    let title = format!(
        "relaytop · {} · {}",
        replay.run_info().source,
        relaytop_core::record::format::wall_clock(&started)
    );
    let header = Header {
        version: 2,
        width: options.width,
        height: options.height,
        timestamp: started.timestamp(),
        idle_time_limit: options.idle_limit.map(|d| d.as_secs_f64()),
        title: &title,
        env: Env {
            term: "xterm-256color",
            shell: "/bin/sh",
        },
    };
    serde_json::to_writer(&mut *out, &header)?;
    out.write_all(b"\n")?;

    let mut terminal = Terminal::new(TestBackend::new(options.width, options.height))?;
    let area = ratatui::layout::Rect::new(0, 0, options.width, options.height);
    let mut shown = Buffer::empty(area);
    let end_us = replay.duration_us().max(replay.end_us());
    let mut t = 0u64;
    let mut out_us = 0u64;
    let mut summary = CastSummary {
        frames: 0,
        duration_s: 0.0,
    };
    let mut first = true;
    let mut text = String::new();
    loop {
        while replay.next_time().is_some_and(|next| next <= t) {
            if let Some(event) = replay.next_event() {
                app.apply(&event);
            }
        }
        app.set_now(t);
        let frame = terminal.draw(|f| {
            app.prepare(f.area());
            render::draw(f, &app);
        })?;
        let next = frame.buffer.clone();
        text.clear();
        if first {
            // Hide the cursor, clear the screen.
            text.push_str("\x1b[?25l\x1b[0m\x1b[2J\x1b[H");
        }
        write_diff(&shown, &next, &mut text);
        if first || !text.is_empty() {
            text.push_str("\x1b[0m");
            serde_json::to_writer(&mut *out, &(out_us as f64 / 1e6, "o", &text))?;
            out.write_all(b"\n")?;
            summary.frames += 1;
            summary.duration_s = out_us as f64 / 1e6;
            shown = next;
            first = false;
        }
        if t >= end_us {
            break;
        }
        // The next frame; a silence past the idle limit is skipped to its end.
        if let (Some(idle), Some(next_event)) = (idle_us, replay.next_time()) {
            let gap = next_event.saturating_sub(t);
            if gap > idle.max(frame_us) {
                out_us += idle;
                t = next_event;
                continue;
            }
        }
        let step = frame_us.min(end_us.saturating_sub(t)).max(1);
        t += step;
        out_us += step;
    }
    out.flush()?;
    Ok(summary)
}

/// Appends the ANSI that turns screen `from` into `to`: a cursor move where the cells
/// changed are not next to each other, a colour change where the style changes.
pub fn write_diff(from: &Buffer, to: &Buffer, out: &mut String) {
    let mut cursor: Option<(u16, u16)> = None;
    let mut style: Option<(Color, Color, Modifier)> = None;
    for (x, y, cell) in from.diff(to) {
        if cursor != Some((x, y)) {
            let _ = write!(out, "\x1b[{};{}H", y + 1, x + 1);
        }
        let wanted = (cell.fg, cell.bg, cell.modifier);
        if style != Some(wanted) {
            out.push_str(&sgr(cell));
            style = Some(wanted);
        }
        let symbol = cell.symbol();
        out.push_str(symbol);
        let width = unicode_width::UnicodeWidthStr::width(symbol).max(1) as u16;
        cursor = Some((x + width, y));
    }
}

/// The SGR sequence that sets a cell's colours and modifiers (from a reset).
fn sgr(cell: &Cell) -> String {
    let mut codes: Vec<String> = vec!["0".into()];
    for (flag, code) in [
        (Modifier::BOLD, "1"),
        (Modifier::DIM, "2"),
        (Modifier::ITALIC, "3"),
        (Modifier::UNDERLINED, "4"),
        (Modifier::SLOW_BLINK, "5"),
        (Modifier::RAPID_BLINK, "6"),
        (Modifier::REVERSED, "7"),
        (Modifier::HIDDEN, "8"),
        (Modifier::CROSSED_OUT, "9"),
    ] {
        if cell.modifier.contains(flag) {
            codes.push(code.into());
        }
    }
    if let Some(c) = color(cell.fg, false) {
        codes.push(c);
    }
    if let Some(c) = color(cell.bg, true) {
        codes.push(c);
    }
    format!("\x1b[{}m", codes.join(";"))
}

fn color(color: Color, background: bool) -> Option<String> {
    let base = |n: u8| -> String { (n + if background { 10 } else { 0 }).to_string() };
    let layer = if background { 48 } else { 38 };
    Some(match color {
        Color::Reset => return None,
        Color::Black => base(30),
        Color::Red => base(31),
        Color::Green => base(32),
        Color::Yellow => base(33),
        Color::Blue => base(34),
        Color::Magenta => base(35),
        Color::Cyan => base(36),
        Color::Gray => base(37),
        Color::DarkGray => base(90),
        Color::LightRed => base(91),
        Color::LightGreen => base(92),
        Color::LightYellow => base(93),
        Color::LightBlue => base(94),
        Color::LightMagenta => base(95),
        Color::LightCyan => base(96),
        Color::White => base(97),
        Color::Rgb(r, g, b) => format!("{layer};2;{r};{g};{b}"),
        Color::Indexed(i) => format!("{layer};5;{i}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;
    use ratatui::style::Style;

    #[test]
    fn a_diff_moves_the_cursor_only_between_gaps_and_sets_colours() {
        let area = Rect::new(0, 0, 10, 2);
        let from = Buffer::empty(area);
        let mut to = Buffer::empty(area);
        to.set_string(2, 0, "ab", Style::default().fg(Color::Red));
        to.set_string(0, 1, "c", Style::default().bg(Color::Rgb(1, 2, 3)));
        let mut out = String::new();
        write_diff(&from, &to, &mut out);
        assert_eq!(out, "\x1b[1;3H\x1b[0;31mab\x1b[2;1H\x1b[0;48;2;1;2;3mc");
        let mut again = String::new();
        write_diff(&to, &to, &mut again);
        assert!(again.is_empty());
    }
}
