//! What the cutover checks read from the two catalogs, as plain data: the
//! queries and nothing else. Six queries, whatever the number of tables.

use tokio_postgres::Client;

use super::{Monitor, MonitorError, sql};
use crate::model::TableName;

/// Both catalogs, as far as the cutover checks need them.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Catalog {
    /// The subscription's name.
    pub(crate) subscription: String,
    /// Whether the subscription is enabled.
    pub(crate) enabled: bool,
    /// The publications it subscribes to.
    pub(crate) subscribed_publications: Vec<String>,
    /// The subscription's tables, with their columns on the destination.
    pub(crate) subscribed: Vec<(TableName, Vec<Column>)>,
    /// The source's publications.
    pub(crate) publications: Vec<Publication>,
    /// The source's tables.
    pub(crate) source_tables: Vec<SourceTable>,
    /// The source's sequences.
    pub(crate) source_sequences: Vec<Sequence>,
    /// The destination's sequences.
    pub(crate) dest_sequences: Vec<Sequence>,
}

/// A publication on the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Publication {
    pub(crate) name: String,
    /// `FOR ALL TABLES`.
    pub(crate) all_tables: bool,
    /// It publishes UPDATE or DELETE, which need a replica identity.
    pub(crate) updates_or_deletes: bool,
}

/// A table on the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceTable {
    pub(crate) name: TableName,
    /// `relkind`: `r` plain, `p` partitioned.
    pub(crate) kind: String,
    /// `relreplident`: `d` default, `n` nothing, `f` full, `i` index.
    pub(crate) replica_identity: String,
    pub(crate) has_primary_key: bool,
    pub(crate) has_replica_identity_index: bool,
    /// Publications that list it.
    pub(crate) publications: Vec<String>,
    /// For a partition, publications that list its root.
    pub(crate) root_publications: Vec<String>,
    pub(crate) columns: Vec<Column>,
}

/// A column: name, type as `format_type` writes it, and NOT NULL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct Column(pub(crate) String, pub(crate) String, pub(crate) bool);

/// A sequence.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sequence {
    pub(crate) name: TableName,
    pub(crate) increment: i64,
    /// Whether this login may read its value.
    pub(crate) readable: bool,
    /// Its value; `None` before its first `nextval` (or when unreadable).
    pub(crate) last_value: Option<i64>,
    /// Its `MINVALUE` and `MAXVALUE`.
    pub(crate) bounds: (i64, i64),
}

/// Reads both catalogs (three queries on each server), counting each
/// query sent in `queries`.
pub(crate) async fn read(monitor: &Monitor, queries: &mut u32) -> Result<Catalog, MonitorError> {
    let sub = &monitor.subscription;
    let lost_dest = |err: tokio_postgres::Error| monitor.lost_dest(&err);
    let lost_source = |err: tokio_postgres::Error| monitor.lost_source(&err);
    let state = sent(
        queries,
        monitor.dest.query_one(sql::SUBSCRIPTION_STATE, &[&sub.oid]),
    )
    .await
    .map_err(lost_dest)?;
    let subscribed = sent(
        queries,
        monitor.dest.query(sql::SUBSCRIBED_COLUMNS, &[&sub.oid]),
    )
    .await
    .map_err(lost_dest)?
    .iter()
    .map(|row| (name(row, 0), columns(row.get(2))))
    .collect();
    let dest_sequences = sent(queries, sequences(&monitor.dest))
        .await
        .map_err(lost_dest)?;
    let publications = sent(queries, monitor.source.query(sql::PUBLICATIONS, &[]))
        .await
        .map_err(lost_source)?
        .iter()
        .map(|row| Publication {
            name: row.get(0),
            all_tables: row.get(1),
            updates_or_deletes: row.get(2),
        })
        .collect();
    let source_tables = sent(queries, monitor.source.query(sql::SOURCE_TABLES, &[]))
        .await
        .map_err(lost_source)?
        .iter()
        .map(|row| SourceTable {
            name: name(row, 0),
            kind: row.get(2),
            replica_identity: row.get(3),
            has_primary_key: row.get(4),
            has_replica_identity_index: row.get(5),
            publications: row.get(6),
            root_publications: row.get(7),
            columns: columns(row.get(8)),
        })
        .collect();
    let source_sequences = sent(queries, sequences(&monitor.source))
        .await
        .map_err(lost_source)?;
    Ok(Catalog {
        subscription: sub.name.clone(),
        enabled: state.get(0),
        subscribed_publications: state.get(1),
        subscribed,
        publications,
        source_tables,
        source_sequences,
        dest_sequences,
    })
}

/// `query`, counted in `queries` as one query sent.
fn sent<F: std::future::Future>(queries: &mut u32, query: F) -> F {
    *queries += 1;
    query
}

async fn sequences(client: &Client) -> Result<Vec<Sequence>, tokio_postgres::Error> {
    Ok(client
        .query(sql::SEQUENCES, &[])
        .await?
        .iter()
        .map(|row| Sequence {
            name: name(row, 0),
            increment: row.get(2),
            readable: row.get(3),
            last_value: row.get(4),
            bounds: (row.get(5), row.get(6)),
        })
        .collect())
}

fn name(row: &tokio_postgres::Row, first: usize) -> TableName {
    TableName {
        schema: row.get(first),
        name: row.get(first + 1),
    }
}

/// The columns from their JSON; a table without any has none (NULL).
fn columns(json: Option<String>) -> Vec<Column> {
    json.and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}
