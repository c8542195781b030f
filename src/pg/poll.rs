//! One poll: read both servers, turn what changed into collector updates.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Monitor, MonitorError, describe, sql};
use crate::collector::Collector;
use crate::lsn::Lsn;
use crate::model::{Phase, TableProgress};

/// What one poll cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollStats {
    /// Queries sent to the two servers.
    pub queries: u32,
    /// Wall time of the whole poll.
    pub elapsed: Duration,
}

/// What the monitor remembers between polls.
#[derive(Debug, Default)]
pub(crate) struct Tracking {
    /// Last seen state (`srsubstate`) per table.
    states: HashMap<(String, String), char>,
    /// The table set last sent to the collector, in its order.
    listed: Vec<(String, String)>,
    /// Change counters of ready tables, to apply deltas.
    counters: HashMap<(String, String), i64>,
    /// Last COPY progress seen per table (rows, bytes).
    progress: HashMap<(String, String), (i64, i64)>,
    last_applied: Option<Lsn>,
    errors_seen: Option<i64>,
    phase: Option<Phase>,
}

struct TableRow {
    key: (String, String),
    state: char,
    progress: Option<(i64, i64)>,
    inserted: i64,
    changes: i64,
}

fn lsn(text: Option<String>) -> Option<Lsn> {
    text.and_then(|t| t.parse().ok())
}

pub(super) async fn poll(
    monitor: &mut Monitor,
    collector: &Collector,
) -> Result<PollStats, MonitorError> {
    let started = Instant::now();
    let mut queries = 0;
    let dest_error = |err: tokio_postgres::Error| {
        MonitorError::new(format!(
            "lost the destination ({}): {}",
            monitor.config.dest,
            describe(&err)
        ))
    };
    let source_error = |err: tokio_postgres::Error| {
        MonitorError::new(format!(
            "lost the source ({}): {}",
            monitor.config.source,
            describe(&err)
        ))
    };

    let sub = &monitor.subscription;
    let rows = monitor
        .dest
        .query(sql::TABLES, &[&sub.oid])
        .await
        .map_err(dest_error)?;
    queries += 1;
    let tables: Vec<TableRow> = rows
        .iter()
        .map(|row| {
            let state: String = row.get(2);
            let tuples: Option<i64> = row.get(3);
            let bytes: Option<i64> = row.get(4);
            TableRow {
                key: (row.get(0), row.get(1)),
                state: state.chars().next().unwrap_or('i'),
                progress: tuples.map(|t| (t, bytes.unwrap_or(0))),
                inserted: row.get(5),
                changes: row.get(6),
            }
        })
        .collect();
    let errors = if monitor.dest_has_stats {
        queries += 1;
        let row = monitor
            .dest
            .query_opt(sql::ERRORS, &[&sub.oid])
            .await
            .map_err(dest_error)?;
        row.map(|r| r.get::<_, i64>(0) + r.get::<_, i64>(1))
    } else {
        None
    };
    let positions = monitor
        .source
        .query_one(sql::POSITIONS, &[&sub.name, &sub.slot])
        .await
        .map_err(source_error)?;
    queries += 1;

    // The phase first, so no snapshot shows the tables under the old one.
    let phase = if tables.iter().all(|t| t.state == 'r') {
        Phase::Streaming
    } else {
        Phase::Copy
    };
    if monitor.tracking.phase.as_ref() != Some(&phase) {
        collector.set_phase(phase.clone()).await;
        monitor.tracking.phase = Some(phase);
    }

    // The table set changed: list it again, largest first, with estimates.
    let mut keys: Vec<(String, String)> = tables.iter().map(|t| t.key.clone()).collect();
    keys.sort();
    let mut known = monitor.tracking.listed.clone();
    known.sort();
    if keys != known {
        let (schemas, names): (Vec<String>, Vec<String>) = keys.iter().cloned().unzip();
        let rows = monitor
            .source
            .query(sql::ESTIMATES, &[&schemas, &names])
            .await
            .map_err(source_error)?;
        queries += 1;
        let mut listing: Vec<TableProgress> = rows
            .iter()
            .map(|row| {
                let rows_total: i64 = row.get(2);
                let schema: String = row.get(0);
                let name: String = row.get(1);
                // reltuples is -1 for a table never analysed: unknown, not 0.
                TableProgress::new(
                    &schema,
                    &name,
                    if rows_total < 0 { -1 } else { rows_total },
                    row.get(3),
                )
            })
            .collect();
        // Tables the source does not have (yet) still show, unknown.
        for (schema, name) in &keys {
            if !listing
                .iter()
                .any(|t| &t.schema == schema && &t.name == name)
            {
                listing.push(TableProgress::new(schema, name, -1, 0));
            }
        }
        listing.sort_by(|a, b| {
            b.size_bytes
                .cmp(&a.size_bytes)
                .then_with(|| a.qualified_name().cmp(&b.qualified_name()))
        });
        monitor.tracking.listed = listing
            .iter()
            .map(|t| (t.schema.clone(), t.name.clone()))
            .collect();
        collector.set_tables(listing).await;
    }

    let tracking = &mut monitor.tracking;
    let mut applied_rows = 0i64;
    for table in &tables {
        let (schema, name) = (&table.key.0, &table.key.1);
        let before = tracking.states.get(&table.key).copied().unwrap_or('i');
        if let Some(progress) = table.progress {
            tracking.progress.insert(table.key.clone(), progress);
        }
        let copied_rows = |tracking: &Tracking| {
            let seen = tracking.progress.get(&table.key).map_or(0, |p| p.0);
            seen.max(table.inserted)
        };
        match table.state {
            'd' => {
                if before != 'd' {
                    collector.table_started(schema, name).await;
                }
                if let Some((rows, bytes)) = table.progress {
                    collector
                        .update_table_progress(schema, name, rows, bytes)
                        .await;
                }
            }
            'f' | 's' | 'r' => {
                if !matches!(before, 'f' | 's' | 'r') {
                    if before != 'd' {
                        collector.table_started(schema, name).await;
                    }
                    let bytes = tracking.progress.get(&table.key).map_or(0, |p| p.1);
                    collector
                        .update_table_progress(schema, name, copied_rows(tracking), bytes)
                        .await;
                    collector
                        .table_done(schema, name, copied_rows(tracking))
                        .await;
                }
                if table.state == 'r' {
                    if before != 'r' {
                        // The tablesync worker has exited: its counts are final.
                        let bytes = tracking.progress.get(&table.key).map_or(0, |p| p.1);
                        collector
                            .update_table_progress(schema, name, copied_rows(tracking), bytes)
                            .await;
                        collector.table_streaming(schema, name).await;
                        tracking.counters.insert(table.key.clone(), table.changes);
                    }
                    let baseline = tracking
                        .counters
                        .entry(table.key.clone())
                        .or_insert(table.changes);
                    // Counters reset (pg_stat_reset) start a new baseline.
                    applied_rows += (table.changes - *baseline).max(0);
                    *baseline = table.changes;
                }
            }
            _ => {}
        }
        tracking.states.insert(table.key.clone(), table.state);
    }

    let latest = lsn(positions.get(0));
    let replay = lsn(positions.get(1));
    let confirmed = lsn(positions.get(2));
    // The walsender's replay position; while none runs (subscription
    // disabled, or reconnecting), what the slot has confirmed.
    let applied = replay.or(confirmed);
    if let Some(latest) = latest {
        collector.record_latest_lsn(latest).await;
    }
    if let Some(applied) = applied {
        let bytes = tracking
            .last_applied
            .map_or(0, |before| applied.0.saturating_sub(before.0));
        collector
            .record_applied(applied, applied_rows, bytes as i64)
            .await;
        tracking.last_applied = Some(applied.max(tracking.last_applied.unwrap_or(applied)));
    } else if applied_rows > 0 {
        collector.record_applied(Lsn(0), applied_rows, 0).await;
    }
    if let Some(confirmed) = confirmed {
        collector.record_confirmed_lsn(confirmed).await;
    }

    if let Some(total) = errors {
        let before = tracking.errors_seen.unwrap_or(total);
        if total > before {
            collector
                .record_error(format!(
                    "subscription {}: {} new apply or sync errors on the destination ({total} in all); see its server log",
                    monitor.subscription.name,
                    total - before
                ))
                .await;
        }
        tracking.errors_seen = Some(total);
    }
    Ok(PollStats {
        queries,
        elapsed: started.elapsed(),
    })
}
