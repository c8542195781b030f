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
        }
    }
}

impl fmt::Display for Eta {
    /// `12m30s (10m0s to 15m0s)` while estimating (`…` for an end not
    /// known), else the state's name.
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
            ),
            (state, _) => f.write_str(state.as_str()),
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
        };
        assert_eq!(eta.to_string(), "12m30s (10m0s to …)");
        assert_eq!(Eta::bare(EtaState::Measuring).to_string(), "measuring");
        assert_eq!(Eta::done().to_string(), "done");
        let json = serde_json::to_string(&Eta::bare(EtaState::Stalled)).unwrap();
        assert_eq!(json, r#"{"state":"stalled"}"#);
        let old: Eta = serde_json::from_str(r#"{"state":"guessing","seconds":1}"#).unwrap();
        assert_eq!(old.state.as_str(), "guessing");
    }
}
