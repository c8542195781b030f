//! Data verification: whether the destination holds the same rows as the
//! source, chunk by chunk of the key, localized to the rows that differ.
//!
//! Each table is cut into ranges of its primary key (or replica identity
//! index) on the source, sized so one takes about the chunk time; for each
//! range, both servers compute `count(*)` and an order-independent 64-bit
//! digest sum of the rows' text, so only two numbers per chunk cross the
//! network. The sessions are pinned so a value's text is the same on both
//! servers, text keys are compared with `COLLATE "C"`, and the first and
//! last ranges are open so rows outside the source's keys are found too. A
//! source chunk is read in a `REPEATABLE READ READ ONLY` transaction, and
//! the destination's once the subscription confirmed the WAL position of
//! that snapshot; a chunk that differs is bisected down to its rows, which
//! are read again before they count, and rows the source keeps changing
//! are `unstable`, not a difference.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

mod background;
mod pace;
mod reads;
mod session;
mod table;

pub(super) use self::background::Background;
use self::session::Sessions;
use self::table::{KeyHasher, Worker};
use super::{ConnInfo, MonitorError};
use crate::model::{DifferenceKind, TableName, TableVerification, VerifyProgress, VerifyStatus};

/// How `--verify` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Rows per chunk when fixed; `None` (the default) sizes each chunk
    /// to take about [`chunk_time`](Self::chunk_time) on the source.
    pub chunk_rows: Option<u32>,
    /// The time one chunk should take on the source (default 500 ms).
    pub chunk_time: Duration,
    /// Reads again of rows that differ before they count (default 3).
    pub retries: u32,
    /// Differing keys named per table, at most (default 100).
    pub max_rows: usize,
    /// Show a short hash of each key instead of the key (personal data).
    pub hide_keys: bool,
    /// The longest one statement may take (default 30 s).
    pub statement_timeout: Duration,
    /// The longest a statement waits for a lock (default 1 s): verifying
    /// never queues behind the application's locks.
    pub lock_timeout: Duration,
    /// Bytes of table a second read on the source, at most (default 64 MB);
    /// `None` reads as fast as the servers answer.
    pub max_rate: Option<u64>,
    /// Verifying pauses while the subscription's slot is this many bytes
    /// behind (default 64 MiB); 0 never pauses.
    pub pause_lag: u64,
    /// Connections on each server, each verifying a table at a time
    /// (default 1).
    pub concurrency: usize,
    /// `monitor --verify` verifies a table again once its last
    /// verification is this old (default 6 h).
    pub interval: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            chunk_rows: None,
            chunk_time: Duration::from_millis(500),
            retries: 3,
            max_rows: 100,
            hide_keys: false,
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(1),
            max_rate: Some(64_000_000),
            pause_lag: 64 << 20,
            concurrency: 1,
            interval: Duration::from_secs(6 * 3600),
        }
    }
}

/// One round of verification under way: workers, each with a session on
/// each server, take the tables in turn and report each table's progress
/// after every chunk. Dropping it stops them.
pub(crate) struct Round {
    reports: mpsc::UnboundedReceiver<(usize, TableVerification)>,
    _workers: JoinSet<()>,
}

impl Round {
    /// Connects [`VerifyOptions::concurrency`] session pairs and starts
    /// verifying `tables` (each with its index in the caller's list);
    /// `slot` is the subscription's slot on the source, whose confirmed
    /// position says when the destination has applied a source snapshot.
    pub(crate) async fn start(
        source: &ConnInfo,
        dest: &ConnInfo,
        slot: Option<String>,
        tables: Vec<(usize, TableName)>,
        options: &VerifyOptions,
    ) -> Result<Round, MonitorError> {
        let (tx, reports) = mpsc::unbounded_channel();
        let mut workers = JoinSet::new();
        let tables = Arc::new(tables);
        let next = Arc::new(AtomicUsize::new(0));
        let keys = Arc::new(KeyHasher::new(options.hide_keys));
        for _ in 0..options.concurrency.clamp(1, tables.len().max(1)) {
            let sessions = Sessions::open(source, dest, options).await?;
            let mut worker = Worker::new(
                (source.clone(), dest.clone()),
                sessions,
                slot.clone(),
                options.clone(),
                Arc::clone(&keys),
                tx.clone(),
            );
            let (tables, next) = (Arc::clone(&tables), Arc::clone(&next));
            workers.spawn(async move {
                while let Some((index, table)) = tables.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if let Err(err) = worker.verify(*index, table).await {
                        // Its connections are gone for good: the tables it
                        // did not reach stay pending until the next round.
                        tracing::warn!(error = %err, "verifying stopped");
                        return;
                    }
                }
            });
        }
        Ok(Round {
            reports,
            _workers: workers,
        })
    }

    /// The next table's progress, by its index; `None` once every worker
    /// is done.
    pub(crate) async fn next(&mut self) -> Option<(usize, TableVerification)> {
        self.reports.recv().await
    }
}

/// Puts a worker's `fresh` report of a table into `progress`. While a
/// table that already has an outcome is verified again, that outcome
/// stands (a mismatch keeps blocking) and only the counters move, until
/// the new outcome.
pub(crate) fn record(progress: &mut VerifyProgress, index: usize, mut fresh: TableVerification) {
    let Some(table) = progress.tables.get_mut(index) else {
        return;
    };
    if fresh.status == VerifyStatus::Verifying && table.status.is_done() {
        fresh.status = table.status;
        fresh.differences = std::mem::take(&mut table.differences);
        fresh.detail = std::mem::take(&mut table.detail);
        fresh.mismatched_rows = table.mismatched_rows;
        fresh.verified_at = table.verified_at;
    }
    *table = fresh;
}

/// Verifies every one of `tables` once, `progress` hearing how far it has
/// come after each chunk: what `check --verify` runs.
pub(crate) async fn verify(
    source: &ConnInfo,
    dest: &ConnInfo,
    slot: Option<String>,
    tables: &[TableName],
    options: &VerifyOptions,
    progress: &mut (dyn FnMut(&VerifyProgress) + Send),
) -> Result<VerifyProgress, MonitorError> {
    let started = tokio::time::Instant::now();
    let mut found = VerifyProgress {
        started_at: Some(OffsetDateTime::now_utc()),
        tables: tables.iter().map(TableVerification::pending).collect(),
        ..VerifyProgress::default()
    };
    let todo = tables.iter().cloned().enumerate().collect();
    let mut round = Round::start(source, dest, slot, todo, options).await?;
    while let Some((index, table)) = round.next().await {
        record(&mut found, index, table);
        found.total_up(started.elapsed().as_secs_f64(), 0);
        progress(&found);
    }
    found.finished_at = Some(OffsetDateTime::now_utc());
    found.total_up(started.elapsed().as_secs_f64(), 0);
    Ok(found)
}

/// A range's rows on one server in key order: each key (as text) and the
/// row's hash.
pub(super) type Rows = Vec<(String, String)>;

/// The keys of `theirs` (the source) missing or different in `ours`, and
/// those only in `ours`, in key order: the two are merged at the keys both
/// hold (text does not sort as keys do), and between two such keys the
/// destination's extra rows come before the source's missing ones.
pub(super) fn compare_rows(theirs: &Rows, ours: &Rows) -> Vec<(String, DifferenceKind)> {
    let on_source: HashMap<&str, &str> = theirs
        .iter()
        .map(|(key, hash)| (key.as_str(), hash.as_str()))
        .collect();
    let on_dest: HashSet<&str> = ours.iter().map(|(key, _)| key.as_str()).collect();
    let missing = |(key, _): &(String, String)| {
        (!on_dest.contains(key.as_str())).then(|| (key.clone(), DifferenceKind::Missing))
    };
    let mut source = theirs.iter().peekable();
    let mut found = Vec::new();
    for (key, hash) in ours {
        let Some(&theirs) = on_source.get(key.as_str()) else {
            found.push((key.clone(), DifferenceKind::Extra));
            continue;
        };
        while let Some(before) = source.next_if(|(k, _)| k != key) {
            found.extend(missing(before));
        }
        source.next();
        if theirs != hash {
            found.push((key.clone(), DifferenceKind::Different));
        }
    }
    found.extend(source.filter_map(missing));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RowDifference;

    #[test]
    fn rows_are_missing_extra_or_different_by_key() {
        let rows = |pairs: &[(&str, &str)]| -> Rows {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let theirs = rows(&[("(1)", "a"), ("(2)", "b"), ("(3)", "c")]);
        let ours = rows(&[("(1)", "a"), ("(3)", "x"), ("(4)", "d")]);
        assert_eq!(
            compare_rows(&theirs, &ours),
            [
                ("(2)".to_owned(), DifferenceKind::Missing),
                ("(3)".to_owned(), DifferenceKind::Different),
                ("(4)".to_owned(), DifferenceKind::Extra),
            ]
        );
        // Keys in key order, which is not their text's order.
        let theirs = rows(&[("(9)", "a"), ("(10)", "b"), ("(100)", "c"), ("(101)", "d")]);
        let ours = rows(&[
            ("(10)", "b"),
            ("(11)", "x"),
            ("(100)", "y"),
            ("(1000)", "e"),
        ]);
        let keys: Vec<String> = compare_rows(&theirs, &ours)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys, ["(9)", "(11)", "(100)", "(1000)", "(101)"]);
    }

    #[test]
    fn a_table_verified_again_keeps_its_outcome_until_the_new_one() {
        let name = TableName::new("public", "t");
        let mismatch = TableVerification {
            status: VerifyStatus::Mismatch,
            mismatched_rows: 1,
            differences: vec![RowDifference {
                key: "(7)".into(),
                kind: DifferenceKind::Missing,
            }],
            ..TableVerification::pending(&name)
        };
        let mut progress = VerifyProgress {
            tables: vec![mismatch.clone()],
            ..VerifyProgress::default()
        };
        let running = TableVerification {
            status: VerifyStatus::Verifying,
            chunks_done: 3,
            ..TableVerification::pending(&name)
        };
        record(&mut progress, 0, running);
        let table = &progress.tables[0];
        assert_eq!(
            (table.status, table.chunks_done, table.mismatched_rows),
            (VerifyStatus::Mismatch, 3, 1)
        );
        assert_eq!(table.differences, mismatch.differences);
        let verified = TableVerification {
            status: VerifyStatus::Verified,
            ..TableVerification::pending(&name)
        };
        record(&mut progress, 0, verified.clone());
        assert_eq!(progress.tables[0], verified);
        // An index past the list is not a panic.
        record(&mut progress, 9, verified);
    }
}
