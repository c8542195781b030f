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

/// Byte lag and time lag together: `"1.20 MiB (latency: 150ms)"`.
///
/// The latency is truncated to milliseconds and written the way Go writes a
/// duration (`0s`, `5ms`, `1.5s`, `1m30s`, `1h2m3.5s`), as the original did.
///
/// ```
/// use std::time::Duration;
/// use pgmigrator_metrics::format_lag;
///
/// assert_eq!(format_lag(1_258_291, Duration::from_millis(150)), "1.20 MiB (latency: 150ms)");
/// assert_eq!(format_lag(0, Duration::from_secs(90)), "0 B (latency: 1m30s)");
/// ```
pub fn format_lag(bytes: u64, latency: Duration) -> String {
    use crate::units::{format_bytes, format_duration};
    format!(
        "{} (latency: {})",
        format_bytes(bytes),
        format_duration(latency)
    )
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
    fn format_lag_combines_bytes_and_latency() {
        assert_eq!(format_lag(0, Duration::ZERO), "0 B (latency: 0s)");
        assert_eq!(
            format_lag(1_258_291, Duration::from_micros(150_900)),
            "1.20 MiB (latency: 150ms)"
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
