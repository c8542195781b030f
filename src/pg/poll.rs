//! One poll: observe both servers, work out what changed, tell the
//! collector.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::diff::Change;
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
    for change in changes {
        apply(collector, change).await;
    }
    Ok(PollStats {
        queries,
        elapsed: started.elapsed(),
    })
}

async fn apply(collector: &Collector, change: Change) {
    match change {
        Change::Phase(phase) => collector.set_phase(phase).await,
        Change::Tables(tables) => collector.set_tables(tables).await,
        Change::Started(t) => collector.table_started(&t.schema, &t.name).await,
        Change::Progress { table, rows, bytes } => {
            collector
                .update_table_progress(&table.schema, &table.name, rows, bytes)
                .await
        }
        Change::Done { table, rows } => {
            collector.table_done(&table.schema, &table.name, rows).await
        }
        Change::Streaming(t) => collector.table_streaming(&t.schema, &t.name).await,
        Change::Latest(lsn) => collector.record_latest_lsn(lsn).await,
        Change::Applied { lsn, rows, bytes } => collector.record_applied(lsn, rows, bytes).await,
        Change::Confirmed(lsn) => collector.record_confirmed_lsn(lsn).await,
        Change::TableChanges { table, changes } => {
            collector
                .add_table_changes(&table.schema, &table.name, changes)
                .await
        }
        Change::Slot(slot) => collector.record_slot(slot).await,
        Change::Apply(apply) => collector.record_apply(apply).await,
        Change::Error(message) => collector.record_error(message).await,
    }
}
