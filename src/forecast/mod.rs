//! When the copy will be done: each table in flight at its own recent
//! rate, the tables still waiting scheduled onto the workers as they come
//! free (largest first, as the pipeline takes them), and the answer the
//! time the last worker is done — never earlier than the latest table in
//! flight, which is where a plain "bytes left ÷ total rate" goes wrong.
//!
//! Every figure comes three times: at the recent rate (`mid`), and at the
//! fast and slow ends of how it has varied (`low`, `high`); a table whose
//! rate has fallen steadily since its circumstances last changed is
//! forecast to go on falling (see [`Slowdown`]).

use std::time::Duration;

use crate::rate::RateWindow;

mod pace;
mod schedule;
mod slope;
mod slowdown;

pub(crate) use pace::{Pace, last_shift};
pub(crate) use schedule::{Finish, Sharing, schedule};
pub(crate) use slope::Slope;
pub(crate) use slowdown::Slowdown;

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

/// Three readings of one quantity: at the fast end of the recent rates,
/// at their mean, and at their slow end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Band {
    pub(crate) low: f64,
    pub(crate) mid: f64,
    pub(crate) high: f64,
}
