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

    #[test]
    fn latencies() {
        assert_eq!(latency_ms(420), "0.42");
        assert_eq!(latency_ms(4_200), "4.2");
        assert_eq!(latency_ms(420_400), "420");
        assert_eq!(latency_ms(12_345_678), "12,346");
        assert_eq!(latency(420_000), "420 ms");
        assert_eq!(latency(4_200_000), "4.2 s");
    }

    #[test]
    fn durations_and_ages() {
        assert_eq!(duration_short(4_230_000), "4.2 s");
        assert_eq!(duration_short(42_000_000), "42 s");
        assert_eq!(duration_short(200_000_000), "3m 20s");
        assert_eq!(duration_short(7_500_000_000), "2h 05m");
        assert_eq!(age(3_900_000), "3s");
        assert_eq!(age(240_000_000), "4m");
        assert_eq!(run_time(95_000_000), "1:35");
        assert_eq!(run_time(3_723_000_000), "1:02:03");
    }

    #[test]
    fn counts_and_money() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(compact(1_234), "1.2k");
        assert_eq!(compact(12_345), "12k");
        assert_eq!(compact(1_234_567), "1.2M");
        assert_eq!(money(0.04123, "CNY", false), "0.0412 CNY");
        assert_eq!(money(3.01324, "USD", false), "3.013 USD");
        assert_eq!(money(123.456, "USD", true), "~123.46 USD");
        assert_eq!(percent(0.032), "3.2%");
        assert_eq!(percent(0.125), "12%");
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
