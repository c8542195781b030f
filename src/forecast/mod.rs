//! When the copy will be done: each table in flight at its own recent
//! rate, the tables still waiting scheduled onto the workers as they come
//! free (largest first, as the pipeline takes them), and the answer the
//! time the last worker is done — never earlier than the latest table in
//! flight, which is where a plain "bytes left ÷ total rate" goes wrong.
//!
//! Every figure comes three times: at the recent rate (`mid`), and at the
//! fast and slow ends of how it has varied (`low`, `high`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use tokio::time::Instant;

use crate::rate::RateWindow;

/// A rate window over `window` (a minute by default) in buckets of 5 s,
/// to measure a pace with.
pub(crate) fn pace_window(window: Duration) -> RateWindow {
    let buckets = window.as_secs_f64() / PACE_BUCKET.as_secs_f64();
    let buckets = (buckets.ceil() as usize).clamp(MEASURED_BUCKETS + 1, 1_000);
    RateWindow::new(PACE_BUCKET * buckets as u32, buckets)
}

/// Buckets a pace is measured over: 5 s each.
const PACE_BUCKET: Duration = Duration::from_secs(5);
/// Whole buckets (10 s) seen before a pace is trusted: until then a
/// forecast is `measuring`.
const MEASURED_BUCKETS: usize = 2;
/// How far, in the buckets' own noise, the rate after a split of the
/// window must lie from the rate before it for the split to be a shift.
const SHIFT_SIGMAS: f64 = 3.0;
/// And how far as a fraction of the rate before: a smaller shift is not
/// worth a pace measured over less time.
const SHIFT_FRACTION: f64 = 0.2;

/// Three readings of one quantity: at the fast end of the recent rates,
/// at their mean, and at their slow end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Band {
    pub(crate) low: f64,
    pub(crate) mid: f64,
    pub(crate) high: f64,
}

/// A rate a second, three ways (`slow` ≤ `mean` ≤ `fast`), and how it
/// falls as the work goes on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pace {
    pub(crate) slow: f64,
    pub(crate) mean: f64,
    pub(crate) fast: f64,
    /// The change of the rate per unit of work done (0 or less: a copy
    /// into a table whose indexes grow slows down; one that speeds up is
    /// not counted on).
    pub(crate) trend: f64,
}

/// The rate a falling trend may bring a pace down to, at the least: a
/// quarter of what it is now.
const TREND_FLOOR: f64 = 0.25;
/// Whole buckets (20 s) a trend is fitted over, at the least.
const TREND_BUCKETS: usize = 4;

impl Pace {
    /// Seconds to do `left` at this pace: the middle at the mean, the band
    /// from the fast end to the slow end falling with the trend (infinite
    /// when the slow end is no progress at all); `None` when the mean is no
    /// progress. A trend fitted over a minute is too noisy to carry the
    /// middle over hours; it only widens the band's slow end.
    pub(crate) fn seconds(self, left: f64) -> Option<Band> {
        let left = left.max(0.0);
        let valid = |rate: f64| rate > 0.0 && rate.is_finite();
        if !valid(self.mean) {
            return None;
        }
        let fast = if valid(self.fast) {
            left / self.fast
        } else {
            f64::INFINITY
        };
        let falling = |rate: f64| match valid(rate) {
            true => time_falling(left, rate, self.trend.min(0.0)),
            false => f64::INFINITY,
        };
        let mid = left / self.mean;
        Some(Band {
            low: fast.min(mid),
            mid,
            high: falling(self.slow).max(mid),
        })
    }

    /// The pace of what `window` counted, in rows and in bytes, once it
    /// holds two whole buckets: its rate since the last shift of the rate
    /// (see [`since_shift`]; the whole window when there was none), the
    /// current bucket included, with the spread of the whole buckets.
    pub(crate) fn of_window(window: &RateWindow, now: Instant) -> Option<[Pace; 2]> {
        let buckets = window.bucket_rates(now);
        if buckets.len() < MEASURED_BUCKETS {
            return None;
        }
        let rows: Vec<f64> = buckets.iter().map(|b| b.rows_per_sec).collect();
        let bytes: Vec<f64> = buckets.iter().map(|b| b.bytes_per_sec).collect();
        // Shifts are seen in rows, or in bytes when no rows are counted.
        let by_rows = rows.iter().any(|&r| r > 0.0);
        let counted = if by_rows { &rows } else { &bytes };
        // The current bucket, once half of it has passed: what confirms a
        // shift seen in the newest whole bucket alone.
        let current = window
            .current_span(now)
            .filter(|span| *span >= PACE_BUCKET / 2)
            .map(|_| window.recent_rate(now, 0))
            .map(|rate| match by_rows {
                true => rate.rows_per_sec,
                false => rate.bytes_per_sec,
            });
        let recent = window.recent_rate(now, since_shift(counted, current));
        let seconds = PACE_BUCKET.as_secs_f64();
        Some([
            Pace::from_samples(recent.rows_per_sec, &rows, seconds),
            Pace::from_samples(recent.bytes_per_sec, &bytes, seconds),
        ])
    }

    /// This pace shared by `n`.
    pub(crate) fn split(self, n: usize) -> Pace {
        let n = n.max(1) as f64;
        Pace {
            slow: self.slow / n,
            mean: self.mean / n,
            fast: self.fast / n,
            // Each does a share of the work, at a share of the rate.
            trend: self.trend,
        }
    }

    /// The mean of `paces`, end by end; `None` when there are none.
    pub(crate) fn mean_of(paces: &[Pace]) -> Option<Pace> {
        let n = paces.len() as f64;
        let sum = |f: fn(&Pace) -> f64| paces.iter().map(f).sum::<f64>() / n;
        (!paces.is_empty()).then(|| Pace {
            slow: sum(|p| p.slow),
            mean: sum(|p| p.mean),
            fast: sum(|p| p.fast),
            trend: sum(|p| p.trend),
        })
    }

    /// The pace of `samples` (rates over spans of `seconds` each, oldest
    /// first) at `mean`: its slow and fast ends their 10th and 90th
    /// percentiles (`mean` kept between them), its trend the least-squares
    /// slope of the rates over the work done (over 20 s at least).
    pub(crate) fn from_samples(mean: f64, samples: &[f64], seconds: f64) -> Pace {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let quantile = |q: f64| {
            if sorted.is_empty() {
                return mean;
            }
            let at = q * (sorted.len() - 1) as f64;
            let (below, above) = (sorted[at.floor() as usize], sorted[at.ceil() as usize]);
            below + (above - below) * at.fract()
        };
        Pace {
            slow: quantile(0.1).min(mean),
            mean,
            fast: quantile(0.9).max(mean),
            trend: trend(samples, seconds).min(0.0),
        }
    }
}

/// How many of the newest `samples` (rates over equal spans, oldest
/// first) a pace is the mean of: those since the last shift of the rate
/// (a throttle, a neighbour taking the cores, a table left alone), else
/// all of them. A split of the samples is a shift when the mean after it
/// lies [`SHIFT_SIGMAS`] standard errors and [`SHIFT_FRACTION`] of the
/// rate away from the mean before it, every sample since shifted the same
/// way by that fraction too (but the newest, which may begin the next
/// shift), over 10 s at least (two samples, or one and `current`, the
/// rate of at least half a sample since, shifted alike): one slow bucket
/// is not taken for a new pace. The noise is measured from successive
/// differences (1.4826 × their median ÷ √2), which a shift hardly moves,
/// where a spread would count the shift itself as noise. The clearest
/// split is taken, then the clearest after it, until none is left.
fn since_shift(samples: &[f64], current: Option<f64>) -> usize {
    let mut steps: Vec<f64> = samples.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    steps.retain(|s| s.is_finite());
    if steps.len() < 2 {
        return samples.len();
    }
    steps.sort_by(f64::total_cmp);
    let sigma = 1.4826 * steps[steps.len() / 2] / std::f64::consts::SQRT_2;
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    let mut start = 0;
    loop {
        let rest = &samples[start..];
        let clearest = (1..rest.len())
            .filter_map(|split| {
                let (before, after) = rest.split_at(split);
                let (was, is) = (mean(before), mean(after));
                let away = |rate: f64| (rate - was) * (is - was).signum() > SHIFT_FRACTION * was;
                let confirmed = after.len() >= MEASURED_BUCKETS || current.is_some_and(away);
                // The newest may begin the next shift.
                let settled = &after[..after.len().saturating_sub(1).max(1)];
                if !confirmed || !settled.iter().all(|&rate| away(rate)) {
                    return None;
                }
                let error = sigma * (1.0 / before.len() as f64 + 1.0 / after.len() as f64).sqrt();
                let shift = (is - was).abs();
                let sigmas = match error > 0.0 {
                    true => shift / error,
                    false => f64::INFINITY,
                };
                (shift > SHIFT_FRACTION * was && sigmas > SHIFT_SIGMAS).then_some((split, sigmas))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match clearest {
            Some((split, _)) => start += split,
            None => return samples.len() - start,
        }
    }
}

/// The slope of the rates `samples` (over spans of `seconds`, oldest
/// first) against the work done by the middle of each span; 0 with fewer
/// than [`TREND_BUCKETS`] or no work.
fn trend(samples: &[f64], seconds: f64) -> f64 {
    if samples.len() < TREND_BUCKETS {
        return 0.0;
    }
    let mut done = 0.0;
    let points: Vec<(f64, f64)> = samples
        .iter()
        .map(|&rate| {
            let middle = done + rate * seconds / 2.0;
            done += rate * seconds;
            (middle, rate)
        })
        .collect();
    slope(&points).unwrap_or(0.0)
}

/// The least-squares slope of `points` (x, y); `None` when it is not a
/// number (fewer than two distinct x).
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (cov, var) = points.iter().fold((0.0, 0.0), |(c, v), p| {
        (c + (p.0 - mx) * (p.1 - my), v + (p.0 - mx) * (p.0 - mx))
    });
    let slope = cov / var;
    slope.is_finite().then_some(slope)
}

/// Seconds to do `left` from `rate`, the rate changing by `trend` (≤ 0)
/// per unit done, down to [`TREND_FLOOR`] of `rate` at the least:
/// `∫ dx / (rate + trend·x)`.
fn time_falling(left: f64, rate: f64, trend: f64) -> f64 {
    let floor = rate * TREND_FLOOR;
    if trend >= 0.0 || !trend.is_finite() {
        return left / rate;
    }
    let to_floor = (floor - rate) / trend;
    if left <= to_floor {
        ((rate + trend * left) / rate).ln() / trend
    } else {
        (floor / rate).ln() / trend + (left - to_floor) / floor
    }
}

/// How much of the copy's throughput the tables in flight share: with
/// `k` tables in flight instead of the `now` there are, each goes
/// `(now / k)^(1 − elasticity)` times as fast. An elasticity of 1 is a
/// copy bound by its workers (a table's rate is its own, whatever the
/// others do); 0 is one bound by a shared resource (CPU, disk, network:
/// a table left alone takes all of the throughput).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sharing {
    pub(crate) now: usize,
    pub(crate) elasticity: f64,
}

impl Sharing {
    fn speed(self, k: usize) -> f64 {
        if self.now == 0 || k == 0 {
            return 1.0;
        }
        (self.now as f64 / k as f64).powf(1.0 - self.elasticity.clamp(0.0, 1.0))
    }

    /// The elasticity that explains throughputs `(tables in flight, mean
    /// throughput)` seen at two or more counts: fitted between the two
    /// counts seen longest; `None` with fewer.
    pub(crate) fn fit(seen: &[(usize, f64)]) -> Option<f64> {
        let [(n1, x1), (n2, x2)] = [*seen.first()?, *seen.get(1)?];
        let ratio = (n1 as f64 / n2 as f64).ln();
        (n1 != n2 && x1 > 0.0 && x2 > 0.0 && ratio != 0.0)
            .then(|| ((x1 / x2).ln() / ratio).clamp(0.0, 1.0))
    }
}

/// When each table is done, in seconds from now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finish {
    /// Each table in flight, in the order given.
    pub(crate) in_flight: Vec<f64>,
    /// Each waiting table, in the order given.
    pub(crate) waiting: Vec<f64>,
    /// The last of them.
    pub(crate) last: f64,
}

/// When the work is done on `workers` workers: the tables in flight take
/// `in_flight[i]` seconds at the speed they go now, each waiting table,
/// largest first, goes to the worker free first and takes `waiting[j]`
/// seconds at a worker's speed now, and every speed changes with the
/// number in flight as `sharing` says.
pub(crate) fn schedule(
    in_flight: &[f64],
    waiting: &[f64],
    workers: usize,
    sharing: Sharing,
) -> Finish {
    let workers = workers.max(in_flight.len()).max(1);
    // No work below zero, and none in what is not a number.
    let waiting: Vec<f64> = waiting.iter().map(|w| w.max(0.0)).collect();
    let mut queue: Vec<usize> = (0..waiting.len()).collect();
    queue.sort_by(|&a, &b| waiting[a].total_cmp(&waiting[b]));
    // Every table running goes at the same speed, so their order of
    // finishing never changes: each is kept by the work done (in seconds at
    // today's speed) at which it ends, the soonest first. The bits of a
    // non-negative float order as the float does.
    let ends = |work: f64| work.max(0.0).to_bits();
    let mut running: BinaryHeap<Reverse<(u64, Result<usize, usize>)>> = in_flight
        .iter()
        .enumerate()
        .map(|(i, &t)| Reverse((ends(t), Ok(i))))
        .collect();
    let mut done = Finish {
        in_flight: vec![0.0; in_flight.len()],
        waiting: vec![0.0; waiting.len()],
        last: 0.0,
    };
    let (mut clock, mut work) = (0.0, 0.0);
    loop {
        while running.len() < workers
            && let Some(j) = queue.pop()
        {
            running.push(Reverse((ends(work + waiting[j]), Err(j))));
        }
        let speed = sharing.speed(running.len());
        let Some(Reverse((end, table))) = running.pop() else {
            break;
        };
        let end = f64::from_bits(end);
        clock += (end - work) / speed;
        work = end;
        match table {
            Ok(i) => done.in_flight[i] = clock,
            Err(j) => done.waiting[j] = clock,
        }
    }
    done.last = clock;
    done
}

/// Readings of one quantity over time, kept over a window, and how fast
/// it changes: the least-squares slope of the readings in the window.
#[derive(Debug, Clone)]
pub(crate) struct Slope {
    window: Duration,
    readings: std::collections::VecDeque<(Instant, f64)>,
}

/// Readings a [`Slope`] keeps at most: one every window ÷ 240 or more.
const SLOPE_READINGS: usize = 240;
/// The span readings must cover before a slope is given.
const SLOPE_SPAN: Duration = Duration::from_secs(10);

impl Slope {
    pub(crate) fn new(window: Duration) -> Slope {
        Slope {
            window,
            readings: std::collections::VecDeque::new(),
        }
    }

    /// `value` read at `now`. The newest reading replaces the one before
    /// while that one is closer than the window ÷ 240 to the reading kept
    /// before it, so memory stays bounded whatever the rate.
    pub(crate) fn record(&mut self, now: Instant, value: f64) {
        if !value.is_finite() {
            return;
        }
        let spacing = self.window / SLOPE_READINGS as u32;
        let kept = self
            .readings
            .len()
            .checked_sub(2)
            .map(|i| self.readings[i].0);
        if kept.is_some_and(|kept| now.saturating_duration_since(kept) < spacing) {
            self.readings.pop_back();
        }
        self.readings.push_back((now, value));
        while self
            .readings
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > self.window)
        {
            self.readings.pop_front();
        }
    }

    /// Forgets every reading (what it measured started afresh).
    pub(crate) fn clear(&mut self) {
        self.readings.clear();
    }

    /// The change a second over the window at `now`; `None` before three
    /// readings 10 s apart or more.
    pub(crate) fn per_second(&self, now: Instant) -> Option<f64> {
        let live: Vec<(f64, f64)> = self
            .readings
            .iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= self.window)
            .map(|(at, value)| (-now.saturating_duration_since(*at).as_secs_f64(), *value))
            .collect();
        let span = live.first()?.0.abs() - live.last()?.0.abs();
        if live.len() < 3 || span < SLOPE_SPAN.as_secs_f64() {
            return None;
        }
        slope(&live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: Sharing = Sharing {
        now: 0,
        elasticity: 1.0,
    };

    #[test]
    fn the_last_table_in_flight_bounds_the_finish_from_below() {
        // One table with 18 s left, one worker idle, nothing waiting: 18 s,
        // not (bytes left ÷ both workers' rate).
        assert_eq!(schedule(&[18.0], &[], 2, OWN).last, 18.0);
        assert_eq!(schedule(&[], &[], 4, OWN).last, 0.0);
    }

    #[test]
    fn waiting_tables_go_largest_first_to_the_worker_free_first() {
        // Workers free at 2 s and 10 s; tables of 4 s, 8 s and 1 s waiting:
        // 8 s at 2 → 10, 4 s at 10 → 14, 1 s at 10 → 11.
        let finish = schedule(&[2.0, 10.0], &[4.0, 8.0, 1.0], 2, OWN);
        assert_eq!(finish.in_flight, [2.0, 10.0]);
        assert_eq!(finish.waiting, [14.0, 10.0, 11.0]);
        assert_eq!(finish.last, 14.0);
        // More workers than tables in flight start the waiting ones now.
        let finish = schedule(&[5.0], &[3.0, 3.0], 3, OWN);
        assert_eq!((finish.waiting, finish.last), (vec![3.0, 3.0], 5.0));
        // Fewer workers said than tables in flight: each in flight has one.
        assert_eq!(schedule(&[1.0, 1.0, 1.0], &[1.0], 1, OWN).last, 2.0);
    }

    #[test]
    fn a_falling_trend_slows_the_slow_end_down_to_a_quarter_of_the_rate_at_most() {
        // 100 units a second, falling by 0.5 a second per unit done: the
        // rate reaches 25 (a quarter) after 150 units; the rest at 25.
        let to_floor = (0.25f64).ln() / -0.5;
        assert!((time_falling(150.0, 100.0, -0.5) - to_floor).abs() < 1e-9);
        assert!((time_falling(250.0, 100.0, -0.5) - (to_floor + 100.0 / 25.0)).abs() < 1e-9);
        assert_eq!(time_falling(100.0, 100.0, 0.0), 1.0, "no trend");
        let pace = Pace {
            slow: 50.0,
            mean: 100.0,
            fast: 200.0,
            trend: -0.5,
        };
        let band = pace.seconds(250.0).unwrap();
        assert_eq!(
            (band.low, band.mid),
            (1.25, 2.5),
            "the trend only slows the slow end"
        );
        assert!(band.high > 250.0 / 50.0, "{band:?}");
    }

    #[test]
    fn ten_thousand_tables_in_flight_finish_each_at_its_own_time() {
        // A state file may list every table as copying: one pass each.
        let times: Vec<f64> = (0..10_000).rev().map(f64::from).collect();
        let finish = schedule(&times, &[f64::NAN, 1.0], 1, OWN);
        assert_eq!(finish.in_flight, times);
        // The 1 s table takes the worker free at 0 s; the NaN one (no work)
        // the next, at 1 s.
        assert_eq!(finish.waiting, [1.0, 1.0], "NaN is no work");
        let infinite = schedule(&[f64::INFINITY, 1.0], &[], 2, OWN);
        assert_eq!(infinite.in_flight, [f64::INFINITY, 1.0]);
    }

    #[test]
    fn a_shared_throughput_goes_to_the_tables_left_in_flight() {
        // Two tables of 10 s and 30 s at today's speed on a shared resource:
        // once the first is done the second goes twice as fast, so its
        // last 20 s take 10.
        let shared = Sharing {
            now: 2,
            elasticity: 0.0,
        };
        let finish = schedule(&[10.0, 30.0], &[], 2, shared);
        assert_eq!((finish.in_flight, finish.last), (vec![10.0, 20.0], 20.0));
        let halfway = Sharing {
            now: 2,
            elasticity: 0.5,
        };
        let last = schedule(&[10.0, 30.0], &[], 2, halfway).last;
        assert!((last - (10.0 + 20.0 / 2f64.sqrt())).abs() < 1e-9, "{last}");
        // A waiting table started by a free worker keeps the count.
        assert_eq!(schedule(&[10.0, 30.0], &[20.0], 2, shared).last, 30.0);
    }

    #[test]
    fn the_elasticity_is_fitted_from_two_counts_in_flight() {
        assert_eq!(Sharing::fit(&[(2, 100.0)]), None);
        assert_eq!(Sharing::fit(&[(2, 100.0), (1, 50.0)]), Some(1.0));
        assert_eq!(Sharing::fit(&[(2, 100.0), (1, 100.0)]), Some(0.0));
        let e = Sharing::fit(&[(2, 100.0), (1, 75.0)]).unwrap();
        assert!((e - (4.0f64 / 3.0).ln() / 2f64.ln()).abs() < 1e-9);
        assert_eq!(
            Sharing::fit(&[(2, 100.0), (1, 200.0)]),
            Some(0.0),
            "clamped"
        );
    }

    #[test]
    fn a_pace_keeps_its_mean_inside_its_quantiles_and_refuses_a_zero_rate() {
        let pace = Pace::from_samples(10.0, &[12.0, 8.0, 10.0, 9.0, 11.0], 5.0);
        assert!((pace.slow - 8.4).abs() < 1e-9 && (pace.fast - 11.6).abs() < 1e-9);
        let band = pace.seconds(100.0).unwrap();
        assert!(band.low < band.mid && band.mid == 10.0 && band.mid < band.high);
        assert_eq!(
            Pace::from_samples(5.0, &[], 5.0).seconds(10.0).unwrap().mid,
            2.0
        );
        let gaps = Pace::from_samples(1.0, &[0.0, 0.0, 5.0], 5.0);
        let band = gaps.seconds(10.0).unwrap();
        assert_eq!((band.mid, band.high), (10.0, f64::INFINITY));
        assert_eq!(Pace::from_samples(0.0, &[0.0], 5.0).seconds(10.0), None);
        let nan = Pace {
            slow: 1.0,
            mean: f64::NAN,
            fast: 1.0,
            trend: 0.0,
        };
        assert_eq!(nan.seconds(1.0), None);
        let both = Pace::mean_of(&[pace, Pace::from_samples(20.0, &[], 5.0)]).unwrap();
        assert_eq!(both.mean, 15.0);
        assert_eq!(Pace::mean_of(&[]), None);
    }

    #[test]
    fn a_pace_is_measured_since_the_last_shift_of_the_rate_confirmed_by_ten_seconds() {
        // Slow at first, fast for a while, then halved: the early slow
        // buckets must not hide the halving as noise.
        let run = [350.0, 330.0, 360.0, 700.0, 720.0, 690.0, 710.0, 700.0];
        assert_eq!(since_shift(&run, None), 5, "since it went fast");
        let halved = [run.as_slice(), &[360.0]].concat();
        assert_eq!(since_shift(&halved, None), 6, "one slow bucket: not yet");
        assert_eq!(since_shift(&halved, Some(700.0)), 6, "and it recovered");
        assert_eq!(
            since_shift(&halved, Some(340.0)),
            1,
            "confirmed by the current one"
        );
        let halved = [run.as_slice(), &[360.0, 340.0]].concat();
        assert_eq!(since_shift(&halved, None), 2, "two slow buckets");
        // Noise the size of the run's own, or a shift under a fifth of
        // the rate: the whole window.
        let steady = [700.0, 650.0, 720.0, 660.0, 710.0, 640.0, 700.0];
        assert_eq!(since_shift(&steady, None), 7);
        assert_eq!(since_shift(&[100.0, 100.0, 100.0, 85.0, 85.0], None), 5);
        assert_eq!(since_shift(&[100.0, 100.0, 100.0, 75.0, 75.0], None), 2);
        assert_eq!(since_shift(&[100.0, 50.0], None), 2, "no noise measured");
        assert_eq!(since_shift(&[f64::NAN, 1.0, f64::NAN], Some(1.0)), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paces_mean_is_the_rate_since_a_shift_and_its_band_what_was_seen() {
        let t0 = Instant::now();
        let mut window = pace_window(Duration::from_secs(60));
        // 1,000 rows a second for 30 s, with some noise, then 400.
        for tenth in 0..400u64 {
            let rate = match tenth < 300 {
                true => 1_000 + (tenth % 7) * 20,
                false => 400,
            };
            window.add(t0 + Duration::from_millis(tenth * 100), rate / 10, rate);
        }
        let [rows, _] = Pace::of_window(&window, t0 + Duration::from_secs(40)).unwrap();
        assert!((rows.mean - 400.0).abs() < 1.0, "{rows:?}");
        assert!(rows.fast > 1_000.0, "{rows:?}");
    }

    #[test]
    fn a_slope_needs_ten_seconds_of_readings_and_keeps_a_bounded_window() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut slope = Slope::new(Duration::from_secs(60));
        slope.record(at(0.0), 1000.0);
        slope.record(at(5.0), 900.0);
        slope.record(at(9.0), 820.0);
        assert_eq!(slope.per_second(at(9.0)), None, "9 s of readings");
        slope.record(at(10.0), 800.0);
        let per_second = slope.per_second(at(10.0)).unwrap();
        assert!((per_second + 20.0).abs() < 1e-9, "{per_second}");
        slope.record(at(10.0), f64::NAN);
        assert_eq!(
            slope.readings.back(),
            Some(&(at(10.0), 800.0)),
            "not a reading"
        );
        // A thousand readings a second keep at most one per 250 ms.
        for ms in 0..100_000u64 {
            slope.record(at(10.0 + ms as f64 / 1000.0), 800.0 - ms as f64 / 50.0);
        }
        assert!(
            slope.readings.len() <= SLOPE_READINGS + 2,
            "{}",
            slope.readings.len()
        );
        let per_second = slope.per_second(at(110.0)).unwrap();
        assert!((per_second + 20.0).abs() < 0.1, "{per_second}");
        // Older than the window: gone.
        assert_eq!(slope.per_second(at(500.0)), None);
    }
}
