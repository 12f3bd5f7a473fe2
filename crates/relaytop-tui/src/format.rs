//! How numbers read on screen: latencies, ages, counts, money, clock times. Pure functions of
//! their arguments, shared by every pane so the same figure always looks the same.
//!
//! The numbers themselves are core's (`relaytop_core::numbers`, the headless report's too);
//! this module owns only what is the screen's: wall-clock times of run offsets and text cut to
//! a width.

use chrono::{DateTime, FixedOffset, TimeDelta};

/// A count with thousands separators: `1,234,567` (the headless report's formatting).
pub use relaytop_core::numbers::count as thousands;
/// A share as a percentage: `0.0%`, `3.2%`, `12%`.
pub use relaytop_core::numbers::percent_short as percent;
pub use relaytop_core::numbers::{
    age, compact, duration_short, latency, latency_ms, mebibytes, money, run_time,
};

/// The wall-clock time of a run offset: `14:03:22`.
pub fn clock(start: DateTime<FixedOffset>, at_us: u64) -> String {
    wall(start, at_us).format("%H:%M:%S").to_string()
}

/// The wall-clock time of a run offset with milliseconds: `14:03:22.120`.
pub fn clock_ms(start: DateTime<FixedOffset>, at_us: u64) -> String {
    wall(start, at_us).format("%H:%M:%S%.3f").to_string()
}

fn wall(start: DateTime<FixedOffset>, at_us: u64) -> DateTime<FixedOffset> {
    let offset = TimeDelta::microseconds(i64::try_from(at_us).unwrap_or(i64::MAX));
    start.checked_add_signed(offset).unwrap_or(start)
}

/// `text` cut to `width` characters, with `…` when cut.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The numbers themselves are tested where they live (`relaytop_core::numbers`).

    #[test]
    fn text_is_cut_to_a_width() {
        assert_eq!(fit("probe-legacy-12", 8), "probe-l…");
        assert_eq!(fit("abc", 3), "abc");
    }

    #[test]
    fn clock_times() {
        let start = DateTime::parse_from_rfc3339("2026-11-25T14:00:00+01:00").unwrap();
        assert_eq!(clock(start, 95_000_000), "14:01:35");
        assert_eq!(clock_ms(start, 95_120_000), "14:01:35.120");
    }
}
