//! Time lag: how long the oldest WAL not yet applied has been waiting.
//!
//! The idea comes from PostgreSQL's walsender `LagTracker`: remember when each
//! WAL position was first seen on the source, and when the applier reaches it,
//! the time since it was seen is the lag. The samples live in a bounded ring;
//! when it fills, every second sample is dropped and the spacing between
//! samples doubles, so a long lag is still measured, with a coarser resolution,
//! in the same memory.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::lsn::Lsn;

/// Samples kept at most: 512 × 24 bytes.
const CAPACITY: usize = 512;
/// Smallest time between two samples.
const BASE_SPACING: Duration = Duration::from_millis(10);

/// A bounded ring of `(latest LSN, instant first seen)` samples.
///
/// ```
/// use std::time::Duration;
/// use pgmigrator_metrics::{LagTracker, Lsn};
/// use tokio::time::Instant;
///
/// let t0 = Instant::now();
/// let mut tracker = LagTracker::new();
/// tracker.record_latest(Lsn(100), t0);
/// tracker.record_latest(Lsn(200), t0 + Duration::from_secs(2));
/// tracker.applied(Lsn(150));
/// // WAL past 150 was first seen at t0 + 2 s.
/// assert_eq!(tracker.latency(t0 + Duration::from_secs(5)), Duration::from_secs(3));
/// tracker.applied(Lsn(200));
/// assert_eq!(tracker.latency(t0 + Duration::from_secs(5)), Duration::ZERO);
/// ```
#[derive(Debug, Clone)]
pub struct LagTracker {
    /// Samples with strictly increasing LSNs, all beyond the applied LSN.
    samples: VecDeque<(Lsn, Instant)>,
    /// The applied LSN last reported.
    applied: Lsn,
    /// Minimum time between samples; doubles each time the ring is thinned.
    spacing: Duration,
}

impl Default for LagTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl LagTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        LagTracker {
            samples: VecDeque::with_capacity(CAPACITY),
            applied: Lsn(0),
            spacing: BASE_SPACING,
        }
    }

    /// The source reported `latest` as its newest WAL position at `now`.
    pub fn record_latest(&mut self, latest: Lsn, now: Instant) {
        if latest <= self.applied {
            return;
        }
        if let Some(&(last_lsn, last_seen)) = self.samples.back()
            && (latest <= last_lsn || now.saturating_duration_since(last_seen) < self.spacing)
        {
            return;
        }
        if self.samples.len() == CAPACITY {
            self.thin();
        }
        self.samples.push_back((latest, now));
    }

    /// The applier has applied everything up to `applied`.
    pub fn applied(&mut self, applied: Lsn) {
        self.applied = self.applied.max(applied);
        while self
            .samples
            .front()
            .is_some_and(|&(lsn, _)| lsn <= self.applied)
        {
            self.samples.pop_front();
        }
        if self.samples.is_empty() {
            self.spacing = BASE_SPACING;
        }
    }

    /// How long the oldest WAL beyond the applied LSN has waited at `now`;
    /// zero when nothing is waiting.
    pub fn latency(&self, now: Instant) -> Duration {
        self.samples.front().map_or(Duration::ZERO, |&(_, seen)| {
            now.saturating_duration_since(seen)
        })
    }

    /// Bytes of memory this tracker holds; fixed.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.samples.capacity() * std::mem::size_of::<(Lsn, Instant)>()
    }

    /// Drops every second sample, keeping the oldest, and doubles the spacing.
    fn thin(&mut self) {
        let mut index = 0;
        self.samples.retain(|_| {
            index += 1;
            index % 2 == 1
        });
        self.spacing = self.spacing.saturating_mul(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn caught_up_means_zero_latency() {
        let t0 = Instant::now();
        let mut tracker = LagTracker::new();
        assert_eq!(tracker.latency(at(t0, 5000)), Duration::ZERO);
        tracker.record_latest(Lsn(10), t0);
        tracker.applied(Lsn(10));
        assert_eq!(tracker.latency(at(t0, 5000)), Duration::ZERO);
    }

    #[test]
    fn latency_is_age_of_earliest_sample_beyond_applied() {
        let t0 = Instant::now();
        let mut tracker = LagTracker::new();
        tracker.record_latest(Lsn(100), t0);
        tracker.record_latest(Lsn(200), at(t0, 1000));
        tracker.record_latest(Lsn(300), at(t0, 2000));
        assert_eq!(tracker.latency(at(t0, 3000)), Duration::from_secs(3));
        tracker.applied(Lsn(100));
        assert_eq!(tracker.latency(at(t0, 3000)), Duration::from_secs(2));
        tracker.applied(Lsn(250));
        assert_eq!(tracker.latency(at(t0, 3000)), Duration::from_secs(1));
    }

    #[test]
    fn backwards_or_repeated_lsns_add_no_sample() {
        let t0 = Instant::now();
        let mut tracker = LagTracker::new();
        tracker.record_latest(Lsn(100), t0);
        tracker.record_latest(Lsn(50), at(t0, 500));
        tracker.record_latest(Lsn(100), at(t0, 600));
        tracker.applied(Lsn(99));
        assert_eq!(tracker.latency(at(t0, 1000)), Duration::from_secs(1));
        tracker.applied(Lsn(100));
        assert_eq!(tracker.latency(at(t0, 1000)), Duration::ZERO);
    }

    #[test]
    fn applied_never_moves_backwards() {
        let t0 = Instant::now();
        let mut tracker = LagTracker::new();
        tracker.applied(Lsn(500));
        tracker.applied(Lsn(100));
        tracker.record_latest(Lsn(400), t0);
        assert_eq!(tracker.latency(at(t0, 1000)), Duration::ZERO);
    }

    #[test]
    fn a_long_lag_is_measured_in_bounded_memory() {
        let t0 = Instant::now();
        let mut tracker = LagTracker::new();
        let before = tracker.memory_bytes();
        // One new position every millisecond for an hour, nothing applied.
        for ms in 0..3_600_000u64 {
            tracker.record_latest(Lsn(ms + 1), at(t0, ms));
        }
        assert_eq!(tracker.memory_bytes(), before);
        assert!(before <= 16 * 1024, "{before}");
        assert_eq!(
            tracker.latency(at(t0, 3_600_000)),
            Duration::from_secs(3600)
        );
        // Half-way through, the estimate is off by at most the spacing.
        tracker.applied(Lsn(1_800_000));
        let latency = tracker.latency(at(t0, 3_600_000)).as_secs_f64();
        assert!((latency - 1800.0).abs() < 60.0, "{latency}");
    }
}
