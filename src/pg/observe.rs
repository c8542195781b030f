//! What one poll reads from the two servers, as plain data: the queries
//! and nothing else.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Monitor, MonitorError, MonitorErrorKind, describe, sql};
use crate::lsn::Lsn;
use crate::model::TableName;

/// A table's synchronization state in a subscription (`srsubstate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncState {
    /// `i`: waiting for its tablesync worker.
    Init,
    /// `d`: its initial COPY runs.
    DataCopy,
    /// `f`: copied; indexes being built.
    FinishedCopy,
    /// `s`: synchronized with the apply worker.
    SyncDone,
    /// `r`: ready; changes stream into it.
    Ready,
    /// A state this version does not know.
    Other,
}

impl SyncState {
    pub(crate) fn from_code(code: &str) -> Self {
        match code {
            "i" => SyncState::Init,
            "d" => SyncState::DataCopy,
            "f" => SyncState::FinishedCopy,
            "s" => SyncState::SyncDone,
            "r" => SyncState::Ready,
            _ => SyncState::Other,
        }
    }

    /// Whether the initial copy is over.
    pub(crate) fn is_copied(self) -> bool {
        matches!(
            self,
            SyncState::FinishedCopy | SyncState::SyncDone | SyncState::Ready
        )
    }
}

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
    /// The slot's row of `pg_replication_slots`, when it exists.
    pub(crate) slot: Option<Row>,
    /// Its row of `pg_stat_replication_slots`.
    pub(crate) slot_stats: Option<Row>,
    /// WAL the slot retains (`pg_current_wal_lsn() − restart_lsn`).
    pub(crate) retained: Option<i64>,
    /// `max_slot_wal_keep_size` in bytes; -1 when unlimited.
    pub(crate) max_slot_wal_keep_size: Option<i64>,
    /// The apply worker's row of `pg_stat_subscription`.
    pub(crate) apply: Option<Row>,
}

/// A row read as JSON: fields by name, absent when a server does not have
/// them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Row(serde_json::Map<String, serde_json::Value>);

impl Row {
    fn parse(text: Option<String>) -> Option<Row> {
        match serde_json::from_str(&text?).ok()? {
            serde_json::Value::Object(fields) => Some(Row(fields)),
            _ => None,
        }
    }

    /// A row with these fields (for tests).
    #[cfg(test)]
    pub(crate) fn of(fields: serde_json::Value) -> Row {
        match fields {
            serde_json::Value::Object(fields) => Row(fields),
            _ => Row::default(),
        }
    }

    pub(crate) fn text(&self, field: &str) -> Option<&str> {
        self.0.get(field)?.as_str()
    }

    pub(crate) fn int(&self, field: &str) -> Option<i64> {
        self.0.get(field)?.as_i64()
    }

    pub(crate) fn bool(&self, field: &str) -> Option<bool> {
        self.0.get(field)?.as_bool()
    }

    /// A timestamp field, as PostgreSQL writes it in JSON.
    pub(crate) fn time(&self, field: &str) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(self.text(field)?, &Rfc3339).ok()
    }
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
    let health = if monitor.dest_has_stats {
        sql::HEALTH
    } else {
        sql::HEALTH_14
    };
    let health = monitor
        .dest
        .query_one(health, &[&sub.oid])
        .await
        .map_err(|err| monitor.lost_dest(&err))?;
    *queries += 1;
    let error_total = Row::parse(health.get(0)).map(|stats| {
        ["apply_error_count", "sync_error_count"]
            .iter()
            .filter_map(|field| stats.int(field))
            .sum()
    });
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
        slot: Row::parse(positions.get(3)),
        slot_stats: Row::parse(positions.get(4)),
        retained: positions.get(5),
        max_slot_wal_keep_size: positions.get(6),
        apply: Row::parse(health.get(1)),
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
    pub(super) fn lost_dest(&self, err: &tokio_postgres::Error) -> MonitorError {
        MonitorError::new(
            MonitorErrorKind::Lost,
            format!(
                "lost the destination ({}): {}",
                self.config.dest,
                describe(err)
            ),
        )
    }

    pub(super) fn lost_source(&self, err: &tokio_postgres::Error) -> MonitorError {
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
