//! PostgreSQL log sequence numbers, replication lag and human-readable sizes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A PostgreSQL WAL position (log sequence number).
///
/// Written the way PostgreSQL writes it: two upper-case hexadecimal halves
/// without zero padding, `"16/B374D848"`. In JSON it is that string.
///
/// ```
/// use pgmigrator_metrics::Lsn;
///
/// let lsn: Lsn = "16/B374D848".parse().unwrap();
/// assert_eq!(lsn, Lsn(0x16_B374_D848));
/// assert_eq!(Lsn(0x1A3B4C5).to_string(), "0/1A3B4C5");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl From<u64> for Lsn {
    fn from(value: u64) -> Self {
        Lsn(value)
    }
}

impl From<Lsn> for u64 {
    fn from(lsn: Lsn) -> Self {
        lsn.0
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLsnError {
    input: String,
}

impl fmt::Display for ParseLsnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid LSN {:?}: expected two hexadecimal numbers of at most 8 digits separated by '/', like \"16/B374D848\"",
            self.input
        )
    }
}

impl std::error::Error for ParseLsnError {}

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ParseLsnError {
            input: s.chars().take(64).collect(),
        };
        let (high, low) = s.split_once('/').ok_or_else(error)?;
        let half = |part: &str| {
            let valid =
                !part.is_empty() && part.len() <= 8 && part.bytes().all(|b| b.is_ascii_hexdigit());
            valid
                .then(|| u32::from_str_radix(part, 16).ok())
                .flatten()
                .ok_or_else(error)
        };
        Ok(Lsn((u64::from(half(high)?) << 32) | u64::from(half(low)?)))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Bytes of WAL that `current` still has to replay to reach `latest`;
/// 0 when `current` is at or past `latest`.
///
/// ```
/// use pgmigrator_metrics::{lag, Lsn};
///
/// assert_eq!(lag(Lsn(100), Lsn(250)), 150);
/// assert_eq!(lag(Lsn(300), Lsn(250)), 0);
/// ```
pub fn lag(current: Lsn, latest: Lsn) -> u64 {
    latest.0.saturating_sub(current.0)
}

/// A byte count in binary units with two decimals: `"512 B"`, `"1.25 KB"`,
/// `"12.50 MB"`, `"1.50 GB"`.
///
/// ```
/// use pgmigrator_metrics::format_bytes;
///
/// assert_eq!(format_bytes(512), "512 B");
/// assert_eq!(format_bytes(1280), "1.25 KB");
/// assert_eq!(format_bytes(3 << 29), "1.50 GB");
/// ```
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [char; 6] = ['K', 'M', 'G', 'T', 'P', 'E'];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut divisor = 1024u64;
    let mut unit = 0;
    while bytes / divisor >= 1024 && unit + 1 < UNITS.len() {
        divisor *= 1024;
        unit += 1;
    }
    format!("{:.2} {}B", bytes as f64 / divisor as f64, UNITS[unit])
}

/// Byte lag and time lag together: `"1.20 MB (latency: 150ms)"`.
///
/// The latency is truncated to milliseconds and written the way Go writes a
/// duration (`0s`, `5ms`, `1.5s`, `1m30s`, `1h2m3.5s`), as the original did.
///
/// ```
/// use std::time::Duration;
/// use pgmigrator_metrics::format_lag;
///
/// assert_eq!(format_lag(1_258_291, Duration::from_millis(150)), "1.20 MB (latency: 150ms)");
/// assert_eq!(format_lag(0, Duration::from_secs(90)), "0 B (latency: 1m30s)");
/// ```
pub fn format_lag(bytes: u64, latency: Duration) -> String {
    format!(
        "{} (latency: {})",
        format_bytes(bytes),
        format_duration(latency)
    )
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

    #[test]
    fn display_is_upper_case_hex_without_padding() {
        assert_eq!(Lsn(0x1A3B4C5).to_string(), "0/1A3B4C5");
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(0).to_string(), "0/0");
        assert_eq!(Lsn(u64::MAX).to_string(), "FFFFFFFF/FFFFFFFF");
    }

    #[test]
    fn parse_accepts_postgres_output_in_either_case() {
        assert_eq!("16/B374D848".parse(), Ok(Lsn(0x16_B374_D848)));
        assert_eq!("16/b374d848".parse(), Ok(Lsn(0x16_B374_D848)));
        assert_eq!("0/0".parse(), Ok(Lsn(0)));
        assert_eq!("FFFFFFFF/FFFFFFFF".parse(), Ok(Lsn(u64::MAX)));
    }

    #[test]
    fn parse_rejects_malformed_input_with_a_clear_error() {
        for bad in [
            "",
            "/",
            "0/",
            "/0",
            "16B374D848",
            "1/2/3",
            "G/0",
            "0/-1",
            "+1/0",
            " 0/0",
            "0/0 ",
            "123456789/0",
        ] {
            let err = bad.parse::<Lsn>().expect_err(bad);
            assert!(err.to_string().contains("invalid LSN"), "{err}");
        }
    }

    #[test]
    fn display_and_parse_round_trip() {
        for value in [
            0,
            1,
            0xFFFF_FFFF,
            0x1_0000_0000,
            0xDEAD_BEEF_0000_0001,
            u64::MAX,
        ] {
            assert_eq!(Lsn(value).to_string().parse(), Ok(Lsn(value)));
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        assert_eq!(
            serde_json::to_string(&Lsn(0x1A3B4C5)).unwrap(),
            "\"0/1A3B4C5\""
        );
        assert_eq!(
            serde_json::from_str::<Lsn>("\"16/B374D848\"").unwrap(),
            Lsn(0x16_B374_D848)
        );
        assert!(serde_json::from_str::<Lsn>("\"nope\"").is_err());
        assert!(serde_json::from_str::<Lsn>("42").is_err());
    }

    #[test]
    fn lag_saturates_at_zero() {
        assert_eq!(lag(Lsn(10), Lsn(30)), 20);
        assert_eq!(lag(Lsn(30), Lsn(30)), 0);
        assert_eq!(lag(Lsn(40), Lsn(30)), 0);
        assert_eq!(lag(Lsn(0), Lsn(u64::MAX)), u64::MAX);
    }

    #[test]
    fn format_bytes_uses_binary_units_with_two_decimals() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1024), "1.00 KB");
        assert_eq!(format_bytes(1280), "1.25 KB");
        assert_eq!(format_bytes(1_258_291), "1.20 MB");
        assert_eq!(format_bytes(12 * 1024 * 1024 + 512 * 1024), "12.50 MB");
        assert_eq!(format_bytes(3 << 29), "1.50 GB");
        assert_eq!(format_bytes(5_368_709_120), "5.00 GB");
        assert_eq!(format_bytes(1 << 40), "1.00 TB");
        assert_eq!(format_bytes(u64::MAX), "16.00 EB");
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
    fn format_lag_combines_bytes_and_latency() {
        assert_eq!(format_lag(0, Duration::ZERO), "0 B (latency: 0s)");
        assert_eq!(
            format_lag(1_258_291, Duration::from_micros(150_900)),
            "1.20 MB (latency: 150ms)"
        );
    }
}

/// Properties over every input, run with many cases by CI (and driven
/// further by the `fuzz/` targets).
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2048)
        ))]

        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in any::<String>()) {
            if let Ok(lsn) = text.parse::<Lsn>() {
                // Whatever parsed reads back the same.
                prop_assert_eq!(lsn.to_string().parse::<Lsn>().ok(), Some(lsn));
            }
        }

        #[test]
        fn every_lsn_round_trips_through_text(value in any::<u64>()) {
            prop_assert_eq!(Lsn(value).to_string().parse::<Lsn>().ok(), Some(Lsn(value)));
        }

        #[test]
        fn both_halves_in_either_case_parse_to_their_value(high in any::<u32>(), low in any::<u32>()) {
            let expected = Some(Lsn((u64::from(high) << 32) | u64::from(low)));
            prop_assert_eq!(format!("{high:X}/{low:X}").parse::<Lsn>().ok(), expected);
            prop_assert_eq!(format!("{high:x}/{low:08x}").parse::<Lsn>().ok(), expected);
        }
    }
}
