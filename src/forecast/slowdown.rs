//! How a table's copy slows down as it goes on. Into a table whose indexes
//! outgrow memory each row costs more than the last: the rate falls by a
//! few percent a minute, too little for a minute's rates to show under
//! their noise, and a forecast at today's rate is early by all of it. A
//! line fitted over the whole time since the copy's circumstances last
//! changed shows it.

use tokio::time::Instant;

use super::PACE_BUCKET;

/// How many standard errors below zero a fitted fall must lie to be taken.
const SLOWDOWN_SIGMAS: f64 = 3.0;
/// Spans (of 5 s at least) a fall is fitted over, at the least.
const SLOWDOWN_SPANS: f64 = 4.0;

/// A table's copy rate against the work done: a least-squares line through
/// the rate of each span of 5 s (or more, between progress reports) at the
/// work done by its middle, over every span since the copy's context last
/// changed (a table started or stopped copying beside it: its share of the
/// throughput changed) or its rate last shifted (a throttle: a step, not a
/// slope). Fixed memory whatever the length of the copy: the line keeps
/// running sums, not the spans.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slowdown {
    /// The span being measured: when it began, and the rows and bytes done
    /// then.
    open: Option<(Instant, [f64; 2])>,
    /// The context the line was fitted in, and since when.
    context: Option<(u64, Instant)>,
    /// The rate of rows, of bytes, against the rows, the bytes done.
    lines: [Line; 2],
}

impl Slowdown {
    /// `done` rows and bytes at `now`, in the copy's `context` (a number
    /// that changes whenever a table starts or stops copying): a context
    /// other than the line's starts it afresh. Returns whether a span was
    /// closed.
    pub(crate) fn record(&mut self, now: Instant, done: [u64; 2], context: u64) -> bool {
        let done = done.map(|d| d as f64);
        if self.context.is_none_or(|(fitted, _)| fitted != context) {
            self.restart(now, context);
        }
        let Some((began, before)) = self.open else {
            self.open = Some((now, done));
            return false;
        };
        let seconds = now.saturating_duration_since(began);
        if seconds < PACE_BUCKET {
            return false;
        }
        for (line, (after, before)) in self.lines.iter_mut().zip(done.iter().zip(before)) {
            let rate = (after - before) / seconds.as_secs_f64();
            line.add((after + before) / 2.0, rate);
        }
        self.open = Some((now, done));
        true
    }

    /// The rate shifted at `at`: a line fitted since before then starts
    /// afresh now.
    pub(crate) fn shifted(&mut self, at: Instant, now: Instant) {
        if let Some((context, since)) = self.context
            && since < at
        {
            self.restart(now, context);
        }
    }

    /// Forgets the line and the span open: both measured what was.
    fn restart(&mut self, now: Instant, context: u64) {
        self.context = Some((context, now));
        self.lines = Default::default();
        self.open = None;
    }

    /// The change of the rate per row (`unit` 0) or byte (1) done: the
    /// fitted slope when it lies 3 standard errors below zero over 4 spans
    /// or more, else 0 (a copy that speeds up is not counted on).
    pub(crate) fn per_unit(&self, unit: usize) -> f64 {
        let Some(line) = self.lines.get(unit).filter(|l| l.n >= SLOWDOWN_SPANS) else {
            return 0.0;
        };
        match line.slope() {
            Some((slope, error)) if slope < 0.0 && -slope > SLOWDOWN_SIGMAS * error => slope,
            _ => 0.0,
        }
    }
}

/// Running sums of a least-squares line (Welford's: stable whatever the
/// size of the numbers).
#[derive(Debug, Clone, Copy, Default)]
struct Line {
    n: f64,
    mean_x: f64,
    mean_y: f64,
    /// Sums of the squared and crossed deviations from the means.
    xx: f64,
    xy: f64,
    yy: f64,
}

impl Line {
    fn add(&mut self, x: f64, y: f64) {
        if !x.is_finite() || !y.is_finite() {
            return;
        }
        self.n += 1.0;
        let (dx, dy) = (x - self.mean_x, y - self.mean_y);
        self.mean_x += dx / self.n;
        self.mean_y += dy / self.n;
        self.xx += dx * (x - self.mean_x);
        self.xy += dx * (y - self.mean_y);
        self.yy += dy * (y - self.mean_y);
    }

    /// The slope and its standard error; `None` under three points or
    /// without two distinct x.
    fn slope(&self) -> Option<(f64, f64)> {
        if self.n < 3.0 || self.xx <= 0.0 {
            return None;
        }
        let slope = self.xy / self.xx;
        let residual = (self.yy - slope * self.xy).max(0.0) / (self.n - 2.0);
        let error = (residual / self.xx).sqrt();
        (slope.is_finite() && error.is_finite()).then_some((slope, error))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A copy whose rate is `rate(done)` rows a second, reported every
    /// second for `seconds`, in `context`.
    fn copy(slowdown: &mut Slowdown, t0: Instant, seconds: u64, mut rate: impl FnMut(f64) -> f64) {
        let mut done = 0.0;
        for s in 0..=seconds {
            slowdown.record(t0 + Duration::from_secs(s), [done as u64, 0], 1);
            done += rate(done);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_falling_with_the_work_done_is_fitted_over_the_whole_copy() {
        let t0 = Instant::now();
        let mut slowdown = Slowdown::default();
        // 100,000 rows a second, falling by 1 per thousand rows done, with
        // a ±3 % wobble.
        copy(&mut slowdown, t0, 300, |done| {
            (100_000.0 - done / 1_000.0) * (1.0 + 0.03 * (done / 7e5).sin())
        });
        let slope = slowdown.per_unit(0);
        assert!((slope + 0.001).abs() < 0.0003, "{slope}");
        assert_eq!(slowdown.per_unit(1), 0.0, "no bytes counted");
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_or_quickening_rate_has_no_slowdown_and_nor_has_noise() {
        let t0 = Instant::now();
        let mut steady = Slowdown::default();
        copy(&mut steady, t0, 300, |_| 50_000.0);
        assert_eq!(steady.per_unit(0), 0.0);
        let mut quicker = Slowdown::default();
        copy(&mut quicker, t0, 300, |done| 50_000.0 + done / 1_000.0);
        assert_eq!(quicker.per_unit(0), 0.0);
        // ±20 % noise and a fall too small to tell from it.
        let mut noisy = Slowdown::default();
        let mut seed = 7u64;
        copy(&mut noisy, t0, 300, |done| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let noise = 0.8 + 0.4 * (seed >> 11) as f64 / (1u64 << 53) as f64;
            (50_000.0 - done / 1e7) * noise
        });
        assert_eq!(noisy.per_unit(0), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_of_context_or_a_shift_starts_the_line_afresh() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut slowdown = Slowdown::default();
        copy(&mut slowdown, t0, 300, |done| 100_000.0 - done / 1_000.0);
        assert!(slowdown.per_unit(0) < 0.0);
        // Another table started beside it: what was fitted is forgotten.
        slowdown.record(at(301), [30_000_000, 0], 2);
        assert_eq!(slowdown.per_unit(0), 0.0);
        for s in 302..=330 {
            slowdown.record(at(s), [30_000_000 + (s - 301) * 10_000, 0], 2);
        }
        assert_eq!(slowdown.per_unit(0), 0.0, "steady since");
        // A shift before the line began changes nothing; one after, all.
        let fitted = slowdown.clone();
        slowdown.shifted(at(300), at(331));
        assert_eq!(slowdown.lines[0].n, fitted.lines[0].n);
        slowdown.shifted(at(320), at(331));
        assert_eq!(slowdown.lines[0].n, 0.0);
    }

    #[test]
    fn a_line_through_two_points_or_one_x_has_no_slope() {
        let mut line = Line::default();
        line.add(1.0, 1.0);
        line.add(2.0, 2.0);
        assert_eq!(line.slope(), None);
        line.add(f64::NAN, 3.0);
        assert_eq!(line.n, 2.0, "not a point");
        line.add(3.0, 3.0);
        assert_eq!(line.slope(), Some((1.0, 0.0)));
        let mut vertical = Line::default();
        for y in [1.0, 2.0, 3.0] {
            vertical.add(5.0, y);
        }
        assert_eq!(vertical.slope(), None);
    }
}
