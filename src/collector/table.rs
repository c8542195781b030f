//! One table's progress as the collector tracks it, and the rules for its
//! percent and ETA.

use std::time::Duration;

use tokio::time::Instant;

use super::clock::{Moment, Stopwatch};
use crate::forecast::{Pace, Slowdown, last_shift, pace_window};
use crate::model::{TableProgress, TableStatus};
use crate::rate::RateWindow;

/// The most a copying table's percent shows before `table_done`.
const HELD_PERCENT: f64 = 99.9;

/// A table's published fields plus what derives the rest.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    /// Progress as published; `percent` is kept current, `elapsed_sec` and
    /// `eta_sec` are filled in when a snapshot is taken.
    pub(crate) progress: TableProgress,
    /// Time spent copying.
    copying: Stopwatch,
    /// This table's recent copy rate, while it is copying.
    rate: Option<RateWindow>,
    /// How its rate falls as it goes on, while it is copying.
    slowdown: Slowdown,
    /// The rate window's length.
    window: Duration,
}

impl Table {
    /// A table as the pipeline listed it (or as a state file had it).
    /// Impossible values are cleaned: negative counts become 0, the percent
    /// is recomputed.
    pub(crate) fn listed(mut progress: TableProgress, window: Duration, now: Instant) -> Self {
        progress.rows_copied = progress.rows_copied.max(0);
        progress.bytes_copied = progress.bytes_copied.max(0);
        progress.eta_sec = None;
        let copying = progress.status == TableStatus::Copying;
        let mut table = Table {
            copying: Stopwatch::resumed(progress.elapsed_sec, copying, now),
            rate: None,
            slowdown: Slowdown::default(),
            window,
            progress,
        };
        if copying {
            table.start_rate(now);
        }
        table.refresh_percent();
        table
    }

    /// A COPY worker picked the table up.
    pub(crate) fn started(&mut self, at: &Moment) {
        self.progress.status = TableStatus::Copying;
        self.copying = Stopwatch::started(at.instant);
        self.start_rate(at.instant);
        self.progress.last_progress_at = Some(at.wall);
        self.refresh_percent();
    }

    /// New absolute counts, in the copy's `context` (see
    /// [`Slowdown::record`]); returns how many rows and bytes were added (a
    /// restarted COPY that reports less adds nothing).
    pub(crate) fn progressed(
        &mut self,
        rows: i64,
        bytes: i64,
        at: &Moment,
        context: u64,
    ) -> (u64, u64) {
        if self.progress.status == TableStatus::Pending {
            // Progress without `table_started`: the copy is evidently running.
            self.progress.status = TableStatus::Copying;
            self.copying.start(at.instant);
            self.start_rate(at.instant);
        }
        let added = self.set_counts(rows, bytes);
        if let Some(rate) = &mut self.rate {
            rate.add(at.instant, added.0, added.1);
            let done = [self.progress.rows_copied, self.progress.bytes_copied].map(|d| d as u64);
            if self.slowdown.record(at.instant, done, context)
                && let Some(shift) = last_shift(rate, at.instant)
            {
                self.slowdown.shifted(shift, at.instant);
            }
        }
        self.progress.last_progress_at = Some(at.wall);
        self.refresh_percent();
        added
    }

    /// The copy finished with `rows` rows; returns the rows added.
    pub(crate) fn done(&mut self, rows: i64, at: &Moment) -> u64 {
        let (added, _) = self.set_counts(rows, self.progress.bytes_copied);
        self.progress.status = TableStatus::Copied;
        self.finish(at.instant);
        self.progress.last_progress_at = Some(at.wall);
        added
    }

    /// The table now receives live changes.
    pub(crate) fn streaming(&mut self, at: &Moment) {
        self.progress.status = TableStatus::Streaming;
        self.finish(at.instant);
    }

    /// `changes` more inserts, updates and deletes applied to the table.
    pub(crate) fn changes_applied(&mut self, changes: u64) {
        self.progress.changes_applied = self.progress.changes_applied.saturating_add(changes);
    }

    /// The published view at `now`, without its forecast (the copy's
    /// forecast fills that in, as it depends on every table).
    pub(crate) fn view(&self, now: Instant) -> TableProgress {
        let mut view = self.progress.clone();
        view.elapsed_sec = self.copying.seconds(now);
        view
    }

    /// Whether a COPY worker is on the table now.
    pub(crate) fn in_flight(&self) -> bool {
        self.progress.status == TableStatus::Copying && self.copying.is_running()
    }

    /// How fast the table is being copied, in rows and in bytes a second
    /// (see [`Pace::of_window`]); `None` unless it is in flight and measured.
    pub(crate) fn pace(&self, now: Instant) -> Option<[Pace; 2]> {
        let rate = self.rate.as_ref().filter(|_| self.in_flight())?;
        let paces = Pace::of_window(rate, now)?;
        Some([0, 1].map(|unit| paces[unit].slowing(self.slowdown.per_unit(unit))))
    }

    /// Keeps a listing's estimates when the pipeline lists a table again.
    pub(crate) fn update_estimates(&mut self, rows_total: i64, size_bytes: i64) {
        if rows_total > 0 {
            self.progress.rows_total = rows_total;
        }
        if size_bytes > 0 {
            self.progress.size_bytes = size_bytes;
        }
        self.refresh_percent();
    }

    fn set_counts(&mut self, rows: i64, bytes: i64) -> (u64, u64) {
        let (rows, bytes) = (rows.max(0), bytes.max(0));
        let added_rows = rows.saturating_sub(self.progress.rows_copied).max(0);
        let added_bytes = bytes.saturating_sub(self.progress.bytes_copied).max(0);
        self.progress.rows_copied = rows;
        self.progress.bytes_copied = bytes;
        (added_rows as u64, added_bytes as u64)
    }

    fn start_rate(&mut self, now: Instant) {
        // 5-second buckets: a table needs less resolution than the global
        // throughput, and there may be thousands.
        let mut rate = pace_window(self.window);
        // A zero entry at the start spreads the first progress report over
        // the time it took, instead of over one second.
        rate.add(now, 0, 0);
        self.rate = Some(rate);
        self.slowdown = Slowdown::default();
    }

    fn finish(&mut self, now: Instant) {
        self.copying.stop(now);
        self.rate = None;
        self.refresh_percent();
    }

    fn refresh_percent(&mut self) {
        self.progress.percent = percent(&self.progress);
    }
}

/// Completion in percent by the decided rules: 100 once copied; while
/// copying, rows over the row estimate, or bytes over the size when the
/// estimate is unknown, held at 99.9; 0 when nothing is known. Never NaN.
pub(crate) fn percent(progress: &TableProgress) -> f64 {
    match progress.status {
        TableStatus::Copied | TableStatus::Streaming => 100.0,
        TableStatus::Pending | TableStatus::Copying | TableStatus::Other(_) => {
            let ratio = if progress.rows_total > 0 {
                progress.rows_copied as f64 / progress.rows_total as f64
            } else if progress.size_bytes > 0 {
                progress.bytes_copied as f64 / progress.size_bytes as f64
            } else {
                0.0
            };
            (ratio * 100.0).clamp(0.0, HELD_PERCENT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn at(t0: Instant, secs: u64) -> Moment {
        Moment {
            instant: t0 + Duration::from_secs(secs),
            wall: OffsetDateTime::UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    fn table(rows_total: i64, size: i64) -> (Table, Instant) {
        let t0 = Instant::now();
        let progress = TableProgress::new("public", "t", rows_total, size);
        (Table::listed(progress, Duration::from_secs(60), t0), t0)
    }

    #[test]
    fn percent_follows_rows_and_holds_below_100_until_done() {
        let (mut t, t0) = table(1000, 0);
        t.started(&at(t0, 0));
        t.progressed(423, 0, &at(t0, 1), 0);
        assert!((t.progress.percent - 42.3).abs() < 1e-9);
        t.progressed(1000, 0, &at(t0, 2), 0);
        assert_eq!(t.progress.percent, 99.9);
        t.progressed(5000, 0, &at(t0, 3), 0);
        assert_eq!(t.progress.percent, 99.9);
        t.done(5000, &at(t0, 4));
        assert_eq!(t.progress.percent, 100.0);
    }

    #[test]
    fn unknown_row_estimate_falls_back_to_bytes() {
        let (mut t, t0) = table(-1, 1000);
        t.started(&at(t0, 0));
        t.progressed(77, 250, &at(t0, 1), 0);
        assert_eq!(t.progress.percent, 25.0);
    }

    #[test]
    fn nothing_known_stays_at_zero_until_done() {
        let (mut t, t0) = table(0, 0);
        t.started(&at(t0, 0));
        t.progressed(1_000_000, 1 << 30, &at(t0, 1), 0);
        assert_eq!(t.progress.percent, 0.0);
        t.done(1_000_000, &at(t0, 3));
        assert_eq!(t.progress.percent, 100.0);
    }

    #[test]
    fn elapsed_runs_while_copying_and_freezes_when_done() {
        let (mut t, t0) = table(10, 0);
        assert_eq!(t.view(at(t0, 5).instant).elapsed_sec, 0.0);
        t.started(&at(t0, 5));
        assert_eq!(t.view(at(t0, 8).instant).elapsed_sec, 3.0);
        t.done(10, &at(t0, 9));
        assert_eq!(t.view(at(t0, 100).instant).elapsed_sec, 4.0);
    }

    #[test]
    fn a_pace_needs_two_whole_buckets_and_is_the_windows_mean_with_their_spread() {
        let (mut t, t0) = table(10_000, 0);
        assert_eq!(t.pace(t0), None, "pending");
        t.started(&at(t0, 0));
        for s in 1..=12 {
            // 100 rows/s, then 300 rows/s from 6 s on.
            let rows = if s <= 6 { 100 * s } else { 600 + 300 * (s - 6) };
            t.progressed(rows as i64, 0, &at(t0, s), 0);
        }
        assert_eq!(t.pace(at(t0, 9).instant), None, "one whole bucket");
        let [rows, bytes] = t.pace(at(t0, 12).instant).unwrap();
        // Buckets [0, 5) 400 rows and [5, 10) 1,100: 80 and 220 rows/s;
        // too few to measure a shift by, so the pace is over all of them
        // and the current one (12 s, 2,400 rows).
        assert_eq!(rows.mean, 200.0);
        assert!((rows.slow - 94.0).abs() < 1e-9, "{rows:?}");
        assert!((rows.fast - 206.0).abs() < 1e-9, "{rows:?}");
        assert_eq!(bytes.mean, 0.0);
        t.done(10_000, &at(t0, 13));
        assert_eq!(t.pace(at(t0, 14).instant), None, "done");
    }

    #[test]
    fn progress_going_backwards_adds_nothing() {
        let (mut t, t0) = table(100, 100);
        t.started(&at(t0, 0));
        assert_eq!(t.progressed(50, 50, &at(t0, 1), 0), (50, 50));
        assert_eq!(t.progressed(10, 10, &at(t0, 2), 0), (0, 0));
        assert_eq!(t.progressed(-5, -5, &at(t0, 3), 0), (0, 0));
        assert_eq!(t.progress.rows_copied, 0);
        assert_eq!(t.progressed(60, 60, &at(t0, 4), 0), (60, 60));
    }

    #[test]
    fn progress_for_a_pending_table_marks_it_copying() {
        let (mut t, t0) = table(100, 0);
        t.progressed(10, 0, &at(t0, 1), 0);
        assert_eq!(t.progress.status, TableStatus::Copying);
        assert_eq!(t.progress.percent, 10.0);
    }
}
