//! How fast verifying reads: chunks sized so one takes about the chunk
//! time on the source, and no more bytes a second than the rate allows.

use std::time::Duration;

use tokio::time::Instant;

/// Fewest rows in an adaptive chunk.
pub(super) const MIN_CHUNK_ROWS: u64 = 100;
/// Most rows in an adaptive chunk.
pub(super) const MAX_CHUNK_ROWS: u64 = 1_000_000;
/// Rows of the first adaptive chunk.
const FIRST_CHUNK_ROWS: u64 = 10_000;

/// Chunk sizes and the rate limit of one verifying connection pair.
#[derive(Debug)]
pub(super) struct Pace {
    /// The time one chunk should take on the source.
    chunk_time: Duration,
    /// Rows per chunk when fixed; adapted otherwise.
    fixed: Option<u64>,
    rows: u64,
    /// Bytes a second, at most; `None` reads as fast as the servers answer.
    rate: Option<f64>,
    /// When the bytes read so far are paid for at the rate.
    paid_until: Option<Instant>,
}

impl Pace {
    pub(super) fn new(chunk_time: Duration, fixed: Option<u32>, rate: Option<f64>) -> Pace {
        let fixed = fixed.map(u64::from);
        Pace {
            chunk_time: chunk_time.max(Duration::from_millis(1)),
            fixed,
            rows: fixed.unwrap_or(FIRST_CHUNK_ROWS),
            rate: rate.filter(|r| r.is_finite() && *r > 0.0),
            paid_until: None,
        }
    }

    /// Rows in the next chunk.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// A chunk of `rows` rows took `took` on the source: the next one is
    /// sized to take the chunk time, shrinking to half or growing to four
    /// times at most, so one odd chunk does not swing it but a first
    /// guess far too small is left behind in a few chunks.
    pub(super) fn took(&mut self, rows: u64, took: Duration) {
        if self.fixed.is_some() || rows == 0 {
            return;
        }
        let seconds = took.as_secs_f64().max(1e-4);
        let wanted = rows as f64 * self.chunk_time.as_secs_f64() / seconds;
        let bounded = wanted.clamp(self.rows as f64 / 2.0, self.rows as f64 * 4.0);
        self.rows = (bounded as u64).clamp(MIN_CHUNK_ROWS, MAX_CHUNK_ROWS);
    }

    /// `bytes` were read at `now`: how long to wait before reading on, so
    /// that what was read stays within the rate.
    pub(super) fn read(&mut self, bytes: u64, now: Instant) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let cost = Duration::try_from_secs_f64(bytes as f64 / rate).unwrap_or(Duration::MAX);
        // Time not used while idle is not saved up for a burst.
        let from = self.paid_until.map_or(now, |paid| paid.max(now));
        let paid = from.checked_add(cost).unwrap_or(from);
        self.paid_until = Some(paid);
        paid - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_and_shrink_toward_the_chunk_time_by_at_most_four_times_or_half() {
        let mut pace = Pace::new(Duration::from_millis(500), None, None);
        assert_eq!(pace.rows(), 10_000);
        // 10,000 rows in 10 ms: 500,000 would take 500 ms, but it grows
        // four times.
        pace.took(10_000, Duration::from_millis(10));
        assert_eq!(pace.rows(), 40_000);
        pace.took(40_000, Duration::from_millis(400));
        assert_eq!(pace.rows(), 50_000);
        // Much slower: halves, never under the floor.
        pace.took(50_000, Duration::from_secs(10));
        assert_eq!(pace.rows(), 25_000);
        for _ in 0..20 {
            pace.took(pace.rows(), Duration::from_secs(60));
        }
        assert_eq!(pace.rows(), MIN_CHUNK_ROWS);
        for _ in 0..40 {
            pace.took(pace.rows(), Duration::ZERO);
        }
        assert_eq!(pace.rows(), MAX_CHUNK_ROWS);
    }

    #[test]
    fn a_fixed_chunk_size_stays() {
        let mut pace = Pace::new(Duration::from_millis(500), Some(500), None);
        pace.took(500, Duration::from_millis(1));
        assert_eq!(pace.rows(), 500);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_wait_so_the_bytes_stay_within_the_rate() {
        let mut pace = Pace::new(Duration::from_millis(500), None, Some(1_000_000.0));
        let start = Instant::now();
        // 2 MB at 1 MB/s: two seconds, whatever the chunking.
        assert_eq!(pace.read(1_000_000, start), Duration::from_secs(1));
        let later = start + Duration::from_millis(400);
        assert_eq!(pace.read(1_000_000, later), Duration::from_millis(1_600));
        // Idle time is not saved up: after a pause, one chunk's worth.
        let idle = start + Duration::from_secs(60);
        assert_eq!(pace.read(500_000, idle), Duration::from_millis(500));
        let mut unlimited = Pace::new(Duration::from_millis(500), None, None);
        assert_eq!(unlimited.read(u64::MAX, start), Duration::ZERO);
        let mut bad = Pace::new(Duration::from_millis(500), None, Some(f64::NAN));
        assert_eq!(bad.read(1, start), Duration::ZERO);
    }
}
