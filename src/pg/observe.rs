//! What one poll reads from the two servers, as plain data: the queries
//! and nothing else.

use super::diff::SyncState;
use super::{Monitor, MonitorError, MonitorErrorKind, describe, sql};
use crate::lsn::Lsn;
use crate::model::TableName;

/// Everything one poll reads (but the estimates, which are read only when
/// the table set changes).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observation {
    /// The subscription's tables, from the destination.
    pub(crate) tables: Vec<ObservedTable>,
    /// The subscription's apply and sync errors so far (PostgreSQL 15+).
    pub(crate) error_total: Option<i64>,
    /// The source's current WAL position.
    pub(crate) latest: Option<Lsn>,
    /// What the subscription's walsender reports replayed, while one runs.
    pub(crate) replay: Option<Lsn>,
    /// What the subscription's slot has confirmed.
    pub(crate) confirmed: Option<Lsn>,
}

/// One table of the subscription, as the destination sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ObservedTable {
    pub(crate) name: TableName,
    pub(crate) state: SyncState,
    /// Rows and bytes of the tablesync worker's COPY, while it runs.
    pub(crate) copy: Option<(i64, i64)>,
    /// Rows inserted into the table (its statistics).
    pub(crate) inserted: i64,
    /// Rows inserted, updated and deleted (its statistics).
    pub(crate) changes: i64,
}

/// A table's size on the source: rows (`reltuples`, −1 when never
/// analysed) and bytes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Estimate {
    pub(crate) name: TableName,
    pub(crate) rows: i64,
    pub(crate) bytes: i64,
}

/// The queries a poll sends: two or three, whatever the number of tables.
pub(crate) async fn observe(
    monitor: &Monitor,
    queries: &mut u32,
) -> Result<Observation, MonitorError> {
    let sub = &monitor.subscription;
    let rows = monitor
        .dest
        .query(sql::TABLES, &[&sub.oid])
        .await
        .map_err(|err| monitor.lost_dest(&err))?;
    *queries += 1;
    let tables = rows
        .iter()
        .map(|row| {
            let state: String = row.get(2);
            let tuples: Option<i64> = row.get(3);
            let bytes: Option<i64> = row.get(4);
            ObservedTable {
                name: TableName {
                    schema: row.get(0),
                    name: row.get(1),
                },
                state: SyncState::from_code(&state),
                copy: tuples.map(|t| (t, bytes.unwrap_or(0))),
                inserted: row.get(5),
                changes: row.get(6),
            }
        })
        .collect();
    let error_total = if monitor.dest_has_stats {
        *queries += 1;
        monitor
            .dest
            .query_opt(sql::ERRORS, &[&sub.oid])
            .await
            .map_err(|err| monitor.lost_dest(&err))?
            .map(|r| r.get::<_, i64>(0) + r.get::<_, i64>(1))
    } else {
        None
    };
    let positions = monitor
        .source
        .query_one(sql::POSITIONS, &[&sub.name, &sub.slot])
        .await
        .map_err(|err| monitor.lost_source(&err))?;
    *queries += 1;
    let lsn = |i: usize| {
        positions
            .get::<_, Option<String>>(i)
            .and_then(|text| text.parse().ok())
    };
    Ok(Observation {
        tables,
        error_total,
        latest: lsn(0),
        replay: lsn(1),
        confirmed: lsn(2),
    })
}

/// Row estimates and sizes of `tables` on the source.
pub(crate) async fn estimates(
    monitor: &Monitor,
    tables: &[TableName],
    queries: &mut u32,
) -> Result<Vec<Estimate>, MonitorError> {
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let rows = monitor
        .source
        .query(sql::ESTIMATES, &[&schemas, &names])
        .await
        .map_err(|err| monitor.lost_source(&err))?;
    *queries += 1;
    Ok(rows
        .iter()
        .map(|row| Estimate {
            name: TableName {
                schema: row.get(0),
                name: row.get(1),
            },
            rows: row.get(2),
            bytes: row.get(3),
        })
        .collect())
}

impl Monitor {
    fn lost_dest(&self, err: &tokio_postgres::Error) -> MonitorError {
        MonitorError::new(
            MonitorErrorKind::Lost,
            format!(
                "lost the destination ({}): {}",
                self.config.dest,
                describe(err)
            ),
        )
    }

    fn lost_source(&self, err: &tokio_postgres::Error) -> MonitorError {
        MonitorError::new(
            MonitorErrorKind::Lost,
            format!(
                "lost the source ({}): {}",
                self.config.source,
                describe(err)
            ),
        )
    }
}
