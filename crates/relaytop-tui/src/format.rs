//! How numbers read on screen: latencies, ages, counts, money, clock times. Pure functions of
//! their arguments, shared by every pane so the same figure always looks the same.

use chrono::{DateTime, FixedOffset, TimeDelta};

/// A latency in microseconds as milliseconds: `0.42`, `4.2`, `42`, `420`, `4,200`.
pub fn latency_ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 1.0 {
        format!("{ms:.2}")
    } else if ms < 10.0 {
        format!("{ms:.1}")
    } else if ms < 10_000.0 {
        format!("{ms:.0}")
    } else {
        thousands(ms.round() as u64)
    }
}

/// A latency with its unit: `420 ms`, `4.2 s`, `3m 20s`.
pub fn latency(us: u64) -> String {
    if us < 1_000_000 {
        format!("{} ms", latency_ms(us))
    } else {
        duration_short(us)
    }
}

/// A duration in microseconds, short: `0.4 s`, `4.2 s`, `42 s`, `3m 20s`, `2h 05m`.
pub fn duration_short(us: u64) -> String {
    let s = us as f64 / 1e6;
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 60.0 {
        format!("{s:.0} s")
    } else {
        let whole = us / 1_000_000;
        let (h, m, sec) = (whole / 3600, whole / 60 % 60, whole % 60);
        if h > 0 {
            format!("{h}h {m:02}m")
        } else {
            format!("{m}m {sec:02}s")
        }
    }
}

/// An age in whole seconds: `3s`, `59s`, `4m`, `2h`.
pub fn age(us: u64) -> String {
    let s = us / 1_000_000;
    if s < 100 {
        format!("{s}s")
    } else if s < 6000 {
        format!("{}m", s / 60)
    } else {
        format!("{}h", s / 3600)
    }
}

/// A run time: `0:42`, `12:03`, `1:02:03`.
pub fn run_time(us: u64) -> String {
    let s = us / 1_000_000;
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{sec:02}")
    } else {
        format!("{m}:{sec:02}")
    }
}

/// A count with thousands separators: `1,234,567` (the headless report's formatting).
pub fn thousands(n: u64) -> String {
    relaytop_core::report::count(n)
}

/// A count, compact: `999`, `1.2k`, `12k`, `1.2M`.
pub fn compact(n: u64) -> String {
    let x = n as f64;
    if n < 1000 {
        n.to_string()
    } else if x < 10_000.0 {
        format!("{:.1}k", x / 1e3)
    } else if x < 1e6 {
        format!("{:.0}k", x / 1e3)
    } else if x < 1e7 {
        format!("{:.1}M", x / 1e6)
    } else {
        format!("{:.0}M", x / 1e6)
    }
}

/// Money in a currency: `0.0412 CNY`, `12.35 USD`; `~` in front when estimated.
pub fn money(amount: f64, currency: &str, estimated: bool) -> String {
    let mark = if estimated { "~" } else { "" };
    let digits = if amount.abs() < 1.0 {
        4
    } else if amount.abs() < 10.0 {
        3
    } else {
        2
    };
    if currency.is_empty() {
        format!("{mark}{amount:.digits$}")
    } else {
        format!("{mark}{amount:.digits$} {currency}")
    }
}

/// A share as a percentage: `0.0%`, `3.2%`, `12%`.
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

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

/// Bytes as `23.4 MiB`.
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
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
