//! Data verification: whether the destination holds the same rows as the
//! source, chunk by chunk of the key, localized to the rows that differ.
//!
//! Each table is cut into ranges of its primary key (or replica identity
//! index) on the source; for each range, both servers compute `count(*)`
//! and an order-independent 64-bit digest sum of the rows' text, so only
//! two numbers per chunk cross the network. The sessions are pinned so a
//! value's text is the same on both servers, text keys are compared with
//! `COLLATE "C"`, and the first and last ranges are open so rows outside
//! the source's keys are found too. A source chunk is read in a
//! `REPEATABLE READ READ ONLY` transaction, and the destination's once the
//! subscription confirmed the WAL position of that snapshot; a chunk that
//! differs is read again before it counts, and one whose source rows keep
//! changing is `unstable`, not a difference.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::Client;

use super::checks::Findings;
use super::sql::quote_ident;
use super::{ConnInfo, MonitorError, MonitorErrorKind, connect, describe};
use crate::model::named::named_enum;
use crate::model::{CutoverItem, CutoverKind, TableName};
use crate::printable::printable_line;

/// How `--verify` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Rows per chunk (default 10,000).
    pub chunk_rows: u32,
    /// Reads again of a chunk that differs before it counts (default 3).
    pub retries: u32,
    /// Differing keys named per table, at most (default 100).
    pub max_rows: usize,
    /// Show a short hash of each key instead of the key (personal data).
    pub hide_keys: bool,
    /// The longest one statement may take (default 30 s).
    pub statement_timeout: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            chunk_rows: 10_000,
            retries: 3,
            max_rows: 100,
            hide_keys: false,
            statement_timeout: Duration::from_secs(30),
        }
    }
}

named_enum! {
    /// What verifying a table found.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum VerifyStatus {
        /// Every chunk the same on both servers.
        Verified = "verified",
        /// Rows differ.
        Mismatch = "mismatch",
        /// A chunk differed on every try while the source kept changing it.
        Unstable = "unstable",
        /// Cannot be verified (no key, no rights, gone); see the detail.
        Unverifiable = "unverifiable",
    }
}

named_enum! {
    /// How a row differs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum DifferenceKind {
        /// On the source only.
        Missing = "missing",
        /// On the destination only.
        Extra = "extra",
        /// On both, with different values.
        Different = "different",
    }
}

/// One row that differs, by its key (shown escaped, cut at 200 characters, or
/// hashed); values are never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowDifference {
    /// The key, as `(1, 'abc')` reads in SQL.
    pub key: String,
    /// How it differs.
    pub kind: DifferenceKind,
}

/// What verifying one table found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableVerification {
    /// The table, as `schema.name`.
    #[serde(serialize_with = "as_text")]
    pub table: TableName,
    /// The outcome.
    pub status: VerifyStatus,
    /// Chunks compared.
    pub chunks: u64,
    /// Rows compared on the source.
    pub rows: u64,
    /// Chunks that needed more than one read.
    pub chunks_retried: u64,
    /// The rows that differ, at most [`VerifyOptions::max_rows`].
    pub differences: Vec<RowDifference>,
    /// Why a table is unverifiable or unstable.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

fn as_text<S: serde::Serializer>(table: &TableName, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(table)
}

/// Pins what changes a value's text, and keeps the session read-only and
/// short of locks.
fn session_settings(options: &VerifyOptions) -> String {
    format!(
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
         SET extra_float_digits = 3; SET bytea_output = 'hex'; SET lc_monetary = 'C'; \
         SET standard_conforming_strings = on; SET lock_timeout = '1s'; \
         SET statement_timeout = {}; SET default_transaction_read_only = on",
        options.statement_timeout.as_millis().max(1)
    )
}

async fn session(
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

fn failed(which: &str, err: &tokio_postgres::Error) -> MonitorError {
    MonitorError::new(
        MonitorErrorKind::Lost,
        format!("verifying on the {which}: {}", describe(err)),
    )
}

/// A table's key and the columns compared, as SQL.
struct Shape {
    table: String,
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
    fn range(&self, lo: bool, hi: bool) -> String {
        let n = self.keys.len();
        match (lo, hi) {
            (false, false) => "true".to_owned(),
            (true, false) => self.bound(">", 1),
            (false, true) => self.bound("<=", 1),
            (true, true) => format!("{} AND {}", self.bound(">", 1), self.bound("<=", n + 1)),
        }
    }

    fn row(&self) -> String {
        format!("ROW({})::text", self.columns.join(", "))
    }

    fn key_text(&self) -> String {
        format!("ROW({})::text", self.key_list())
    }
}

/// One chunk's rows on one server: how many, and the sum of their
/// digests (exact, as text).
type Digest = (i64, String);

/// Verifies `tables` between `source` and `dest`; `slot` is the
/// subscription's slot on the source, whose confirmed position says when
/// the destination has applied what a source snapshot holds.
pub(crate) async fn verify(
    source: &ConnInfo,
    dest: &ConnInfo,
    slot: Option<&str>,
    tables: &[TableName],
    options: &VerifyOptions,
) -> Result<Vec<TableVerification>, MonitorError> {
    let src = session("source", source, options).await?;
    let dst = session("destination", dest, options).await?;
    let mut found = Vec::new();
    for table in tables {
        let mut verification = TableVerification {
            table: table.clone(),
            status: VerifyStatus::Verified,
            chunks: 0,
            rows: 0,
            chunks_retried: 0,
            differences: Vec::new(),
            detail: String::new(),
        };
        if let Err(reason) = verify_table(&src, &dst, slot, table, options, &mut verification).await
        {
            verification.status = VerifyStatus::Unverifiable;
            verification.detail = reason;
        }
        found.push(verification);
    }
    Ok(found)
}

async fn verify_table(
    src: &Client,
    dst: &Client,
    slot: Option<&str>,
    table: &TableName,
    options: &VerifyOptions,
    out: &mut TableVerification,
) -> Result<(), String> {
    let shape = shape(src, dst, table).await?;
    let mut lo: Option<Vec<String>> = None;
    let mut unstable = false;
    loop {
        let hi = boundary(src, &shape, lo.as_deref(), options.chunk_rows).await?;
        let mut bounds: Vec<&str> = Vec::new();
        if let Some(lo) = &lo {
            bounds.extend(lo.iter().map(String::as_str));
        }
        if let Some(hi) = &hi {
            bounds.extend(hi.iter().map(String::as_str));
        }
        let range = shape.range(lo.is_some(), hi.is_some());
        let (theirs, lsn) = source_digest(src, &shape, &range, &bounds).await?;
        if let (Some(slot), Some(lsn)) = (slot, &lsn) {
            applied_past(src, slot, lsn).await?;
        }
        let ours = digest(dst, &shape, &range, &bounds).await?;
        out.chunks += 1;
        out.rows += u64::try_from(theirs.0).unwrap_or(0);
        if ours != theirs {
            // The rows that differ now, then only those, read again: a
            // row that was in flight matches once it is applied.
            out.chunks_retried += 1;
            let suspects = differing_rows(src, dst, &shape, &range, &bounds).await?;
            let (differ, changing) = settle(src, dst, slot, &shape, suspects, options).await?;
            if !changing.is_empty() {
                unstable = true;
                out.detail = format!(
                    "{} row(s) kept changing on the source (first: {})",
                    changing.len(),
                    shown_key(&changing[0], options.hide_keys)
                );
            }
            if !differ.is_empty() {
                out.status = VerifyStatus::Mismatch;
                let room = options.max_rows.saturating_sub(out.differences.len());
                out.differences
                    .extend(
                        differ
                            .into_iter()
                            .take(room)
                            .map(|(key, kind)| RowDifference {
                                key: shown_key(&key, options.hide_keys),
                                kind,
                            }),
                    );
            }
        }
        match hi {
            Some(hi) => lo = Some(hi),
            None => break,
        }
    }
    if unstable && out.status == VerifyStatus::Verified {
        out.status = VerifyStatus::Unstable;
    }
    Ok(())
}

/// The key and the columns both servers have; a table without a primary
/// key or replica identity index cannot be cut by key.
async fn shape(src: &Client, dst: &Client, table: &TableName) -> Result<Shape, String> {
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
async fn columns(client: &Client, name: &str) -> Result<Vec<String>, String> {
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
async fn boundary(
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

fn digest_sql(shape: &Shape, range: &str) -> String {
    format!(
        "SELECT count(*), coalesce(sum(('x' || left(md5({}), 16))::bit(64)::bigint), 0)::text \
         FROM {} WHERE {range}",
        shape.row(),
        shape.table
    )
}

fn params<'a>(bounds: &'a [&'a str]) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    bounds
        .iter()
        .map(|s| s as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect()
}

async fn digest(
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

/// The source chunk in a snapshot, and the WAL position the snapshot was
/// taken at.
async fn source_digest(
    src: &Client,
    shape: &Shape,
    range: &str,
    bounds: &[&str],
) -> Result<(Digest, Option<String>), String> {
    src.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|err| describe(&err))?;
    let read = async {
        let lsn: String = src
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(|err| describe(&err))?
            .get(0);
        Ok::<_, String>((digest(src, shape, range, bounds).await?, Some(lsn)))
    }
    .await;
    let _ = src.batch_execute("COMMIT").await;
    read
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
async fn differing_rows(
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

/// Each key of `theirs` (the source) missing or different in `ours`, then
/// each key of `ours` only.
fn compare_rows(
    theirs: &BTreeMap<String, String>,
    ours: &BTreeMap<String, String>,
) -> Vec<(String, DifferenceKind)> {
    let mut found = Vec::new();
    for (key, hash) in theirs {
        match ours.get(key) {
            None => found.push((key.clone(), DifferenceKind::Missing)),
            Some(other) if other != hash => found.push((key.clone(), DifferenceKind::Different)),
            Some(_) => {}
        }
    }
    found.extend(
        ours.keys()
            .filter(|key| !theirs.contains_key(*key))
            .map(|key| (key.clone(), DifferenceKind::Extra)),
    );
    found
}

/// Reads `suspects` again, only them, up to `retries` times with a
/// growing wait, each time from a new source snapshot and once the
/// destination applied it: what still differs, and the keys whose source
/// row changed between the last two reads (in flight, not a difference).
async fn settle(
    src: &Client,
    dst: &Client,
    slot: Option<&str>,
    shape: &Shape,
    mut suspects: Vec<(String, DifferenceKind)>,
    options: &VerifyOptions,
) -> Result<(Vec<(String, DifferenceKind)>, Vec<String>), String> {
    let sql = format!(
        "SELECT {key}, md5({}) FROM {} WHERE {key} = ANY($1::text[])",
        shape.row(),
        shape.table,
        key = shape.key_text()
    );
    let mut previous: Option<BTreeMap<String, String>> = None;
    let mut changing = Vec::new();
    for attempt in 1..=options.retries {
        if suspects.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200) * attempt).await;
        let keys: Vec<String> = suspects.iter().map(|(key, _)| key.clone()).collect();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&keys];
        src.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|err| describe(&err))?;
        let read = async {
            let lsn: String = src
                .query_one("SELECT pg_current_wal_lsn()::text", &[])
                .await
                .map_err(|err| describe(&err))?
                .get(0);
            Ok::<_, String>((row_hashes(src, &sql, &params).await?, lsn))
        }
        .await;
        let _ = src.batch_execute("COMMIT").await;
        let (theirs, lsn) = read?;
        if let Some(slot) = slot {
            applied_past(src, slot, &lsn).await?;
        }
        let ours = row_hashes(dst, &sql, &params).await?;
        changing = previous
            .as_ref()
            .map(|before| {
                keys.iter()
                    .filter(|key| before.get(*key) != theirs.get(*key))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        suspects = compare_rows(&theirs, &ours);
        previous = Some(theirs);
    }
    let (unstable, differ): (Vec<_>, Vec<_>) = suspects
        .into_iter()
        .partition(|(key, _)| changing.contains(key));
    Ok((differ, unstable.into_iter().map(|(key, _)| key).collect()))
}

/// Each row's key and digest, by key.
async fn row_hashes(
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

/// A blocker per table whose rows differ (naming up to five keys), and a
/// warning per table that could not be verified or kept changing.
pub(crate) fn findings(verification: &[TableVerification], findings: &mut Findings) {
    for table in verification {
        let item = |detail: String| CutoverItem {
            kind: CutoverKind::DataMismatch,
            table: Some(table.table.to_string()),
            detail,
        };
        match table.status {
            VerifyStatus::Verified => {}
            VerifyStatus::Mismatch => {
                let named: Vec<String> = table
                    .differences
                    .iter()
                    .take(5)
                    .map(|d| format!("{} ({})", d.key, d.kind))
                    .collect();
                findings.blockers.push(item(format!(
                    "{} row(s) differ: {}",
                    table.differences.len(),
                    named.join(", ")
                )));
            }
            VerifyStatus::Unstable | VerifyStatus::Unverifiable => findings
                .warnings
                .push(item(format!("{}: {}", table.status, table.detail))),
        }
    }
}

/// A key as shown: escaped and cut at 200 characters, or a short hash of it.
fn shown_key(key: &str, hide: bool) -> String {
    if hide {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        format!("#{:016x}", hasher.finish())
    } else {
        printable_line(key, 200).into_owned()
    }
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

    #[test]
    fn keys_are_shown_escaped_and_cut_or_hashed() {
        assert_eq!(shown_key("(5)", false), "(5)");
        assert!(!shown_key("(\"a\x1b[2J\")", false).contains('\x1b'));
        let long = shown_key(&"x".repeat(1000), false);
        assert!(
            long.len() < 240 && long.ends_with("(800 more characters)"),
            "{long}"
        );
        let hidden = shown_key("(alice@example.com)", true);
        assert!(
            hidden.starts_with('#') && !hidden.contains("alice"),
            "{hidden}"
        );
    }
}
