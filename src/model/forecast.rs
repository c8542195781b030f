//! Forecasts as every surface shows them: when the copy will be done, how
//! far that can be trusted, and how much it has moved.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::named::named_enum;
use super::table::UnknownStatus;

named_enum! {
    /// How far a forecast can be trusted.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum EtaState {
        /// Not enough seen yet: a table in flight has been copied for less
        /// than 10 s (two 5-second rate buckets).
        #[default]
        Measuring = "measuring",
        /// A forecast from the recent rates.
        Estimating = "estimating",
        /// Nothing was copied over the whole rate window.
        Stalled = "stalled",
        /// Nothing is left.
        Done = "done",
        /// Neither rows nor bytes of some table are known.
        Unknown = "unknown",
    }
    keep unknown names in Other(UnknownStatus);
}

named_enum! {
    /// Where streaming stands against the source's writes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum CatchUpState {
        /// Not enough seen yet (10 s of readings).
        #[default]
        Measuring = "measuring",
        /// Nothing left to apply.
        CaughtUp = "caught_up",
        /// The lag shrinks: applying outpaces the source's writes.
        CatchingUp = "catching_up",
        /// The lag grows: the source writes faster than it is applied.
        FallingBehind = "falling_behind",
    }
    keep unknown names in Other(UnknownStatus);
}

/// When streaming will have caught up: the lag in bytes over the time it
/// shrinks in at the recent rates (WAL written on the source less WAL
/// applied, over the last minute), or how fast it grows.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct CatchUp {
    /// Where streaming stands.
    #[serde(default)]
    pub state: CatchUpState,
    /// Seconds until nothing is left to apply, while catching up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Bytes a second the lag grows by, while falling behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub growing_bytes_per_sec: Option<f64>,
}

impl fmt::Display for CatchUp {
    /// `caught up`, `in 3m20s at the recent rates`, `falling behind by
    /// 1.20 MiB/s`, `measuring`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.seconds, self.growing_bytes_per_sec) {
            (CatchUpState::CaughtUp, _, _) => f.write_str("caught up"),
            (CatchUpState::CatchingUp, Some(s), _) if s.is_finite() && s >= 0.0 => write!(
                f,
                "in {} at the recent rates",
                crate::units::format_duration(Duration::from_secs(s.round() as u64))
            ),
            (CatchUpState::FallingBehind, _, Some(b)) if b.is_finite() && b >= 0.0 => write!(
                f,
                "falling behind by {}/s",
                crate::units::format_bytes(b.round() as u64)
            ),
            (state, _, _) => f.write_str(state.as_str()),
        }
    }
}

/// A forecast of the time left, with the band it falls in.
///
/// `low` and `high` come from how the recent rate has varied: the time
/// left at the fast and the slow end of the recent 5-second rates (their
/// 90th and 10th percentiles). Each is absent while the state is not
/// `estimating`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Eta {
    /// How far the forecast can be trusted.
    #[serde(default)]
    pub state: EtaState,
    /// Seconds left, as forecast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Seconds left at the fast end of the band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    /// Seconds left at the slow end of the band.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// How far the forecast finish has moved over the last hour (or since
    /// the first forecast, if later), in seconds: positive when it slipped
    /// later. The copy's forecast only, from the history (so it survives a
    /// restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_sec: Option<f64>,
}

impl Eta {
    /// A forecast in `state` without figures.
    pub fn bare(state: EtaState) -> Eta {
        Eta {
            state,
            ..Eta::default()
        }
    }

    /// Nothing left.
    pub fn done() -> Eta {
        Eta {
            state: EtaState::Done,
            seconds: Some(0.0),
            low: Some(0.0),
            high: Some(0.0),
            drift_sec: None,
        }
    }

    /// When the work should be done, as seconds since the Unix epoch, seen
    /// at `now`: while estimating.
    pub fn finish_at(&self, now: time::OffsetDateTime) -> Option<f64> {
        let seconds = self.seconds.filter(|s| s.is_finite())?;
        (self.state == EtaState::Estimating).then(|| now.unix_timestamp() as f64 + seconds)
    }
}

impl fmt::Display for Eta {
    /// `12m30s (10m0s to 15m0s)` while estimating (`…` for an end not
    /// known), else the state's name; then `· +12m0s in the last hour`
    /// when the finish has moved.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole seconds: a forecast is not that precise.
        let time = |s: Option<f64>| match s.filter(|s| s.is_finite() && *s >= 0.0) {
            Some(s) => crate::units::format_duration(Duration::from_secs(s.round() as u64)),
            None => "…".to_owned(),
        };
        match (self.state, self.seconds) {
            (EtaState::Estimating, Some(_)) => write!(
                f,
                "{} ({} to {})",
                time(self.seconds),
                time(self.low),
                time(self.high)
            )?,
            (state, _) => f.write_str(state.as_str())?,
        }
        match self.drift_sec.filter(|d| d.is_finite() && d.abs() >= 1.0) {
            Some(drift) => write!(
                f,
                " · {}{} in the last hour",
                if drift > 0.0 { "+" } else { "−" },
                time(Some(drift.abs()))
            ),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_eta_reads_as_its_time_and_band_or_its_state() {
        let eta = Eta {
            state: EtaState::Estimating,
            seconds: Some(750.4),
            low: Some(600.0),
            high: None,
            drift_sec: None,
        };
        assert_eq!(eta.to_string(), "12m30s (10m0s to …)");
        let slipped = Eta {
            drift_sec: Some(720.0),
            ..eta
        };
        assert_eq!(
            slipped.to_string(),
            "12m30s (10m0s to …) · +12m0s in the last hour"
        );
        assert_eq!(Eta::bare(EtaState::Measuring).to_string(), "measuring");
        assert_eq!(Eta::done().to_string(), "done");
        let json = serde_json::to_string(&Eta::bare(EtaState::Stalled)).unwrap();
        assert_eq!(json, r#"{"state":"stalled"}"#);
        let old: Eta = serde_json::from_str(r#"{"state":"guessing","seconds":1}"#).unwrap();
        assert_eq!(old.state.as_str(), "guessing");
    }

    #[test]
    fn catching_up_reads_as_its_time_or_how_fast_it_falls_behind() {
        let catch_up = |state, seconds, growing| CatchUp {
            state,
            seconds,
            growing_bytes_per_sec: growing,
        };
        let reads = |c: CatchUp| c.to_string();
        assert_eq!(
            reads(catch_up(CatchUpState::CatchingUp, Some(200.2), None)),
            "in 3m20s at the recent rates"
        );
        assert_eq!(
            reads(catch_up(
                CatchUpState::FallingBehind,
                None,
                Some(1_258_291.0)
            )),
            "falling behind by 1.20 MiB/s"
        );
        assert_eq!(
            reads(catch_up(CatchUpState::CaughtUp, None, None)),
            "caught up"
        );
        assert_eq!(
            reads(catch_up(CatchUpState::CatchingUp, Some(f64::NAN), None)),
            "catching_up"
        );
    }
}
