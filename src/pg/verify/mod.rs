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

mod reads;

use self::reads::{
    Shape, boundary, differing_rows, digest, in_applied_snapshot, row_hashes, session, shape,
};
use super::checks::Findings;
use super::{ConnInfo, MonitorError};
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
    /// Rows that differ, all of them.
    pub mismatched_rows: u64,
    /// The rows that differ, the first [`VerifyOptions::max_rows`].
    pub differences: Vec<RowDifference>,
    /// Why a table is unverifiable or unstable.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

fn as_text<S: serde::Serializer>(table: &TableName, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(table)
}

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
            mismatched_rows: 0,
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
        let theirs = in_applied_snapshot(src, slot, digest(src, &shape, &range, &bounds)).await?;
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
                out.mismatched_rows += differ.len() as u64;
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

/// Each key of `theirs` (the source) missing or different in `ours`, then
/// each key of `ours` only.
pub(super) fn compare_rows(
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
        let theirs = in_applied_snapshot(src, slot, row_hashes(src, &sql, &params)).await?;
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
                    table.mismatched_rows,
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
