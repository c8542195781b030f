//! What the collector forecasts beside the copy: when the slot's headroom
//! runs out, and when streaming catches up, each from the last minute of
//! readings (the least-squares slope of a [`Slope`]).

use std::time::Duration;

use tokio::time::Instant;

use super::clock::known;
use crate::forecast::Slope;
use crate::model::{CatchUp, CatchUpState, SlotHealth, WalStatus};

/// The readings the two forecasts come from.
#[derive(Debug)]
pub(crate) struct Outlook {
    /// The slot's `safe_wal_size`.
    headroom: Slope,
    /// The lag in bytes, while streaming.
    lag: Slope,
}

impl Outlook {
    /// Forecasts from readings over `window`.
    pub(crate) fn new(window: Duration) -> Outlook {
        Outlook {
            headroom: Slope::new(window),
            lag: Slope::new(window),
        }
    }

    /// A slot report after `previous`: its headroom is followed while it
    /// is the same slot with a limit.
    pub(crate) fn slot(&mut self, previous: Option<&SlotHealth>, slot: &SlotHealth, now: Instant) {
        let other = previous.is_some_and(|p| p.name != slot.name);
        if other || slot.safe_wal_size.is_none() {
            self.headroom.clear();
        }
        if let Some(safe) = slot.safe_wal_size {
            self.headroom.record(now, safe as f64);
        }
    }

    /// The lag in bytes at `now`, while streaming.
    pub(crate) fn lag(&mut self, now: Instant, lag_bytes: u64) {
        self.lag.record(now, lag_bytes as f64);
    }

    /// Seconds until `slot`'s headroom runs out at the rate it shrinks;
    /// `None` while it does not, is unlimited, or the slot is lost.
    pub(crate) fn exhausted_in(&self, slot: &SlotHealth, now: Instant) -> Option<u64> {
        match (slot.safe_wal_size, &slot.wal_status) {
            (_, WalStatus::Lost) | (None, _) => None,
            (Some(safe), _) if safe <= 0 => Some(0),
            (Some(safe), _) => self
                .headroom
                .per_second(now)
                .filter(|change| *change < 0.0)
                .map(|change| (safe as f64 / -change).min(u64::MAX as f64) as u64),
        }
    }

    /// When streaming catches up at the rate its lag changed over the
    /// window, or how fast it falls behind.
    pub(crate) fn catch_up(&self, now: Instant, lag_bytes: u64) -> CatchUp {
        let (state, seconds, growing) = match self.lag.per_second(now) {
            _ if lag_bytes == 0 => (CatchUpState::CaughtUp, None, None),
            None => (CatchUpState::Measuring, None, None),
            Some(change) if change < 0.0 => (
                CatchUpState::CatchingUp,
                known(lag_bytes as f64 / -change),
                None,
            ),
            Some(change) => (CatchUpState::FallingBehind, None, known(change)),
        };
        CatchUp {
            state,
            seconds,
            growing_bytes_per_sec: growing,
        }
    }
}
