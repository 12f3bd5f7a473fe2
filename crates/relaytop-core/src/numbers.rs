//! Numbers people read: counts with thousands separators, latencies in milliseconds, durations,
//! money, percentages, sizes. Pure functions of their arguments, shared by the headless report,
//! the dashboard, the canary's plan and notes, `relaytop replay --against` and the sessions'
//! messages, so the same figure always reads the same way.

use std::time::Duration;

/// A count with thousands separators: `2,400,000`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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

/// `12`, `12.5`, `0.05`: a number without trailing zeros (at most three decimals).
pub fn trim_float(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

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
        count(ms.round() as u64)
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

/// Milliseconds with one decimal, `-` when absent: `412.3`.
pub fn millis(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
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

/// A duration in microseconds for people: `45.2s`, `2m 05s`, `1h 02m 03s`.
pub fn human_duration(us: u64) -> String {
    let s = us / 1_000_000;
    if s < 60 {
        format!("{:.1}s", us as f64 / 1e6)
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m {:02}s", s / 3600, s / 60 % 60, s % 60)
    }
}

/// A duration in words, as the canary's plan and notes say it: `30 s`, `18 min`, `1 h 30 min`.
pub fn duration_words(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs == 0.0 {
        "0 s".to_owned()
    } else if secs < 1.0 {
        format!("{} ms", (secs * 1000.0).round())
    } else if secs < 120.0 {
        format!("{} s", trim_float((secs * 10.0).round() / 10.0))
    } else if secs < 7200.0 {
        format!("{} min", trim_float((secs / 60.0 * 10.0).round() / 10.0))
    } else {
        let h = (secs / 3600.0).floor();
        let m = ((secs - h * 3600.0) / 60.0).round();
        if m == 0.0 {
            format!("{h} h")
        } else {
            format!("{h} h {m} min")
        }
    }
}

/// Seconds, without a fraction when there is none: `60`, `0.50`.
pub fn seconds(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("{secs:.0}")
    } else {
        format!("{secs:.2}")
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

/// US dollars with 4 decimals, `~` in front when estimated: `$1.7500`, `~$0.0052`.
pub fn dollars(usd: f64, estimated: bool) -> String {
    format!("{}${usd:.4}", if estimated { "~" } else { "" })
}

/// An amount with two decimals and thousands separators (negative amounts read as 0):
/// `12,345.67`.
pub fn money_grouped(x: f64) -> String {
    let cents = (x * 100.0).round().max(0.0) as u64;
    format!("{}.{:02}", count(cents / 100), cents % 100)
}

/// A ratio as a percentage with one decimal and a space: `3.2 %`.
pub fn percent(ratio: f64) -> String {
    format!("{:.1} %", ratio * 100.0)
}

/// A share as a short percentage: `0.0%`, `3.2%`, `12%`.
pub fn percent_short(share: f64) -> String {
    let p = share * 100.0;
    if p < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// Bytes as `23.4 MiB`.
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(2_400_000), "2,400,000");
        assert_eq!(compact(999), "999");
        assert_eq!(compact(1_234), "1.2k");
        assert_eq!(compact(12_345), "12k");
        assert_eq!(compact(1_234_567), "1.2M");
        assert_eq!(compact(12_345_678), "12M");
        assert_eq!(trim_float(0.05), "0.05");
        assert_eq!(trim_float(300.0), "300");
        assert_eq!(trim_float(12.5), "12.5");
    }

    #[test]
    fn latencies() {
        assert_eq!(latency_ms(420), "0.42");
        assert_eq!(latency_ms(4_200), "4.2");
        assert_eq!(latency_ms(420_400), "420");
        assert_eq!(latency_ms(12_345_678), "12,346");
        assert_eq!(latency(420_000), "420 ms");
        assert_eq!(latency(4_200_000), "4.2 s");
        assert_eq!(millis(Some(412.3456)), "412.3");
        assert_eq!(millis(None), "-");
    }

    #[test]
    fn durations() {
        assert_eq!(duration_short(4_230_000), "4.2 s");
        assert_eq!(duration_short(42_000_000), "42 s");
        assert_eq!(duration_short(200_000_000), "3m 20s");
        assert_eq!(duration_short(7_500_000_000), "2h 05m");
        assert_eq!(human_duration(45_200_000), "45.2s");
        assert_eq!(human_duration(125_000_000), "2m 05s");
        assert_eq!(human_duration(3_723_000_000), "1h 02m 03s");
        assert_eq!(duration_words(Duration::ZERO), "0 s");
        assert_eq!(duration_words(Duration::from_millis(250)), "250 ms");
        assert_eq!(duration_words(Duration::from_secs(30)), "30 s");
        assert_eq!(duration_words(Duration::from_secs(1200)), "20 min");
        assert_eq!(duration_words(Duration::from_secs(5400)), "90 min");
        assert_eq!(duration_words(Duration::from_secs(10800)), "3 h");
        assert_eq!(duration_words(Duration::from_secs(9000)), "2 h 30 min");
        assert_eq!(seconds(Duration::from_secs(60)), "60");
        assert_eq!(seconds(Duration::from_millis(500)), "0.50");
        assert_eq!(age(3_900_000), "3s");
        assert_eq!(age(240_000_000), "4m");
        assert_eq!(age(7_200_000_000), "2h");
        assert_eq!(run_time(95_000_000), "1:35");
        assert_eq!(run_time(3_723_000_000), "1:02:03");
    }

    #[test]
    fn money_and_shares() {
        assert_eq!(money(0.04123, "CNY", false), "0.0412 CNY");
        assert_eq!(money(3.01324, "USD", false), "3.013 USD");
        assert_eq!(money(123.456, "USD", true), "~123.46 USD");
        assert_eq!(money(0.5, "", false), "0.5000");
        assert_eq!(dollars(1.75, false), "$1.7500");
        assert_eq!(dollars(0.00515, true), "~$0.0052");
        assert_eq!(money_grouped(12_345.674), "12,345.67");
        assert_eq!(money_grouped(-3.0), "0.00");
        assert_eq!(percent(0.032), "3.2 %");
        assert_eq!(percent_short(0.032), "3.2%");
        assert_eq!(percent_short(0.125), "12%");
        assert_eq!(mebibytes(24_536_678), "23.4 MiB");
    }
}
