//! How fast a quantity changes: the least-squares slope of its readings.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The least-squares slope of `points` (x, y); `None` when it is not a
/// number (fewer than two distinct x).
pub(crate) fn slope(points: &[(f64, f64)]) -> Option<f64> {
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

/// Readings of one quantity over time, kept over a window, and how fast
/// it changes: the least-squares slope of the readings in the window.
#[derive(Debug, Clone)]
pub(crate) struct Slope {
    window: Duration,
    readings: VecDeque<(Instant, f64)>,
}

/// Readings a [`Slope`] keeps at most: one every window ÷ 240 or more.
const SLOPE_READINGS: usize = 240;
/// The span readings must cover before a slope is given.
const SLOPE_SPAN: Duration = Duration::from_secs(10);

impl Slope {
    pub(crate) fn new(window: Duration) -> Slope {
        Slope {
            window,
            readings: VecDeque::new(),
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
