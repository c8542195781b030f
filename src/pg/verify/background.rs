//! `monitor --verify`: each table verified once it is streaming, and again
//! once its last verification is `--verify-interval` old, beside the polls;
//! progress goes to the collector (and so to the state file, where a
//! restarted monitor finds it).

use std::time::Duration;

use time::OffsetDateTime;
use tokio::task::JoinHandle;

use super::{Round, VerifyOptions, record};
use crate::collector::Collector;
use crate::model::{Snapshot, TableStatus, TableVerification, VerifyProgress, VerifyStatus};
use crate::pg::ConnInfo;

/// Time between two looks for tables due for verification.
const LOOK_EVERY: Duration = Duration::from_secs(10);
/// Progress is recorded at most this often while a table is under way
/// (and at once when a table's status changes).
const RECORD_EVERY: Duration = Duration::from_secs(1);

/// Verifying in the background; stops when dropped.
#[derive(Debug)]
pub(in crate::pg) struct Background(JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Background {
    /// Starts verifying the tables `collector` shows, beginning from the
    /// progress it already holds (a previous run's, from the state file).
    pub(in crate::pg) fn start(
        servers: (ConnInfo, ConnInfo),
        slot: Option<String>,
        options: VerifyOptions,
        collector: Collector,
    ) -> Background {
        Background(tokio::spawn(verify_periodically(
            servers, slot, options, collector,
        )))
    }
}

async fn verify_periodically(
    (source, dest): (ConnInfo, ConnInfo),
    slot: Option<String>,
    options: VerifyOptions,
    collector: Collector,
) {
    let mut progress = collector.snapshot().verify.clone().unwrap_or_default();
    // A table under way when the last run stopped starts again: where it
    // had come to is not kept (its keys can be personal data).
    for table in &mut progress.tables {
        if !table.status.is_done() {
            *table = TableVerification::pending(&table.table_name());
        }
    }
    loop {
        let snapshot = collector.snapshot();
        // Before the first poll lists the tables, the previous run's
        // outcomes stand as they are.
        if !snapshot.tables.is_empty() {
            let now = OffsetDateTime::now_utc();
            let due = plan(&mut progress, &snapshot, &options, now);
            if !due.is_empty() {
                let round = (&source, &dest, &slot, &options);
                verify_round(round, &collector, &mut progress, due).await;
            }
            collector.record_verify(progress.clone()).await;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

async fn verify_round(
    (source, dest, slot, options): (&ConnInfo, &ConnInfo, &Option<String>, &VerifyOptions),
    collector: &Collector,
    progress: &mut VerifyProgress,
    due: Vec<usize>,
) {
    let started = tokio::time::Instant::now();
    progress.started_at = Some(OffsetDateTime::now_utc());
    for &index in &due {
        progress.tables[index].bytes_verified = 0;
    }
    let before: u64 = progress.tables.iter().map(|t| t.bytes_verified).sum();
    let todo = due
        .iter()
        .map(|&index| (index, progress.tables[index].table_name()))
        .collect();
    let mut round = match Round::start(source, dest, slot.clone(), todo, options).await {
        Ok(round) => round,
        Err(err) => {
            tracing::warn!(error = %err, "cannot verify now; trying again later");
            return;
        }
    };
    let mut recorded = tokio::time::Instant::now();
    while let Some((index, table)) = round.next().await {
        let changed = progress.tables.get(index).map(|t| t.status) != Some(table.status);
        record(progress, index, table);
        if changed || recorded.elapsed() >= RECORD_EVERY {
            progress.total_up(started.elapsed().as_secs_f64(), before);
            collector.record_verify(progress.clone()).await;
            recorded = tokio::time::Instant::now();
        }
    }
    progress.finished_at = Some(OffsetDateTime::now_utc());
    progress.total_up(started.elapsed().as_secs_f64(), before);
}

/// Lines `progress` up with the tables `snapshot` shows (new ones pending,
/// gone ones dropped), marks those not streaming yet `skipped`, and says
/// which are due: streaming, and never verified or last verified
/// `options.interval` before `now`.
fn plan(
    progress: &mut VerifyProgress,
    snapshot: &Snapshot,
    options: &VerifyOptions,
    now: OffsetDateTime,
) -> Vec<usize> {
    let mut kept = std::mem::take(&mut progress.tables);
    let mut due = Vec::new();
    for shown in &snapshot.tables {
        let name = shown.table_name();
        let found = kept
            .iter()
            .position(|t| t.schema == name.schema && t.name == name.name);
        let mut table = match found {
            Some(at) => kept.swap_remove(at),
            None => TableVerification::pending(&name),
        };
        let streaming = shown.status == TableStatus::Streaming;
        let stale = table
            .verified_at
            .is_none_or(|at| now - at >= options.interval);
        if streaming && (stale || !table.status.is_done()) {
            if table.status == VerifyStatus::Skipped {
                table.status = VerifyStatus::Pending;
                table.detail.clear();
            }
            due.push(progress.tables.len());
        } else if !streaming && !table.status.is_done() {
            table.status = VerifyStatus::Skipped;
            table.detail = "not streaming yet".into();
        }
        progress.tables.push(table);
    }
    progress.total_up(0.0, 0);
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TableName, TableProgress};

    fn snapshot(tables: &[(&str, TableStatus)]) -> Snapshot {
        Snapshot {
            tables: tables
                .iter()
                .map(|(name, status)| TableProgress {
                    status: *status,
                    ..TableProgress::new("public", name, 0, 0)
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn streaming_tables_are_due_when_never_verified_or_verified_long_ago() {
        let now = OffsetDateTime::now_utc();
        let options = VerifyOptions::default();
        let verified = |name, hours_ago: i64| TableVerification {
            status: VerifyStatus::Verified,
            verified_at: Some(now - time::Duration::hours(hours_ago)),
            ..TableVerification::pending(&TableName::new("public", name))
        };
        let mut progress = VerifyProgress {
            tables: vec![
                verified("fresh", 1),
                verified("old", 7),
                verified("dropped", 1),
            ],
            ..VerifyProgress::default()
        };
        let shown = snapshot(&[
            ("copying", TableStatus::Copying),
            ("fresh", TableStatus::Streaming),
            ("old", TableStatus::Streaming),
            ("new", TableStatus::Streaming),
        ]);
        let due = plan(&mut progress, &shown, &options, now);
        let names: Vec<&str> = progress.tables.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["copying", "fresh", "old", "new"],
            "in the snapshot's order"
        );
        assert_eq!(due, [2, 3]);
        assert_eq!(progress.tables[0].status, VerifyStatus::Skipped);
        assert_eq!(progress.tables[1].status, VerifyStatus::Verified);
        // The old outcome stands until the new one.
        assert_eq!(progress.tables[2].status, VerifyStatus::Verified);
        assert_eq!(progress.tables[3].status, VerifyStatus::Pending);
        assert_eq!(progress.tables_total, 4);

        // Once streaming, a skipped table is due.
        let shown = snapshot(&[("copying", TableStatus::Streaming)]);
        assert_eq!(plan(&mut progress, &shown, &options, now), [0]);
        assert_eq!(progress.tables[0].status, VerifyStatus::Pending);
    }
}
