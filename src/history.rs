//! The headline series over time, in fixed memory: 10-second points for
//! the last hour, 1-minute points for the last day and 10-minute points for
//! the last week (2,808 points, about 170 KB, whatever the run's length).
//! Each point is the mean of the snapshots in its interval (tables copied:
//! the last), so a coarse point does not hide a spike's level entirely and
//! never invents one.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::serde_util::timestamp;
use crate::model::{Eta, Snapshot};

/// How far back a forecast's drift is measured.
const DRIFT_OVER: Duration = Duration::from_secs(3600);

/// One point of the history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// The start of the point's interval.
    #[serde(with = "timestamp")]
    pub timestamp: OffsetDateTime,
    /// WAL not yet applied, in bytes.
    pub lag_bytes: f64,
    /// Time lag, in seconds.
    pub lag_seconds: f64,
    /// Rows applied per second.
    pub rows_per_sec: f64,
    /// Bytes applied per second.
    pub bytes_per_sec: f64,
    /// Bytes copied per second.
    pub copy_bytes_per_sec: f64,
    /// Tables copied, at the end of the interval.
    pub tables_copied: u64,
    /// When the copy was forecast to finish, as seconds since the Unix
    /// epoch (the mean of the interval's forecasts); absent when none was
    /// made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_finish_at: Option<f64>,
}

/// A resolution and how many points of it are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tier {
    step: Duration,
    keep: usize,
}

/// 10 s for an hour, 1 min for a day, 10 min for a week.
const TIERS: [Tier; 3] = [
    Tier {
        step: Duration::from_secs(10),
        keep: 360,
    },
    Tier {
        step: Duration::from_secs(60),
        keep: 1440,
    },
    Tier {
        step: Duration::from_secs(600),
        keep: 1008,
    },
];

/// The mean of the snapshots seen in one interval so far.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct Open {
    /// The interval's number (seconds since the epoch / step).
    slot: i64,
    count: u32,
    sums: [f64; 5],
    tables_copied: u64,
    /// The forecast finishes seen, summed, and how many.
    #[serde(default)]
    finishes: (f64, u32),
}

impl Open {
    fn point(&self, step: Duration) -> HistoryPoint {
        let mean = |i: usize| self.sums[i] / f64::from(self.count.max(1));
        HistoryPoint {
            timestamp: OffsetDateTime::UNIX_EPOCH
                + Duration::from_secs((self.slot.max(0) as u64) * step.as_secs()),
            lag_bytes: mean(0),
            lag_seconds: mean(1),
            rows_per_sec: mean(2),
            bytes_per_sec: mean(3),
            copy_bytes_per_sec: mean(4),
            tables_copied: self.tables_copied,
            copy_finish_at: (self.finishes.1 > 0)
                .then(|| self.finishes.0 / f64::from(self.finishes.1)),
        }
    }
}

/// The history of one migration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct History {
    /// Finished points per tier, oldest first.
    tiers: [VecDeque<HistoryPoint>; 3],
    /// The interval each tier is filling.
    #[serde(default)]
    open: [Option<Open>; 3],
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Adds `snapshot` (at its own timestamp); returns whether a point was
    /// finished (the history readers see changed). A snapshot older than
    /// the interval being filled (a clock that stepped back) is ignored;
    /// a value that is not finite counts as 0.
    pub fn record(&mut self, snapshot: &Snapshot) -> bool {
        let seconds = snapshot.timestamp.unix_timestamp();
        let values = [
            snapshot.lag_bytes as f64,
            snapshot.lag_seconds,
            snapshot.rows_per_sec,
            snapshot.bytes_per_sec,
            snapshot.copy_bytes_per_sec,
        ]
        .map(|v| if v.is_finite() { v } else { 0.0 });
        let finish = snapshot
            .eta
            .and_then(|eta| eta.finish_at(snapshot.timestamp))
            .filter(|f| f.is_finite());
        let mut finished = false;
        for (index, tier) in TIERS.iter().enumerate() {
            let slot = seconds.div_euclid(tier.step.as_secs() as i64);
            let open = &mut self.open[index];
            match open {
                Some(current) if current.slot == slot => {}
                Some(current) if current.slot > slot => continue,
                Some(current) => {
                    let points = &mut self.tiers[index];
                    points.push_back(current.point(tier.step));
                    if points.len() > tier.keep {
                        points.pop_front();
                    }
                    finished = true;
                    *open = None;
                }
                None => {}
            }
            let current = open.get_or_insert(Open {
                slot,
                ..Open::default()
            });
            current.count += 1;
            for (sum, value) in current.sums.iter_mut().zip(values) {
                *sum += value;
            }
            current.tables_copied = snapshot.tables_copied as u64;
            if let Some(finish) = finish {
                current.finishes.0 += finish;
                current.finishes.1 += 1;
            }
        }
        finished
    }

    /// How far `eta`'s finish, forecast at `now`, has moved from the one
    /// forecast an hour before (or the first one since, if later), in
    /// seconds: positive when it slipped later; `None` without both.
    pub fn drift(&self, eta: &Eta, now: OffsetDateTime) -> Option<f64> {
        let finish = eta.finish_at(now)?;
        // The finest tier holds the last hour, point by point.
        let earliest = self.tiers[0]
            .iter()
            .filter(|p| p.timestamp >= now - DRIFT_OVER)
            .find_map(|p| p.copy_finish_at)?;
        let drift = finish - earliest;
        drift.is_finite().then_some(drift)
    }

    /// The points from `since` on, oldest first, at least `step` apart:
    /// the finest resolution that reaches back to each instant (10 s for
    /// the last hour, then 1 min, then 10 min).
    pub fn points(&self, since: OffsetDateTime, step: Duration) -> Vec<HistoryPoint> {
        let mut out: Vec<HistoryPoint> = Vec::new();
        // Coarsest first, each finer tier taking over where it starts.
        for index in (0..TIERS.len()).rev() {
            let finer_start = (0..index)
                .filter_map(|i| self.tiers[i].front())
                .map(|p| p.timestamp)
                .min();
            for point in &self.tiers[index] {
                if point.timestamp < since || finer_start.is_some_and(|s| point.timestamp >= s) {
                    continue;
                }
                if out
                    .last()
                    .is_some_and(|last| point.timestamp <= last.timestamp)
                {
                    continue;
                }
                out.push(*point);
            }
        }
        if step.is_zero() {
            return out;
        }
        let mut spaced: Vec<HistoryPoint> = Vec::with_capacity(out.len());
        for point in out {
            let far_enough = spaced
                .last()
                .is_none_or(|last| point.timestamp - last.timestamp >= step);
            if far_enough {
                spaced.push(point);
            }
        }
        spaced
    }

    /// The same history within its bounds, whatever file it came from:
    /// each tier's points in time order, without repeats, at most its
    /// share (the newest kept).
    pub(crate) fn sanitized(mut self) -> History {
        for (points, tier) in self.tiers.iter_mut().zip(TIERS) {
            let mut sorted: Vec<HistoryPoint> = points.drain(..).collect();
            sorted.sort_by_key(|p| p.timestamp);
            sorted.dedup_by_key(|p| p.timestamp);
            let skip = sorted.len().saturating_sub(tier.keep);
            points.extend(sorted.into_iter().skip(skip));
        }
        self
    }

    /// How many points are kept, in all tiers.
    pub fn len(&self) -> usize {
        self.tiers.iter().map(VecDeque::len).sum()
    }

    /// Whether no point is kept yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, lag: u64) -> Snapshot {
        Snapshot {
            timestamp: OffsetDateTime::UNIX_EPOCH + Duration::from_secs(seconds as u64),
            lag_bytes: lag,
            tables_copied: (seconds / 100) as usize,
            ..Snapshot::default()
        }
    }

    #[test]
    fn points_are_the_mean_of_their_interval() {
        let mut history = History::new();
        assert!(!history.record(&at(1_000_000, 100)));
        history.record(&at(1_000_004, 300));
        assert!(history.record(&at(1_000_010, 0)), "a point finished");
        let points = history.points(OffsetDateTime::UNIX_EPOCH, Duration::ZERO);
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].lag_bytes, 200.0);
        assert_eq!(points[0].timestamp.unix_timestamp(), 1_000_000);
    }

    #[test]
    fn a_week_at_one_snapshot_a_second_stays_in_bounded_memory() {
        let mut history = History::new();
        let start = 1_700_000_000;
        let week = 7 * 86_400;
        for s in (0..week + 3600).step_by(2) {
            history.record(&at(start + s, s as u64));
        }
        assert_eq!(history.len(), 360 + 1440 + 1008);
        let end = OffsetDateTime::UNIX_EPOCH + Duration::from_secs((start + week + 3600) as u64);
        let all = history.points(OffsetDateTime::UNIX_EPOCH, Duration::ZERO);
        // Oldest first, strictly increasing, and reaching back a week.
        assert!(all.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
        assert!(end - all[0].timestamp >= time::Duration::days(7));
        // The last hour at 10 s, the day before at 1 min.
        let hour = history.points(end - Duration::from_secs(3600), Duration::ZERO);
        assert!(
            hour.windows(2)
                .all(|w| w[1].timestamp - w[0].timestamp == time::Duration::seconds(10))
        );
        let day = history.points(end - Duration::from_secs(86_400), Duration::from_secs(300));
        assert!(
            day.windows(2)
                .all(|w| w[1].timestamp - w[0].timestamp >= time::Duration::minutes(5))
        );
        assert!(day.len() >= 280 && day.len() <= 290, "{}", day.len());
    }

    #[test]
    fn the_forecast_finish_drifts_from_the_one_an_hour_ago_or_the_first() {
        use crate::model::EtaState;
        let eta = |seconds: f64| Eta {
            state: EtaState::Estimating,
            seconds: Some(seconds),
            ..Eta::default()
        };
        let start = 1_700_000_000;
        let mut history = History::new();
        let now = |s: i64| OffsetDateTime::UNIX_EPOCH + Duration::from_secs((start + s) as u64);
        // For 20 minutes the forecast says 1,000 s left while 1 s passes
        // for every 2 s: the finish slips by half the time gone.
        for s in (0..1200).step_by(10) {
            let mut snapshot = at(start + s, 0);
            snapshot.eta = Some(eta(1000.0 + s as f64 / 2.0));
            history.record(&snapshot);
        }
        let drift = history.drift(&eta(1600.0), now(1200)).unwrap();
        assert!((drift - 1800.0).abs() < 1e-6, "{drift}");
        let back: History =
            serde_json::from_str(&serde_json::to_string(&history).unwrap()).unwrap();
        assert_eq!(
            back.drift(&eta(1600.0), now(1200)),
            Some(drift),
            "kept in the file"
        );
        // Then the finish holds for two hours: only the last hour counts.
        for s in (1200..7200).step_by(10) {
            let mut snapshot = at(start + s, 0);
            snapshot.eta = Some(eta((8200 - s) as f64));
            history.record(&snapshot);
        }
        let steady = history.drift(&eta(1000.0), now(7200)).unwrap();
        assert!(steady.abs() < 11.0, "{steady}");
        assert_eq!(
            history.drift(&Eta::bare(EtaState::Measuring), now(7200)),
            None
        );
        assert_eq!(History::new().drift(&eta(10.0), now(0)), None);
    }

    #[test]
    fn a_clock_that_steps_back_and_nan_do_not_corrupt_it() {
        let mut history = History::new();
        history.record(&at(1_000_100, 10));
        history.record(&at(1_000_000, 99_999));
        let mut nan = at(1_000_105, 10);
        nan.lag_seconds = f64::NAN;
        history.record(&nan);
        history.record(&at(1_000_200, 0));
        let since = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_100);
        let points = history.points(since, Duration::ZERO);
        assert_eq!(
            points[0].lag_bytes, 10.0,
            "the step back is not in the 10 s point"
        );
        assert_eq!(points[0].lag_seconds, 0.0, "NaN counts as 0");
        let json = serde_json::to_string(&history).unwrap();
        let back: History = serde_json::from_str(&json).unwrap();
        assert_eq!(back, history);
    }
}
