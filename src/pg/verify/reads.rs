//! What verifying reads from a server: a table's key and columns, chunk
//! boundaries, digests and row hashes, and reading both servers at the
//! same point of the source's history.

use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::session::{Failure, RowHash, Sessions, fail};
use super::{Rows, compare_rows};
use crate::model::{DifferenceKind, TableName};
use crate::pg::sql::quote_ident;

/// A range of the key: after `lo` (none: from the start) up to and with
/// `hi` (none: to the end). Bounds are the key's columns as text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Range {
    pub(super) lo: Option<Vec<String>>,
    pub(super) hi: Option<Vec<String>>,
}

impl Range {
    /// The bound values, `lo`'s then `hi`'s, as query parameters.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.lo
            .iter()
            .chain(self.hi.iter())
            .flatten()
            .map(|s| s as &(dyn ToSql + Sync))
            .collect()
    }
}

/// A table's key and the columns compared, as SQL.
#[derive(Debug, Clone)]
pub(super) struct Shape {
    pub(super) table: String,
    /// Key columns, each with `COLLATE "C"` when it has a collation; none
    /// for a table without a usable key.
    keys: Vec<String>,
    /// The key columns' types, to cast bounds given as text.
    key_types: Vec<String>,
    /// Every column both servers have, in the source's order.
    columns: Vec<String>,
    /// `pg_table_size()` on the source.
    pub(super) bytes: u64,
    /// The source's estimate of its rows; 0 when unknown.
    pub(super) rows_estimate: u64,
    /// How rows are hashed.
    hash: RowHash,
    /// Whether the scan that hashes a chunk also finds its end, as the
    /// `max` of a single key column; otherwise the end is looked up first.
    end_in_scan: bool,
}

impl Shape {
    pub(super) fn has_key(&self) -> bool {
        !self.keys.is_empty()
    }

    fn key_list(&self) -> String {
        self.keys.join(", ")
    }

    /// The key columns qualified by the table, for `ORDER BY`: a bare name
    /// there would mean an output column of that name first (the key's
    /// text, in text order).
    fn key_order(&self) -> String {
        self.keys
            .iter()
            .map(|k| format!("{}.{k}", self.table))
            .collect::<Vec<_>>()
            .join(", ")
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

    /// The condition that selects `range`'s rows.
    pub(super) fn filter(&self, range: &Range) -> String {
        let n = self.keys.len();
        match (range.lo.is_some(), range.hi.is_some()) {
            (false, false) => "true".to_owned(),
            (true, false) => self.bound(">", 1),
            (false, true) => self.bound("<=", 1),
            (true, true) => format!("{} AND {}", self.bound(">", 1), self.bound("<=", n + 1)),
        }
    }

    /// A row's 64-bit hash, as SQL.
    fn row_hash(&self) -> String {
        self.hash
            .of(&format!("ROW({})::text", self.columns.join(", ")))
    }

    fn key_text(&self) -> String {
        format!("ROW({})::text", self.key_list())
    }

    /// Each key column as text, to be given back as a bound.
    fn key_texts(&self) -> String {
        self.keys
            .iter()
            .map(|k| format!("({})::text", k.trim_end_matches(" COLLATE \"C\"")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The key, the columns both servers have, and the source's size; a table
/// without a primary key or replica identity index has no key.
pub(super) async fn shape(s: &Sessions, table: &TableName) -> Result<Shape, Failure> {
    let name = format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    );
    let keys = s
        .src
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
        .map_err(fail)?;
    let size = s
        .src
        .query_one(
            "SELECT pg_table_size(oid), greatest(reltuples, 0)::bigint FROM pg_class
             WHERE oid = $1::text::regclass",
            &[&name],
        )
        .await
        .map_err(fail)?;
    let (ours, theirs) = (columns(&s.src, &name).await?, columns(&s.dst, &name).await?);
    let key_types = keys.iter().map(|r| r.get::<_, String>(1)).collect();
    let keys: Vec<String> = keys
        .iter()
        .map(|r| {
            let column = quote_ident(r.get::<_, &str>(0));
            if r.get::<_, bool>(2) {
                format!("{column} COLLATE \"C\"")
            } else {
                column
            }
        })
        .collect();
    Ok(Shape {
        end_in_scan: has_max(&s.src, &name, &keys).await?,
        table: name,
        keys,
        key_types,
        columns: ours
            .iter()
            .filter(|c| theirs.contains(c))
            .map(|c| quote_ident(c))
            .collect(),
        bytes: u64::try_from(size.get::<_, i64>(0)).unwrap_or(0),
        rows_estimate: u64::try_from(size.get::<_, i64>(1)).unwrap_or(0),
        hash: s.hash,
    })
}

/// Whether the table's key is one column whose type has `max` (most do;
/// `uuid`, `bytea` and `boolean` do not on older servers).
async fn has_max(src: &Client, table: &str, keys: &[String]) -> Result<bool, Failure> {
    let [key] = keys else {
        return Ok(false);
    };
    match src
        .simple_query(&format!("SELECT max({key}) FROM {table} WHERE false"))
        .await
    {
        Ok(_) => Ok(true),
        Err(err) if err.code() == Some(&SqlState::UNDEFINED_FUNCTION) => Ok(false),
        Err(err) => Err(fail(err)),
    }
}

/// The table's columns on one server, in their order.
async fn columns(client: &Client, name: &str) -> Result<Vec<String>, Failure> {
    client
        .query(
            "SELECT attname::text FROM pg_attribute
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum",
            &[&name],
        )
        .await
        .map(|rows| rows.iter().map(|r| r.get::<_, String>(0)).collect())
        .map_err(fail)
}

/// The key of the `rows`-th row of `range` on the source (its text per
/// column), or `None` when the range holds fewer.
pub(super) async fn boundary(
    src: &Client,
    shape: &Shape,
    range: &Range,
    rows: u64,
) -> Result<Option<Vec<String>>, Failure> {
    let sql = format!(
        "SELECT {} FROM {} WHERE {} ORDER BY {} OFFSET {} LIMIT 1",
        shape.key_texts(),
        shape.table,
        shape.filter(range),
        shape.key_order(),
        rows.max(1) - 1
    );
    let row = src.query_opt(&sql, &range.params()).await.map_err(fail)?;
    Ok(row.map(|row| {
        (0..shape.keys.len())
            .map(|i| row.get::<_, String>(i))
            .collect()
    }))
}

/// One range's rows on one server: how many, the sum of their 64-bit
/// hashes (exact, as text), and, for a table whose row count the source
/// does not know, the bytes of their text (to pace by).
#[derive(Debug, Clone)]
pub(super) struct Digest {
    pub(super) rows: u64,
    pub(super) sum: String,
    pub(super) text_bytes: u64,
}

impl PartialEq for Digest {
    /// The same rows: the text's length aside.
    fn eq(&self, other: &Digest) -> bool {
        self.rows == other.rows && self.sum == other.sum
    }
}

/// The sum of `bytes` (the rows' text length) as SQL: the text's length
/// doubles the cost, so it is only read when the row count is unknown.
fn text_bytes_sum(shape: &Shape, bytes: &str) -> String {
    match shape.rows_estimate {
        0 => format!("coalesce(sum({bytes}), 0)::bigint"),
        _ => "0::bigint".to_owned(),
    }
}

fn digest_sql(shape: &Shape, filter: &str) -> String {
    let length = format!("octet_length(ROW({})::text)", shape.columns.join(", "));
    format!(
        "SELECT count(*), coalesce(sum({}), 0)::text, {} FROM {} WHERE {filter}",
        shape.row_hash(),
        text_bytes_sum(shape, &length),
        shape.table
    )
}

/// The digest of the first `rows` rows of `range` (open at its end) in key
/// order, and the last one's key: one scan, for a key [`Shape::end_in_scan`].
fn chunk_sql(shape: &Shape, range: &Range, rows: u64) -> String {
    format!(
        "SELECT count(*), coalesce(sum(h), 0)::text, {}, max(k)::text FROM (SELECT {} AS h, \
         octet_length(ROW({})::text) AS b, {} AS k FROM {} WHERE {} ORDER BY {} LIMIT {rows}) AS c",
        text_bytes_sum(shape, "b"),
        shape.row_hash(),
        shape.columns.join(", "),
        shape.key_list(),
        shape.table,
        shape.filter(range),
        shape.key_order(),
    )
}

fn digest_of(row: &tokio_postgres::Row) -> Digest {
    let count = |i| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
    Digest {
        rows: count(0),
        sum: row.get(1),
        text_bytes: count(2),
    }
}

pub(super) async fn digest(
    client: &Client,
    shape: &Shape,
    range: &Range,
) -> Result<Digest, Failure> {
    let row = client
        .query_one(&digest_sql(shape, &shape.filter(range)), &range.params())
        .await
        .map_err(fail)?;
    Ok(digest_of(&row))
}

/// The source's reading of a chunk: its range, its digest, and how long
/// reading it took.
#[derive(Debug)]
pub(super) struct SourceChunk {
    pub(super) range: Range,
    pub(super) digest: Digest,
    pub(super) took: Duration,
}

/// Reads the chunk of up to `rows` source rows after `lo` (none: from the
/// start) in one snapshot, then waits for the subscription to apply it as
/// [`read_both`] does: its range ends at the last row read, or runs to the
/// end of the key space when the source holds fewer.
pub(super) async fn source_chunk(
    src: &Client,
    slot: Option<&str>,
    shape: &Shape,
    lo: Option<Vec<String>>,
    rows: u64,
) -> Result<SourceChunk, Failure> {
    let rows = rows.max(1);
    let read = async {
        let started = Instant::now();
        let open = Range { lo, hi: None };
        let (digest, hi) = if shape.end_in_scan {
            let sql = chunk_sql(shape, &open, rows);
            let row = src.query_one(&sql, &open.params()).await.map_err(fail)?;
            let digest = digest_of(&row);
            let hi = (digest.rows >= rows).then(|| vec![row.get::<_, String>(3)]);
            (digest, hi)
        } else {
            let hi = boundary(src, shape, &open, rows).await?;
            let range = Range { hi, ..open.clone() };
            (digest(src, shape, &range).await?, range.hi)
        };
        let range = Range { hi, ..open };
        Ok(SourceChunk {
            range,
            digest,
            took: started.elapsed(),
        })
    };
    Ok(read_both(src, slot, read, async { Ok(()) }).await?.0)
}

/// `on_source` read in one `REPEATABLE READ READ ONLY` snapshot of the
/// source and, at the same time, `on_dest` on the destination once the
/// subscription's `slot` confirmed that snapshot's WAL position (10 s at
/// most): both reads hold the same committed changes unless one is still
/// in flight.
pub(super) async fn read_both<T, U>(
    src: &Client,
    slot: Option<&str>,
    on_source: impl std::future::Future<Output = Result<T, Failure>>,
    on_dest: impl std::future::Future<Output = Result<U, Failure>>,
) -> Result<(T, U), Failure> {
    src.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(fail)?;
    let found = async {
        // The snapshot is taken by this first query, so its position is
        // the snapshot's; the slot's position is not transactional.
        let lsn: String = src
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .map_err(fail)?
            .get(0);
        if let Some(slot) = slot {
            applied_past(src, slot, &lsn).await?;
        }
        tokio::try_join!(on_source, on_dest)
    }
    .await;
    let _ = src.batch_execute("COMMIT").await;
    found
}

/// How long a destination read waits for the subscription to apply a
/// source snapshot before it reads anyway (a chunk that then differs is
/// read again).
pub(super) const APPLIED_WAIT: Duration = Duration::from_secs(10);

/// Waits ([`APPLIED_WAIT`] at most) until the subscription's slot confirmed `lsn`.
async fn applied_past(src: &Client, slot: &str, lsn: &str) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + APPLIED_WAIT;
    loop {
        let done: Option<bool> = src
            .query_opt(
                "SELECT confirmed_flush_lsn >= $2::text::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot, &lsn],
            )
            .await
            .map_err(fail)?
            .and_then(|row| row.get(0));
        if done != Some(false) || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Bytes of WAL the subscription's slot has not confirmed; 0 when unknown.
pub(super) async fn slot_lag(src: &Client, slot: &str) -> Result<u64, Failure> {
    let lag: Option<i64> = src
        .query_opt(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(fail)?
        .and_then(|row| row.get(0));
    Ok(lag.and_then(|lag| u64::try_from(lag).ok()).unwrap_or(0))
}

/// Rows read per server to compare a range row by row, at most: a range
/// is bisected down to [`super::table::ROW_COMPARE_ROWS`] source rows, so
/// only a destination with many rows the source lacks reaches it.
pub(super) const MAX_ROWS_READ: i64 = 20_000;

/// The keys of a range's rows that differ, in key order (the source's
/// read in an applied snapshot); and whether a server held more than
/// [`MAX_ROWS_READ`] rows there, the rest uncompared.
pub(super) async fn differing_rows(
    s: &Sessions,
    slot: Option<&str>,
    shape: &Shape,
    range: &Range,
) -> Result<(Vec<(String, DifferenceKind)>, bool), Failure> {
    let sql = format!(
        "SELECT {}, ({})::text FROM {} WHERE {} ORDER BY {} LIMIT {MAX_ROWS_READ}",
        shape.key_text(),
        shape.row_hash(),
        shape.table,
        shape.filter(range),
        shape.key_order(),
    );
    let (theirs, ours) = read_both(
        &s.src,
        slot,
        row_hashes(&s.src, &sql, &range.params()),
        row_hashes(&s.dst, &sql, &range.params()),
    )
    .await?;
    let cut = [&theirs, &ours]
        .iter()
        .any(|rows| rows.len() as i64 >= MAX_ROWS_READ);
    Ok((compare_rows(&theirs, &ours), cut))
}

/// The rows of `keys` (as [`Shape::key_text`] gives them) within `range`
/// (which keeps the read to the range's part of the key's index), in key
/// order.
pub(super) async fn rows_by_key(
    client: &Client,
    shape: &Shape,
    range: &Range,
    keys: &[String],
) -> Result<Rows, Failure> {
    let mut params = range.params();
    params.push(&keys);
    let sql = format!(
        "SELECT {key}, ({})::text FROM {} WHERE {} AND {key} = ANY(${}::text[]) ORDER BY {}",
        shape.row_hash(),
        shape.table,
        shape.filter(range),
        params.len(),
        shape.key_order(),
        key = shape.key_text()
    );
    row_hashes(client, &sql, &params).await
}

/// Each row's key and hash, in the query's order.
async fn row_hashes(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Rows, Failure> {
    client
        .query(sql, params)
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect()
        })
        .map_err(fail)
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
            bytes: 0,
            rows_estimate: 0,
            hash: RowHash::Fast,
            end_in_scan: false,
        };
        let key = |k: &str| Some(vec![k.to_owned(), "1".to_owned()]);
        let range = |lo, hi| Range { lo, hi };
        assert_eq!(shape.filter(&range(None, None)), "true");
        assert_eq!(
            shape.filter(&range(None, key("m"))),
            "(\"name\" COLLATE \"C\", \"n\") <= ($1::text::text, $2::text::integer)"
        );
        let both = range(key("a"), key("m"));
        assert_eq!(
            shape.filter(&both),
            "(\"name\" COLLATE \"C\", \"n\") > ($1::text::text, $2::text::integer) AND \
             (\"name\" COLLATE \"C\", \"n\") <= ($3::text::text, $4::text::integer)"
        );
        assert_eq!(both.params().len(), 4);
        assert_eq!(
            shape.key_order(),
            "\"public\".\"t\".\"name\" COLLATE \"C\", \"public\".\"t\".\"n\""
        );
    }

    #[test]
    fn digests_hash_each_row_and_read_its_length_only_when_the_row_count_is_unknown() {
        let mut shape = Shape {
            table: "\"public\".\"t\"".into(),
            keys: vec!["\"id\"".into()],
            key_types: vec!["bigint".into()],
            columns: vec!["\"id\"".into(), "\"v\"".into()],
            bytes: 8192,
            rows_estimate: 100,
            hash: RowHash::Fast,
            end_in_scan: true,
        };
        assert_eq!(
            digest_sql(&shape, "true"),
            "SELECT count(*), coalesce(sum(hashtextextended(ROW(\"id\", \"v\")::text COLLATE \"C\", 0)), 0)::text, \
             0::bigint FROM \"public\".\"t\" WHERE true"
        );
        let after = Range {
            lo: Some(vec!["41".into()]),
            hi: None,
        };
        assert_eq!(
            chunk_sql(&shape, &after, 5000),
            "SELECT count(*), coalesce(sum(h), 0)::text, 0::bigint, max(k)::text FROM (SELECT \
             hashtextextended(ROW(\"id\", \"v\")::text COLLATE \"C\", 0) AS h, \
             octet_length(ROW(\"id\", \"v\")::text) AS b, \"id\" AS k FROM \"public\".\"t\" \
             WHERE (\"id\") > ($1::text::bigint) ORDER BY \"public\".\"t\".\"id\" LIMIT 5000) AS c",
            "one scan hashes the rows in key order and finds the last key"
        );
        shape.hash = RowHash::Md5;
        shape.rows_estimate = 0;
        assert!(chunk_sql(&shape, &after, 10).contains("coalesce(sum(b), 0)::bigint"));
        let sql = digest_sql(&shape, "true");
        assert!(
            sql.contains("('x' || left(md5(ROW(\"id\", \"v\")::text), 16))::bit(64)::bigint")
                && sql.contains("sum(octet_length(ROW(\"id\", \"v\")::text))"),
            "{sql}"
        );
    }
}
