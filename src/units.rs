//! Quantities as people read and write them, in one place: sizes and
//! durations printed for the dashboard, the terminal, `status` and alert
//! summaries, and parsed from flags, alert rules and queries.
//!
//! - Sizes print in IEC units, `1.50 MiB`, as Grafana's "bytes(IEC)" does.
//!   They parse with either kind of unit: `kB`, `MB`, `GB`, `TB` count in
//!   powers of ten and `KiB`, `MiB`, `GiB`, `TiB` in powers of two, so
//!   `500MB` is 500,000,000 bytes. (PostgreSQL writes "MB" for 2^20 in
//!   `pg_size_pretty` and its settings: printing IEC units is what keeps the
//!   two from being confused.)
//! - Durations have one grammar everywhere: whole or decimal numbers each
//!   followed by a unit (`ms`, `s`, `m`, `h`, `d`), as in `500ms`, `1.5s`,
//!   `1h30m`; or a plain number of seconds, `30` or `2.5`. They print the
//!   way Go writes a duration (`1m30s`, `1h2m3.5s`), which parses back.
//!
//! What is printed parses back to the value it shows.
//!
//! ```
//! use std::time::Duration;
//! use pgmigrator_metrics::units::{format_bytes, format_duration, parse_bytes, parse_duration};
//!
//! assert_eq!(format_bytes(3 << 19), "1.50 MiB");
//! assert_eq!(parse_bytes("1.50 MiB"), Ok(3 << 19));
//! assert_eq!(parse_bytes("500MB"), Ok(500_000_000));
//! assert_eq!(format_duration(Duration::from_millis(90_500)), "1m30.5s");
//! assert_eq!(parse_duration("1m30.5s"), Ok(Duration::from_millis(90_500)));
//! assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2_500)));
//! ```

use std::time::Duration;

/// The IEC units `format_bytes` prints, each 1024 times the one before.
const IEC: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// A byte count in IEC units with two decimals: `"512 B"`, `"1.25 KiB"`,
/// `"12.50 MiB"`, `"1.50 GiB"`.
///
/// ```
/// use pgmigrator_metrics::format_bytes;
///
/// assert_eq!(format_bytes(512), "512 B");
/// assert_eq!(format_bytes(1280), "1.25 KiB");
/// assert_eq!(format_bytes(3 << 29), "1.50 GiB");
/// ```
pub fn format_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut divisor = 1024u64;
    let mut unit = 0;
    while bytes / divisor >= 1024 && unit + 1 < IEC.len() {
        divisor *= 1024;
        unit += 1;
    }
    format!("{:.2} {}", bytes as f64 / divisor as f64, IEC[unit])
}

/// A size: `0`, `512 B`, `512kB`, `500MB`, `1.5 GiB` (kB, MB, GB, TB, PB,
/// EB count in powers of ten; KiB, MiB, GiB, TiB, PiB, EiB in powers of two).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = split_number(text);
    let number = number
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("{text:?} is not a size (e.g. 0, 512kB, 500MB, 1GiB)"))?;
    let scale = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "PB" => 1e15,
        "EB" => 1e18,
        iec => match IEC.iter().position(|u| *u == iec) {
            Some(power) => 1024f64.powi(power as i32 + 1),
            None => {
                return Err(format!(
                    "unknown size unit {iec:?} (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
                ));
            }
        },
    };
    let bytes = (number * scale).round();
    if bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(bytes as u64)
}

/// A duration: `30s`, `5m`, `1h30m`, `1.5s`, `500ms`, `2d`, or a plain
/// number of seconds (`30`, `2.5`). Negative, NaN and unrepresentable
/// values are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (e.g. 30s, 5m, 1h30m, 1.5s, 500ms)");
    let mut rest = text.trim();
    if let (Some(seconds), "") = split_number(rest) {
        return seconds
            .parse()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(bad);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let (number, tail) = split_number(rest);
        let number: f64 = number.and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let one = match unit {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        let part = Duration::try_from_secs_f64(number * one).map_err(|_| bad())?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = tail;
    }
    Ok(total)
}

/// A duration in seconds, in the grammar of [`parse_duration`].
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    parse_duration(text).map(|d| d.as_secs_f64())
}

/// The leading number of `text` (digits with at most one `.`), if it
/// starts with a digit, and the rest.
fn split_number(text: &str) -> (Option<&str>, &str) {
    let mut dot = false;
    let end = text
        .find(|c: char| {
            let first_dot = c == '.' && !dot;
            dot |= first_dot;
            !(c.is_ascii_digit() || first_dot)
        })
        .unwrap_or(text.len());
    let (number, rest) = text.split_at(end);
    let number = number
        .starts_with(|c: char| c.is_ascii_digit())
        .then_some(number);
    (number, rest)
}

/// A duration from a count of seconds that may come from a hand-edited
/// file: negative, NaN, infinite or unrepresentable counts give zero.
pub(crate) fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or_default()
}

/// A duration truncated to milliseconds, written like Go's `Duration.String`:
/// `0s`, `5ms`, `1.5s`, `1m30s`, `2h0m0s`.
///
/// ```
/// use std::time::Duration;
/// use pgmigrator_metrics::format_duration;
///
/// assert_eq!(format_duration(Duration::from_micros(1500)), "1ms");
/// assert_eq!(format_duration(Duration::from_millis(3_723_500)), "1h2m3.5s");
/// ```
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let seconds = ms / 1000 % 60;
    let fraction = ms % 1000;
    let mut secs = seconds.to_string();
    if fraction > 0 {
        let digits = format!("{fraction:03}");
        secs.push('.');
        secs.push_str(digits.trim_end_matches('0'));
    }
    match (hours, minutes) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn format_bytes_uses_iec_units_with_two_decimals() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.00 KiB");
        assert_eq!(format_bytes(1280), "1.25 KiB");
        assert_eq!(format_bytes(1_258_291), "1.20 MiB");
        assert_eq!(format_bytes(12 * 1024 * 1024 + 512 * 1024), "12.50 MiB");
        assert_eq!(format_bytes(3 << 29), "1.50 GiB");
        assert_eq!(format_bytes(5_368_709_120), "5.00 GiB");
        assert_eq!(format_bytes(1 << 40), "1.00 TiB");
        assert_eq!(format_bytes(u64::MAX), "16.00 EiB");
    }

    #[test]
    fn format_duration_matches_go_duration_string() {
        let ms = Duration::from_millis;
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_micros(999)), "0s");
        assert_eq!(format_duration(ms(5)), "5ms");
        assert_eq!(format_duration(ms(150)), "150ms");
        assert_eq!(format_duration(ms(1000)), "1s");
        assert_eq!(format_duration(ms(1500)), "1.5s");
        assert_eq!(format_duration(ms(1050)), "1.05s");
        assert_eq!(format_duration(ms(1001)), "1.001s");
        assert_eq!(format_duration(ms(60_000)), "1m0s");
        assert_eq!(format_duration(ms(90_000)), "1m30s");
        assert_eq!(format_duration(ms(3_723_500)), "1h2m3.5s");
        assert_eq!(format_duration(ms(7_200_000)), "2h0m0s");
        assert_eq!(format_duration(Duration::from_secs(100 * 3600)), "100h0m0s");
    }

    #[test]
    fn sizes_take_decimal_and_binary_units_and_refuse_the_rest() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("512 B"), Ok(512));
        assert_eq!(parse_bytes("16MB"), Ok(16_000_000));
        assert_eq!(parse_bytes("1MB"), Ok(1_000_000));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5kB"), Ok(1500));
        assert_eq!(parse_bytes("2 EiB"), Ok(2 << 60));
        for bad in [
            "",
            "-1",
            "1XB",
            "MB",
            ".5MB",
            "1.2.3MB",
            "99999999999TiB",
            "16 EiB",
            "NaN",
            "1e3",
            "inf",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_have_one_grammar_and_refuse_the_rest() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1m0.25s"), Ok(Duration::from_millis(60_250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 2.5 "), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_seconds("5m"), Ok(300.0));
        assert_eq!(parse_seconds("2.5"), Ok(2.5));
        for bad in [
            "",
            "5x",
            "m",
            "-1s",
            "-1",
            "NaN",
            "inf",
            "+5",
            ".5s",
            "1e3",
            "1 h",
            "5min",
            "99999999999999999999d",
            "1.2.3s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn a_printed_size_parses_back_within_its_rounding(bytes in any::<u64>()) {
            let printed = format_bytes(bytes);
            let parsed = parse_bytes(&printed);
            // Two decimals of the unit printed: off by at most half a hundredth of it.
            let unit = if bytes < 1024 { 1.0 } else { 1024f64.powi((bytes as f64).log(1024.0).floor() as i32) };
            match parsed {
                Ok(parsed) => prop_assert!(
                    (parsed as f64 - bytes as f64).abs() <= unit * 0.005 + 1.0,
                    "{bytes} printed {printed} parsed {parsed}"
                ),
                // Only the very top of the range rounds up past u64::MAX.
                Err(err) => prop_assert!(bytes > u64::MAX - u64::MAX / 400, "{printed}: {err}"),
            }
        }

        #[test]
        fn a_printed_duration_parses_back_to_its_milliseconds(ms in 0u64..10_000_000_000) {
            let duration = Duration::from_millis(ms) + Duration::from_micros(ms % 1000);
            let printed = format_duration(duration);
            prop_assert_eq!(parse_duration(&printed), Ok(Duration::from_millis(duration.as_millis() as u64)), "{}", printed);
        }
    }
}
