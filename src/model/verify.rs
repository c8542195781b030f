//! Data verification as every surface shows it: how far it has come, and
//! what it found per table.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::TableName;
use super::named::named_enum;
use super::serde_util::{null_as_default, timestamp};
use super::table::UnknownStatus;

named_enum! {
    /// Where verifying a table stands, or what it found.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum VerifyStatus {
        /// Not verified yet.
        #[default]
        Pending = "pending",
        /// Being verified now.
        Verifying = "verifying",
        /// Every chunk the same on both servers.
        Verified = "verified",
        /// Rows differ.
        Mismatch = "mismatch",
        /// A chunk differed on every try while the source kept changing it.
        Unstable = "unstable",
        /// Cannot be verified (no rights, gone, a lost server); see the detail.
        Unverifiable = "unverifiable",
        /// Not verified by choice (not streaming yet).
        Skipped = "skipped",
    }
    keep unknown names in Other(UnknownStatus);
}

impl VerifyStatus {
    /// Whether verifying the table has come to an outcome.
    pub fn is_done(self) -> bool {
        matches!(
            self,
            VerifyStatus::Verified
                | VerifyStatus::Mismatch
                | VerifyStatus::Unstable
                | VerifyStatus::Unverifiable
        )
    }
}

named_enum! {
    /// How a row differs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum DifferenceKind {
        /// On the source only.
        Missing = "missing",
        /// On the destination only.
        Extra = "extra",
        /// On both, with different values.
        Different = "different",
    }
    keep unknown names in Other(UnknownStatus);
}

/// One row that differs, by its key (shown escaped, cut at 200 characters,
/// or hashed); values are never shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowDifference {
    /// The key, as `(1,abc)` reads in SQL.
    pub key: String,
    /// How it differs.
    pub kind: DifferenceKind,
}

/// What verifying one table found, or how far it has come.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TableVerification {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Where it stands.
    #[serde(default)]
    pub status: VerifyStatus,
    /// Chunks compared.
    #[serde(default)]
    pub chunks_done: u64,
    /// Chunks it should take at the current chunk size (an estimate until
    /// done); 0 when unknown.
    #[serde(default)]
    pub chunks_total: u64,
    /// Rows compared on the source.
    #[serde(default)]
    pub rows: u64,
    /// Bytes of the table read on the source (by its size on disk).
    #[serde(default)]
    pub bytes_verified: u64,
    /// The table's size on the source (`pg_table_size()`).
    #[serde(default)]
    pub bytes_total: u64,
    /// Chunks that needed more than one read.
    #[serde(default)]
    pub chunks_retried: u64,
    /// Rows that differ, all of them.
    #[serde(default)]
    pub mismatched_rows: u64,
    /// The rows that differ, the first `--verify-max-rows`.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub differences: Vec<RowDifference>,
    /// Why a table is unverifiable, unstable or verified without a key;
    /// omitted when there is nothing to say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// When its newest verification finished.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub verified_at: Option<OffsetDateTime>,
}

impl TableVerification {
    /// A table not verified yet.
    pub fn pending(table: &TableName) -> TableVerification {
        TableVerification {
            schema: table.schema.clone(),
            name: table.name.clone(),
            ..TableVerification::default()
        }
    }

    /// The table's identity.
    pub fn table_name(&self) -> TableName {
        TableName::new(&self.schema, &self.name)
    }
}

/// Data verification: how far it has come and what it found; in
/// [`Snapshot::verify`](super::Snapshot::verify) while `--verify` is on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct VerifyProgress {
    /// When the current round of verification started.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub started_at: Option<OffsetDateTime>,
    /// When the newest round finished; absent while the first runs.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<OffsetDateTime>,
    /// Tables to verify.
    #[serde(default)]
    pub tables_total: usize,
    /// Tables verified the same on both servers.
    #[serde(default)]
    pub tables_verified: usize,
    /// Bytes of the source's tables read in this round.
    #[serde(default)]
    pub bytes_verified: u64,
    /// Bytes of the source's tables to read in this round.
    #[serde(default)]
    pub bytes_total: u64,
    /// Seconds until this round should finish at its rate so far; absent
    /// when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_sec: Option<f64>,
    /// Chunks that needed more than one read, in this round.
    #[serde(default)]
    pub chunks_retried: u64,
    /// Every table, in the order they are verified.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tables: Vec<TableVerification>,
}

impl VerifyProgress {
    /// Tables whose rows differ.
    pub fn mismatched(&self) -> impl Iterator<Item = &TableVerification> {
        self.tables
            .iter()
            .filter(|t| t.status == VerifyStatus::Mismatch)
    }

    /// Rows that differ, in every table.
    pub fn mismatched_rows(&self) -> u64 {
        self.tables.iter().map(|t| t.mismatched_rows).sum()
    }

    /// How many tables stand at `status`.
    pub fn count(&self, status: VerifyStatus) -> usize {
        self.tables.iter().filter(|t| t.status == status).count()
    }

    /// Sets the totals from the tables: `tables_verified`, the bytes, the
    /// retried chunks, and the ETA from the bytes verified in the
    /// `elapsed` seconds of this round (beyond `verified_before`, what the
    /// tables it does not verify again had).
    pub fn total_up(&mut self, elapsed: f64, verified_before: u64) {
        self.tables_total = self.tables.len();
        self.tables_verified = self.count(VerifyStatus::Verified);
        self.bytes_total = self.tables.iter().map(|t| t.bytes_total).sum();
        self.bytes_verified = self.tables.iter().map(|t| t.bytes_verified).sum();
        self.chunks_retried = self.tables.iter().map(|t| t.chunks_retried).sum();
        let left = self.bytes_total.saturating_sub(self.bytes_verified);
        self.eta_sec = if left == 0 {
            Some(0.0)
        } else if let Some(done) = self.bytes_verified.checked_sub(verified_before)
            && done > 0
            && elapsed.is_finite()
            && elapsed > 0.0
        {
            Some(left as f64 * elapsed / done as f64)
        } else {
            None
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_eta_follow_the_tables() {
        let table = |status, done, total| TableVerification {
            status,
            bytes_verified: done,
            bytes_total: total,
            chunks_retried: 1,
            ..TableVerification::pending(&TableName::new("public", "t"))
        };
        let mut progress = VerifyProgress {
            tables: vec![
                table(VerifyStatus::Verified, 300, 300),
                table(VerifyStatus::Verifying, 100, 600),
            ],
            ..VerifyProgress::default()
        };
        progress.total_up(40.0, 0);
        assert_eq!(
            (progress.tables_total, progress.tables_verified),
            (2, 1),
            "{progress:?}"
        );
        assert_eq!((progress.bytes_verified, progress.bytes_total), (400, 900));
        assert_eq!(progress.chunks_retried, 2);
        // 400 bytes in 40 s: the 500 left take 50 s.
        assert_eq!(progress.eta_sec, Some(50.0));
        // 300 bytes were verified before this round: 100 in 40 s.
        progress.total_up(40.0, 300);
        assert_eq!(progress.eta_sec, Some(200.0));
        progress.total_up(f64::NAN, 0);
        assert_eq!(progress.eta_sec, None);
        progress.total_up(40.0, 400);
        assert_eq!(progress.eta_sec, None);
    }

    #[test]
    fn a_newer_status_loads_and_is_written_back_unchanged() {
        let json = r#"{"schema":"s","name":"t","status":"sampling"}"#;
        let table: TableVerification = serde_json::from_str(json).unwrap();
        assert_eq!(table.status.as_str(), "sampling");
        assert!(!table.status.is_done());
        assert!(
            serde_json::to_string(&table)
                .unwrap()
                .contains("\"sampling\"")
        );
    }
}
