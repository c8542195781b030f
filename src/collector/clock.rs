//! Time as the collector sees it: a monotonic instant for durations and rates,
//! a wall-clock time for timestamps, and a stopwatch that can be resumed.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

/// The moment an update is applied or a snapshot computed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Moment {
    /// Monotonic time (Tokio's, so tests can pause it).
    pub(crate) instant: Instant,
    /// Wall-clock time, for timestamps people read.
    pub(crate) wall: OffsetDateTime,
}

impl Moment {
    pub(crate) fn now() -> Moment {
        Moment {
            instant: Instant::now(),
            wall: OffsetDateTime::now_utc(),
        }
    }
}

/// Accumulated seconds plus, while running, the time since it was started.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Stopwatch {
    /// Seconds accumulated before `running_since`.
    base: f64,
    /// When it was last started; `None` while stopped.
    running_since: Option<Instant>,
}

impl Stopwatch {
    /// A stopwatch that already shows `base` seconds (clamped to a finite,
    /// non-negative number), running from `now` when `running`.
    pub(crate) fn resumed(base: f64, running: bool, now: Instant) -> Self {
        Stopwatch {
            base: non_negative(base),
            running_since: running.then_some(now),
        }
    }

    /// A stopwatch started from zero at `now`.
    pub(crate) fn started(now: Instant) -> Self {
        Self::resumed(0.0, true, now)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.running_since.is_some()
    }

    /// Starts it (if stopped) at `now`, keeping what it showed.
    pub(crate) fn start(&mut self, now: Instant) {
        self.running_since.get_or_insert(now);
    }

    /// Stops it at `now`, keeping what it shows.
    pub(crate) fn stop(&mut self, now: Instant) {
        self.base = self.seconds(now);
        self.running_since = None;
    }

    /// Seconds shown at `now`.
    pub(crate) fn seconds(&self, now: Instant) -> f64 {
        let running = self
            .running_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        self.base + running.as_secs_f64()
    }
}

/// `value` when it is a finite, non-negative number, else 0.
pub(crate) fn non_negative(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}

/// `Some(value)` when it is a finite, non-negative number.
pub(crate) fn known(value: f64) -> Option<f64> {
    (value.is_finite() && value >= 0.0).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopwatch_accumulates_across_stops_and_starts() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut watch = Stopwatch::started(t0);
        assert_eq!(watch.seconds(t0 + s(3)), 3.0);
        watch.stop(t0 + s(3));
        assert_eq!(watch.seconds(t0 + s(100)), 3.0);
        watch.start(t0 + s(10));
        watch.start(t0 + s(11)); // already running: no effect
        assert_eq!(watch.seconds(t0 + s(12)), 5.0);
    }

    #[test]
    fn resumed_stopwatch_clamps_bad_bases() {
        let t0 = Instant::now();
        assert_eq!(Stopwatch::resumed(f64::NAN, false, t0).seconds(t0), 0.0);
        assert_eq!(Stopwatch::resumed(-5.0, false, t0).seconds(t0), 0.0);
        assert_eq!(
            Stopwatch::resumed(7.5, true, t0).seconds(t0 + Duration::from_secs(1)),
            8.5
        );
    }

    #[test]
    fn known_rejects_nan_infinity_and_negatives() {
        assert_eq!(known(f64::NAN), None);
        assert_eq!(known(f64::INFINITY), None);
        assert_eq!(known(-1.0), None);
        assert_eq!(known(0.0), Some(0.0));
    }
}
