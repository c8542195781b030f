//! A rate a second, three ways, measured since the rate last shifted, and
//! the time it takes to do what is left at it.

use tokio::time::Instant;

use super::slope::slope;
use super::{Band, MEASURED_BUCKETS, PACE_BUCKET};
use crate::rate::RateWindow;

/// How far, in the buckets' own noise, the rate after a split of the
/// window must lie from the rate before it for the split to be a shift.
const SHIFT_SIGMAS: f64 = 3.0;
/// And how far as a fraction of the rate before: a smaller shift is not
/// worth a pace measured over less time.
const SHIFT_FRACTION: f64 = 0.2;

/// A rate a second, three ways (`slow` ≤ `mean` ≤ `fast`), and how it
/// falls as the work goes on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pace {
    pub(crate) slow: f64,
    pub(crate) mean: f64,
    pub(crate) fast: f64,
    /// The change of the rate per unit of work done over the recent
    /// buckets (0 or less: a copy into a table whose indexes grow slows
    /// down; one that speeds up is not counted on).
    pub(crate) trend: f64,
    /// The same over the whole time since the copy's circumstances last
    /// changed, where it was certain (see [`super::Slowdown`]); 0 when not.
    pub(crate) slowing: f64,
}

/// The rate a falling trend may bring a pace down to, at the least: a
/// quarter of what it is now.
const TREND_FLOOR: f64 = 0.25;
/// Whole buckets (20 s) a trend is fitted over, at the least.
const TREND_BUCKETS: usize = 4;

impl Pace {
    /// Seconds to do `left` at this pace: the middle at the mean falling
    /// with the slowdown, the band from the fast end to the slow end
    /// falling with the trend or the slowdown, whichever falls faster
    /// (infinite when the slow end is no progress at all); `None` when the
    /// mean is no progress. A trend fitted over a minute is too noisy to
    /// carry the middle over hours; it only widens the band's slow end.
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
        let slowing = self.slowing.min(0.0);
        let falling = |rate: f64| match valid(rate) {
            true => time_falling(left, rate, self.trend.min(slowing)),
            false => f64::INFINITY,
        };
        let mid = time_falling(left, self.mean, slowing);
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
        let measured = Measured::of(window, now)?;
        let recent = window.recent_rate(now, measured.since_shift);
        let seconds = PACE_BUCKET.as_secs_f64();
        Some([
            Pace::from_samples(recent.rows_per_sec, &measured.rows, seconds),
            Pace::from_samples(recent.bytes_per_sec, &measured.bytes, seconds),
        ])
    }

    /// This pace slowing down by `per_unit` from its mean on (see
    /// [`Pace::slowing`]). The mean is not first carried from the middle
    /// of the minute it was measured over to now along the slowdown: a
    /// line through a fall that eases off (a B-tree's cost grows as the
    /// logarithm of its size; an index outgrows memory once) overshoots
    /// it, and on the recorded copies that overshoot cost more than the
    /// half-minute's lag.
    pub(crate) fn slowing(self, per_unit: f64) -> Pace {
        Pace {
            slowing: per_unit,
            ..self
        }
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
            slowing: self.slowing,
        }
    }

    /// The mean of `paces`, end by end, for another table: without their
    /// slowdowns, which are theirs; `None` when there are none.
    pub(crate) fn mean_of(paces: &[Pace]) -> Option<Pace> {
        let n = paces.len() as f64;
        let sum = |f: fn(&Pace) -> f64| paces.iter().map(f).sum::<f64>() / n;
        (!paces.is_empty()).then(|| Pace {
            slow: sum(|p| p.slow),
            mean: sum(|p| p.mean),
            fast: sum(|p| p.fast),
            trend: sum(|p| p.trend),
            slowing: 0.0,
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
            slowing: 0.0,
        }
    }
}

/// When the rate of what `window` counts last shifted (see
/// [`since_shift`]): the start of the first bucket since; `None` while it
/// is measuring or when the whole window is one pace.
pub(crate) fn last_shift(window: &RateWindow, now: Instant) -> Option<Instant> {
    let measured = Measured::of(window, now)?;
    let current = window.current_span(now)?;
    (measured.since_shift < measured.rows.len())
        .then(|| now.checked_sub(current + PACE_BUCKET * measured.since_shift as u32))
        .flatten()
}

/// The whole buckets of a pace window, and how many of the newest are
/// since the rate last shifted.
struct Measured {
    rows: Vec<f64>,
    bytes: Vec<f64>,
    since_shift: usize,
}

impl Measured {
    /// What `window` counted at `now`, once it holds two whole buckets.
    fn of(window: &RateWindow, now: Instant) -> Option<Measured> {
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
        let since_shift = since_shift(counted, current);
        Some(Measured {
            rows,
            bytes,
            since_shift,
        })
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::forecast::pace_window;

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
            slowing: 0.0,
        };
        let band = pace.seconds(250.0).unwrap();
        assert_eq!(
            (band.low, band.mid),
            (1.25, 2.5),
            "the trend only slows the slow end"
        );
        assert!(band.high > 250.0 / 50.0, "{band:?}");
        // A table's slowdown slows the middle too, and the slow end falls
        // with whichever falls faster.
        let slowing = Pace {
            trend: -0.1,
            ..pace.slowing(-0.5)
        };
        let band = slowing.seconds(250.0).unwrap();
        assert_eq!(band.mid, time_falling(250.0, 100.0, -0.5));
        assert_eq!(band.high, time_falling(250.0, 50.0, -0.5));
        assert_eq!(band.low, 1.25, "the fast end does not fall");
        assert_eq!(Pace::mean_of(&[slowing]).unwrap().slowing, 0.0, "its own");
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
            slowing: 0.0,
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
}
