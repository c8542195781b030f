//! One poll: observe both servers, work out what changed, tell the
//! collector.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::{Monitor, MonitorError, observe};
use crate::collector::Collector;

/// What one poll cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollStats {
    /// Queries sent to the two servers.
    pub queries: u32,
    /// Wall time of the whole poll.
    pub elapsed: Duration,
}

pub(super) async fn poll(
    monitor: &mut Monitor,
    collector: &Collector,
) -> Result<PollStats, MonitorError> {
    let started = Instant::now();
    let mut queries = 0;
    let observation = observe::observe(monitor, &mut queries).await?;
    let estimates = match monitor.tracker.unlisted(&observation) {
        Some(tables) => Some(observe::estimates(monitor, &tables, &mut queries).await?),
        None => None,
    };
    let changes = monitor.tracker.changes(
        &observation,
        estimates,
        &monitor.subscription.name,
        OffsetDateTime::now_utc(),
    );
    for update in changes {
        collector.send(update).await;
    }
    Ok(PollStats {
        queries,
        elapsed: started.elapsed(),
    })
}
