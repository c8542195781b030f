//! A sliding-window throughput meter in fixed memory.
//!
//! The Go original kept one `(time, value)` entry per event for 60 s: at a
//! million events per second that is 60 million entries, and every eviction
//! shifted the whole list. Here the window is cut into a fixed number of
//! buckets that are reused as time moves on, so memory and the cost of an
//! update stay the same whatever the event rate.

use std::time::Duration;

use tokio::time::Instant;

/// Sums of two quantities (rows and bytes) over a sliding time window.
///
/// The rate is `sum(values in window) / max(1 s, now − oldest entry)`, where
/// the window is divided into buckets; the oldest bucket expires as a whole,
/// so the effective window is between `window − window/buckets` and `window`.
///
/// ```
/// use std::time::Duration;
/// use pgmigrator_metrics::RateWindow;
/// use tokio::time::Instant;
///
/// let start = Instant::now();
/// let mut window = RateWindow::new(Duration::from_secs(60), 120);
/// window.add(start, 100, 4096);
/// window.add(start + Duration::from_secs(2), 100, 4096);
/// let rate = window.rate(start + Duration::from_secs(4));
/// assert_eq!(rate.rows_per_sec, 50.0); // 200 rows over the 4 s since the oldest entry
/// assert_eq!(window.rate(start + Duration::from_secs(70)).rows_per_sec, 0.0);
/// ```
#[derive(Debug, Clone)]
pub struct RateWindow {
    /// Width of one bucket in nanoseconds (at least 1).
    bucket_nanos: u64,
    /// The instant of the first entry; bucket numbers count from it.
    origin: Option<Instant>,
    /// Ring of buckets indexed by `bucket number % len`.
    buckets: Box<[Bucket]>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Which bucket number the sums belong to; `EMPTY` when never used.
    number: u64,
    /// Offset from the origin of the first entry in this bucket, in nanoseconds.
    first_nanos: u64,
    /// Sum of the first quantity (rows).
    rows: u64,
    /// Sum of the second quantity (bytes).
    bytes: u64,
}

const EMPTY: u64 = u64::MAX;

/// Rates over the window, per second. Always finite and never negative.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rate {
    /// Rows per second.
    pub rows_per_sec: f64,
    /// Bytes per second.
    pub bytes_per_sec: f64,
}

impl RateWindow {
    /// A window of `window` split into `buckets` buckets (at least one; a
    /// bucket is at least a nanosecond wide).
    pub fn new(window: Duration, buckets: usize) -> Self {
        let buckets = buckets.max(1);
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        RateWindow {
            bucket_nanos: (nanos / buckets as u64).max(1),
            origin: None,
            buckets: vec![
                Bucket {
                    number: EMPTY,
                    first_nanos: 0,
                    rows: 0,
                    bytes: 0,
                };
                buckets
            ]
            .into_boxed_slice(),
        }
    }

    /// Adds `rows` and `bytes` seen at `now`. O(1), no allocation.
    ///
    /// Entries must come in time order (the collector stamps them as it
    /// applies them); an entry older than the first one counts as the first.
    pub fn add(&mut self, now: Instant, rows: u64, bytes: u64) {
        let origin = *self.origin.get_or_insert(now);
        let offset = nanos_between(origin, now);
        let number = offset / self.bucket_nanos;
        let len = self.buckets.len() as u64;
        let bucket = &mut self.buckets[(number % len) as usize];
        if bucket.number != number {
            *bucket = Bucket {
                number,
                first_nanos: offset,
                rows: 0,
                bytes: 0,
            };
        }
        bucket.rows = bucket.rows.saturating_add(rows);
        bucket.bytes = bucket.bytes.saturating_add(bytes);
    }

    /// The rates at `now`: the window's sums over the time since its oldest
    /// entry, that time being at least one second.
    pub fn rate(&self, now: Instant) -> Rate {
        let Some(origin) = self.origin else {
            return Rate::default();
        };
        let offset = nanos_between(origin, now);
        let current = offset / self.bucket_nanos;
        let len = self.buckets.len() as u64;
        let (mut rows, mut bytes, mut oldest) = (0u64, 0u64, u64::MAX);
        for bucket in self.buckets.iter() {
            let live =
                bucket.number != EMPTY && bucket.number <= current && current - bucket.number < len;
            if live {
                rows = rows.saturating_add(bucket.rows);
                bytes = bytes.saturating_add(bucket.bytes);
                oldest = oldest.min(bucket.first_nanos);
            }
        }
        if oldest == u64::MAX {
            return Rate::default();
        }
        let span = (offset.saturating_sub(oldest) as f64 / 1e9).max(1.0);
        Rate {
            rows_per_sec: rows as f64 / span,
            bytes_per_sec: bytes as f64 / span,
        }
    }

    /// The rates of each whole bucket in the window at `now`, oldest first:
    /// the buckets before the current one, since the first entry (a bucket
    /// without entries is a zero rate). Used to see how much the rate
    /// varies.
    pub fn bucket_rates(&self, now: Instant) -> Vec<Rate> {
        let Some(origin) = self.origin else {
            return Vec::new();
        };
        let current = nanos_between(origin, now) / self.bucket_nanos;
        let len = self.buckets.len() as u64;
        let seconds = self.bucket_nanos as f64 / 1e9;
        (current.saturating_sub(len - 1)..current)
            .map(|number| {
                let bucket = &self.buckets[(number % len) as usize];
                match bucket.number == number {
                    true => Rate {
                        rows_per_sec: bucket.rows as f64 / seconds,
                        bytes_per_sec: bucket.bytes as f64 / seconds,
                    },
                    false => Rate::default(),
                }
            })
            .collect()
    }

    /// The rates over the last `whole` whole buckets and the current one
    /// (as far as it has come) at `now`: a sliding window that ends now.
    pub fn recent_rate(&self, now: Instant, whole: usize) -> Rate {
        let Some(origin) = self.origin else {
            return Rate::default();
        };
        let offset = nanos_between(origin, now);
        let current = offset / self.bucket_nanos;
        let len = self.buckets.len() as u64;
        let first = current.saturating_sub((whole as u64).min(len - 1));
        let (mut rows, mut bytes) = (0u64, 0u64);
        for number in first..=current {
            let bucket = &self.buckets[(number % len) as usize];
            if bucket.number == number {
                rows = rows.saturating_add(bucket.rows);
                bytes = bytes.saturating_add(bucket.bytes);
            }
        }
        let span = (offset - first * self.bucket_nanos) as f64 / 1e9;
        if span <= 0.0 {
            return Rate::default();
        }
        Rate {
            rows_per_sec: rows as f64 / span,
            bytes_per_sec: bytes as f64 / span,
        }
    }

    /// How far the current bucket has come at `now`; `None` before the
    /// first entry.
    pub fn current_span(&self, now: Instant) -> Option<Duration> {
        let offset = nanos_between(self.origin?, now);
        Some(Duration::from_nanos(offset % self.bucket_nanos))
    }

    /// Bytes of memory this window holds, itself and its buckets; fixed at
    /// construction.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + std::mem::size_of_val(&*self.buckets)
    }
}

fn nanos_between(earlier: Instant, later: Instant) -> u64 {
    u64::try_from(later.saturating_duration_since(earlier).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn empty_window_has_zero_rate() {
        let window = RateWindow::new(secs(60.0), 120);
        assert_eq!(window.rate(Instant::now()), Rate::default());
    }

    #[test]
    fn rate_divides_by_time_since_oldest_entry() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(secs(60.0), 120);
        window.add(t0, 1000, 10);
        window.add(t0 + secs(5.0), 1000, 10);
        let rate = window.rate(t0 + secs(10.0));
        assert_eq!(rate.rows_per_sec, 200.0);
        assert_eq!(rate.bytes_per_sec, 2.0);
    }

    #[test]
    fn bucket_rates_are_the_whole_buckets_since_the_first_entry_with_gaps_as_zero() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(secs(20.0), 4);
        assert!(window.bucket_rates(t0).is_empty());
        window.add(t0, 50, 5);
        window.add(t0 + secs(11.0), 100, 0);
        // Buckets of 5 s: [0, 5) 50 rows, [5, 10) none, [10, 15) 100 rows
        // and still open at 12 s.
        let rows = |at: f64| -> Vec<f64> {
            window
                .bucket_rates(t0 + secs(at))
                .iter()
                .map(|r| r.rows_per_sec)
                .collect()
        };
        assert_eq!(rows(12.0), [10.0, 0.0]);
        assert_eq!(rows(15.0), [10.0, 0.0, 20.0]);
        // Only the buckets still in the window.
        assert_eq!(rows(26.0), [20.0, 0.0, 0.0]);
    }

    #[test]
    fn a_recent_rate_is_over_the_last_whole_buckets_and_the_current_one() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(secs(20.0), 4);
        assert_eq!(window.recent_rate(t0, 2), Rate::default());
        assert_eq!(window.current_span(t0), None);
        window.add(t0, 50, 0);
        window.add(t0 + secs(6.0), 100, 0);
        window.add(t0 + secs(11.0), 30, 0);
        // At 12 s: buckets [0, 5), [5, 10) and 2 s of [10, 15): 180 rows in 12 s.
        assert_eq!(window.recent_rate(t0 + secs(12.0), 2).rows_per_sec, 15.0);
        // One whole bucket back: [5, 10) and [10, 12): 130 rows in 7 s.
        let rate = window.recent_rate(t0 + secs(12.0), 1).rows_per_sec;
        assert!((rate - 130.0 / 7.0).abs() < 1e-9, "{rate}");
        // The current bucket alone: 2 s of [10, 15).
        assert_eq!(window.current_span(t0 + secs(12.0)), Some(secs(2.0)));
        assert_eq!(window.recent_rate(t0 + secs(12.0), 0).rows_per_sec, 15.0);
        // More than the window holds: the window.
        assert_eq!(window.recent_rate(t0 + secs(12.0), 100).rows_per_sec, 15.0);
    }

    #[test]
    fn elapsed_is_clamped_to_one_second() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(secs(60.0), 120);
        window.add(t0, 500, 0);
        assert_eq!(window.rate(t0).rows_per_sec, 500.0);
        assert_eq!(window.rate(t0 + secs(0.25)).rows_per_sec, 500.0);
    }

    #[test]
    fn entries_expire_after_the_window() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(secs(60.0), 120);
        window.add(t0, 600, 0);
        assert!(window.rate(t0 + secs(59.4)).rows_per_sec > 0.0);
        assert_eq!(window.rate(t0 + secs(60.0)).rows_per_sec, 0.0);
        window.add(t0 + secs(61.0), 60, 0);
        assert_eq!(window.rate(t0 + secs(62.0)).rows_per_sec, 60.0);
    }

    #[test]
    fn only_the_last_window_counts_under_steady_load() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(secs(60.0), 120);
        // 1000 rows every 10 ms for 5 minutes: 100,000 rows/s.
        for i in 0..30_000u32 {
            window.add(t0 + Duration::from_millis(10 * u64::from(i)), 1000, 1);
        }
        let rate = window.rate(t0 + secs(300.0));
        assert!(
            (rate.rows_per_sec - 100_000.0).abs() / 100_000.0 < 0.01,
            "{rate:?}"
        );
    }

    #[test]
    fn memory_is_fixed_whatever_the_event_count() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(secs(60.0), 120);
        let before = window.memory_bytes();
        for i in 0..1_000_000u64 {
            window.add(t0 + Duration::from_micros(i * 100), 1, 1);
        }
        assert_eq!(window.memory_bytes(), before);
        assert!(before < 8 * 1024, "{before}");
    }

    #[test]
    fn huge_values_saturate_instead_of_overflowing() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(secs(60.0), 4);
        window.add(t0, u64::MAX, u64::MAX);
        window.add(t0, u64::MAX, 1);
        let rate = window.rate(t0 + secs(2.0));
        assert!(rate.rows_per_sec.is_finite() && rate.rows_per_sec > 0.0);
    }

    #[test]
    fn degenerate_sizes_are_clamped() {
        let t0 = Instant::now();
        let mut window = RateWindow::new(Duration::ZERO, 0);
        window.add(t0, 5, 5);
        assert_eq!(window.rate(t0).rows_per_sec, 5.0);
    }
}
