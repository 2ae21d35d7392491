//! Parsing and printing of durations and counts, the way people write them.
use std::time::Duration;

use anyhow::{bail, Result};

/// Parses `10s`, `500ms`, `2m`, `1.5s`, `250us` or a plain number of seconds. Zero is refused:
/// a recording of nothing is always a mistake.
pub fn parse_duration(flag: &str, s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = match num.parse() {
        Ok(v) => v,
        Err(_) => bail!("{flag} '{s}' is not a duration (try 10s, 500ms or 2m)"),
    };
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => bail!("{flag} '{s}': unknown unit '{other}' (use ms, s, m or h)"),
    };
    let secs = value * scale;
    if !secs.is_finite() || secs <= 0.0 {
        bail!("{flag} '{s}' must be greater than zero");
    }
    if secs > 7.0 * 24.0 * 3600.0 {
        bail!("{flag} '{s}' is longer than a week");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A nanosecond amount with a unit chosen so 3 significant digits show: `812 ns`, `3.21 ms`.
pub fn fmt_ns(ns: u64) -> String {
    let v = ns as f64;
    let (value, unit) = if ns < 1_000 {
        return format!("{ns} ns");
    } else if ns < 1_000_000 {
        (v / 1e3, "µs")
    } else if ns < 1_000_000_000 {
        (v / 1e6, "ms")
    } else {
        (v / 1e9, "s")
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// An integer with thousands separators: `1,234,567`.
pub fn fmt_count(n: u64) -> String {
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

/// Share of `part` in `whole`, in percent.
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(
            parse_duration("--duration", "10s").unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(
            parse_duration("--duration", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("--duration", "2m").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            parse_duration("--duration", "1.5").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration("--duration", " 3 s ").unwrap(),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        for bad in ["", "abc", "0", "0s", "-1s", "10parsecs", "1e9h", "..s"] {
            let err = parse_duration("--duration", bad).unwrap_err().to_string();
            assert!(err.starts_with("--duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn ns_formatting_keeps_three_digits() {
        assert_eq!(fmt_ns(0), "0 ns");
        assert_eq!(fmt_ns(812), "812 ns");
        assert_eq!(fmt_ns(1_500), "1.50 µs");
        assert_eq!(fmt_ns(32_100), "32.1 µs");
        assert_eq!(fmt_ns(3_210_000), "3.21 ms");
        assert_eq!(fmt_ns(612_000_000), "612 ms");
        assert_eq!(fmt_ns(6_020_000_000), "6.02 s");
    }

    #[test]
    fn counts_get_separators() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1000), "1,000");
        assert_eq!(fmt_count(1234567), "1,234,567");
    }
}
