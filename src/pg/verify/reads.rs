//! What verifying reads from a server: the pinned session, a table's key
//! and columns, chunk boundaries, digests and row hashes.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_postgres::Client;

use super::{DifferenceKind, VerifyOptions, compare_rows};
use crate::model::TableName;
use crate::pg::sql::quote_ident;
use crate::pg::{ConnInfo, MonitorError, MonitorErrorKind, connect, describe};

/// Pins what changes a value's text, and keeps the session read-only and
/// short of locks.
pub(super) fn session_settings(options: &VerifyOptions) -> String {
    format!(
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
         SET extra_float_digits = 3; SET bytea_output = 'hex'; SET lc_monetary = 'C'; \
         SET standard_conforming_strings = on; SET lock_timeout = '1s'; \
         SET statement_timeout = {}; SET default_transaction_read_only = on",
        options.statement_timeout.as_millis().max(1)
    )
}

pub(super) async fn session(
    which: &str,
    server: &ConnInfo,
    options: &VerifyOptions,
) -> Result<Client, MonitorError> {
    let client = connect(which, server).await?;
    client
        .batch_execute(&session_settings(options))
        .await
        .map_err(|err| failed(which, &err))?;
    Ok(client)
}

pub(super) fn failed(which: &str, err: &tokio_postgres::Error) -> MonitorError {
    MonitorError::new(
        MonitorErrorKind::Lost,
        format!("verifying on the {which}: {}", describe(err)),
    )
}

/// A table's key and the columns compared, as SQL.
pub(super) struct Shape {
    pub(super) table: String,
    /// Key columns, each with `COLLATE "C"` when it has a collation.
    keys: Vec<String>,
    /// The key columns' types, to cast bounds given as text.
    key_types: Vec<String>,
    /// Every column both servers have, in the source's order.
    columns: Vec<String>,
}

impl Shape {
    fn key_list(&self) -> String {
        self.keys.join(", ")
    }

    /// `(k1, k2) > ($1::text::t1, $2::text::t2)` for `op`, parameters from `first`.
    fn bound(&self, op: &str, first: usize) -> String {
        let params: Vec<String> = self
            .key_types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::text::{t}", first + i))
            .collect();
        format!("({}) {op} ({})", self.key_list(), params.join(", "))
    }

    /// The rows of a chunk: after `lo` (none: from the start), up to `hi`
    /// (none: to the end).
    pub(super) fn range(&self, lo: bool, hi: bool) -> String {
        let n = self.keys.len();
        match (lo, hi) {
            (false, false) => "true".to_owned(),
            (true, false) => self.bound(">", 1),
            (false, true) => self.bound("<=", 1),
            (true, true) => format!("{} AND {}", self.bound(">", 1), self.bound("<=", n + 1)),
        }
    }

    pub(super) fn row(&self) -> String {
        format!("ROW({})::text", self.columns.join(", "))
    }

    pub(super) fn key_text(&self) -> String {
        format!("ROW({})::text", self.key_list())
    }
}

/// One chunk's rows on one server: how many, and the sum of their
/// digests (exact, as text).
pub(super) type Digest = (i64, String);

/// The key and the columns both servers have; a table without a primary
/// key or replica identity index cannot be cut by key.
pub(super) async fn shape(src: &Client, dst: &Client, table: &TableName) -> Result<Shape, String> {
    let name = format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    );
    let keys = src
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attcollation <> 0
             FROM (SELECT indexrelid, indkey FROM pg_index
                   WHERE indrelid = $1::text::regclass AND (indisprimary OR indisreplident)
                   ORDER BY indisprimary DESC LIMIT 1) i
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = $1::text::regclass AND a.attnum = k.attnum
             ORDER BY k.n",
            &[&name],
        )
        .await
        .map_err(|err| describe(&err))?;
    if keys.is_empty() {
        return Err("no primary key or replica identity index to cut it by".to_owned());
    }
    let (ours, theirs) = (columns(src, &name).await?, columns(dst, &name).await?);
    Ok(Shape {
        table: name,
        keys: keys
            .iter()
            .map(|r| {
                let column = quote_ident(r.get::<_, &str>(0));
                if r.get::<_, bool>(2) {
                    format!("{column} COLLATE \"C\"")
                } else {
                    column
                }
            })
            .collect(),
        key_types: keys.iter().map(|r| r.get::<_, String>(1)).collect(),
        columns: ours
            .iter()
            .filter(|c| theirs.contains(c))
            .map(|c| quote_ident(c))
            .collect(),
    })
}

/// The table's columns on one server, in their order.
pub(super) async fn columns(client: &Client, name: &str) -> Result<Vec<String>, String> {
    client
        .query(
            "SELECT attname::text FROM pg_attribute
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum",
            &[&name],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
        .map_err(|err| describe(&err))
}

/// The key `rows` rows after `lo` on the source (its text per column), or
/// `None` when fewer are left: the last chunk runs to the end.
pub(super) async fn boundary(
    src: &Client,
    shape: &Shape,
    lo: Option<&[String]>,
    rows: u32,
) -> Result<Option<Vec<String>>, String> {
    let texts: Vec<String> = shape
        .keys
        .iter()
        .map(|k| format!("({})::text", k.trim_end_matches(" COLLATE \"C\"")))
        .collect();
    let filter = if lo.is_some() {
        shape.bound(">", 1)
    } else {
        "true".to_owned()
    };
    let sql = format!(
        "SELECT {} FROM {} WHERE {filter} ORDER BY {} OFFSET {} LIMIT 1",
        texts.join(", "),
        shape.table,
        shape.key_list(),
        rows.max(1) - 1
    );
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = lo
        .unwrap_or_default()
        .iter()
        .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    let row = src
        .query_opt(&sql, &params)
        .await
        .map_err(|err| describe(&err))?;
    Ok(row.map(|row| (0..texts.len()).map(|i| row.get::<_, String>(i)).collect()))
}

pub(super) fn digest_sql(shape: &Shape, range: &str) -> String {
    format!(
        "SELECT count(*), coalesce(sum(('x' || left(md5({}), 16))::bit(64)::bigint), 0)::text \
         FROM {} WHERE {range}",
        shape.row(),
        shape.table
    )
}

pub(super) fn params<'a>(
    bounds: &'a [&'a str],
) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    bounds
        .iter()
        .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

pub(super) async fn digest(
    client: &Client,
    shape: &Shape,
    range: &str,
    bounds: &[&str],
) -> Result<Digest, String> {
    let row = client
        .query_one(&digest_sql(shape, range), &params(bounds))
        .await
        .map_err(|err| describe(&err))?;
    Ok((row.get(0), row.get(1)))
}

/// What `read` finds on the source in one `REPEATABLE READ READ ONLY`
/// snapshot, returned once the subscription's `slot` confirmed that
/// snapshot's WAL position: the destination read next has applied it.
pub(super) async fn in_applied_snapshot<T>(
    src: &Client,
    slot: Option<&str>,
    read: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    src.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|err| describe(&err))?;
    let found = async {
        // The snapshot is taken by this first query, so its position is
        // the snapshot's.
        let lsn: String = src
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(|err| describe(&err))?
            .get(0);
        Ok::<_, String>((read.await?, lsn))
    }
    .await;
    let _ = src.batch_execute("COMMIT").await;
    let (found, lsn) = found?;
    if let Some(slot) = slot {
        applied_past(src, slot, &lsn).await?;
    }
    Ok(found)
}

/// Waits (10 s at most) until the subscription's slot confirmed `lsn`.
async fn applied_past(src: &Client, slot: &str, lsn: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let done: Option<bool> = src
            .query_opt(
                "SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot, &lsn],
            )
            .await
            .map_err(|err| describe(&err))?
            .and_then(|row| row.get(0));
        if done != Some(false) || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The keys of a chunk's rows that differ, in key order.
pub(super) async fn differing_rows(
    src: &Client,
    dst: &Client,
    shape: &Shape,
    range: &str,
    bounds: &[&str],
) -> Result<Vec<(String, DifferenceKind)>, String> {
    let sql = format!(
        "SELECT {}, md5({}) FROM {} WHERE {range}",
        shape.key_text(),
        shape.row(),
        shape.table
    );
    let theirs = row_hashes(src, &sql, &params(bounds)).await?;
    let ours = row_hashes(dst, &sql, &params(bounds)).await?;
    Ok(compare_rows(&theirs, &ours))
}

/// Each row's key and digest, by key.
pub(super) async fn row_hashes(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<BTreeMap<String, String>, String> {
    client
        .query(sql, params)
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect()
        })
        .map_err(|err| describe(&err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_whole_key_space_with_open_ends() {
        let shape = Shape {
            table: "\"public\".\"t\"".into(),
            keys: vec!["\"name\" COLLATE \"C\"".into(), "\"n\"".into()],
            key_types: vec!["text".into(), "integer".into()],
            columns: vec!["\"name\"".into(), "\"n\"".into(), "\"v\"".into()],
        };
        assert_eq!(shape.range(false, false), "true");
        assert_eq!(
            shape.range(false, true),
            "(\"name\" COLLATE \"C\", \"n\") <= ($1::text::text, $2::text::integer)"
        );
        assert_eq!(
            shape.range(true, true),
            "(\"name\" COLLATE \"C\", \"n\") > ($1::text::text, $2::text::integer) AND \
             (\"name\" COLLATE \"C\", \"n\") <= ($3::text::text, $4::text::integer)"
        );
    }
}
