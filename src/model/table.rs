//! One table: its identity, status and progress.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::forecast::Eta;
use super::named::named_enum;
use super::serde_util::timestamp;

named_enum! {
    /// Where one table is in its lifecycle.
    ///
    /// In JSON a lower-case string. A status this version does not know, say
    /// from a state file written by a newer pipeline, loads as
    /// [`TableStatus::Other`], is shown as it is and written back unchanged.
    /// `Copy`, like the four it always had: an unknown name is interned (see
    /// [`UnknownStatus`]).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub enum TableStatus {
        /// Queued for COPY, not started.
        #[default]
        Pending = "pending",
        /// A COPY worker is copying it.
        Copying = "copying",
        /// The initial COPY finished.
        Copied = "copied",
        /// Receiving live changes.
        Streaming = "streaming",
    }
    keep unknown names in Other(UnknownStatus);
}

impl TableStatus {
    /// Whether the initial copy of the table is over (`copied` or
    /// `streaming`); an unknown status does not say so.
    pub fn is_copied(self) -> bool {
        matches!(self, TableStatus::Copied | TableStatus::Streaming)
    }
}

/// The name of a table status this version does not know, interned once
/// per process so that [`TableStatus`] stays `Copy`.
///
/// The names come from files, so the memory is bounded: at most
/// [`UnknownStatus::MAX_NAMES`] names of at most
/// [`UnknownStatus::MAX_LEN`] bytes are kept; any other unknown name (only
/// a hostile file has one) is `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnknownStatus(&'static str);

impl UnknownStatus {
    /// Distinct unknown names kept per process.
    pub const MAX_NAMES: usize = 64;
    /// Longest unknown name kept, in bytes.
    pub const MAX_LEN: usize = 64;

    /// The name.
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl From<&str> for UnknownStatus {
    fn from(name: &str) -> UnknownStatus {
        static NAMES: std::sync::Mutex<Interner> = std::sync::Mutex::new(Interner {
            names: Vec::new(),
            max_names: UnknownStatus::MAX_NAMES,
            max_len: UnknownStatus::MAX_LEN,
        });
        let mut names = NAMES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        UnknownStatus(names.intern(name))
    }
}

/// Names kept for the life of the process, within bounds.
struct Interner {
    names: Vec<&'static str>,
    max_names: usize,
    max_len: usize,
}

impl Interner {
    /// `name`'s one kept copy; `unknown` once the bounds are reached.
    fn intern(&mut self, name: &str) -> &'static str {
        if let Some(kept) = self.names.iter().find(|kept| **kept == name) {
            return kept;
        }
        if name.len() > self.max_len || self.names.len() >= self.max_names {
            return "unknown";
        }
        // Bounded: at most max_names × max_len bytes per process.
        let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
        self.names.push(kept);
        kept
    }
}

/// A table's identity: its schema and name, shown as `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    /// The schema.
    pub schema: String,
    /// The table's name in it.
    pub name: String,
}

impl TableName {
    /// The table `name` in `schema`.
    pub fn new(schema: &str, name: &str) -> Self {
        TableName {
            schema: schema.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Progress of one table.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TableProgress {
    /// Schema name, e.g. `public`.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Lifecycle status.
    #[serde(default)]
    pub status: TableStatus,
    /// Estimated row count; 0 or negative when unknown (PostgreSQL reports
    /// `reltuples = -1` for a table never analysed).
    #[serde(default)]
    pub rows_total: i64,
    /// Rows copied so far.
    #[serde(default)]
    pub rows_copied: i64,
    /// Table size in bytes (`pg_table_size()`); 0 when unknown.
    #[serde(default)]
    pub size_bytes: i64,
    /// Bytes written to the destination so far.
    #[serde(default)]
    pub bytes_copied: i64,
    /// Completion, 0 to 100. Held at 99.9 until the copy is declared done.
    #[serde(default)]
    pub percent: f64,
    /// Seconds spent copying this table (frozen once it is copied).
    #[serde(default)]
    pub elapsed_sec: f64,
    /// Seconds until this table's copy should finish at its own recent rate
    /// (`eta.seconds` while copying); absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_sec: Option<f64>,
    /// This table's forecast: for a table waiting, when it should be done
    /// once the workers come to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Eta>,
    /// Wall-clock time of the last progress event for this table; a copying
    /// table whose value stops moving has stalled.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_progress_at: Option<OffsetDateTime>,
    /// Inserts, updates and deletes applied to the table since it reached
    /// `streaming`.
    #[serde(default)]
    pub changes_applied: u64,
}

impl TableProgress {
    /// A pending table with its row estimate and size (either may be unknown:
    /// pass 0 or a negative number).
    pub fn new(schema: &str, name: &str, rows_total: i64, size_bytes: i64) -> Self {
        TableProgress {
            schema: schema.to_owned(),
            name: name.to_owned(),
            rows_total,
            size_bytes,
            ..TableProgress::default()
        }
    }

    /// The table's identity.
    pub fn table_name(&self) -> TableName {
        TableName::new(&self.schema, &self.name)
    }

    /// `schema.name`, as shown to people.
    pub fn qualified_name(&self) -> String {
        self.table_name().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip_and_an_unknown_one_is_written_back_unchanged() {
        for status in TableStatus::KNOWN {
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(serde_json::from_str::<TableStatus>(&json).unwrap(), status);
        }
        let status: TableStatus = serde_json::from_str("\"validating\"").unwrap();
        assert_eq!(status, TableStatus::Other("validating".into()));
        assert!(!status.is_copied());
        assert_eq!(serde_json::to_string(&status).unwrap(), "\"validating\"");
    }

    #[test]
    fn unknown_names_are_interned_within_bounds() {
        let once = UnknownStatus::from("interned-twice");
        let again = UnknownStatus::from(String::from("interned-twice").as_str());
        assert!(std::ptr::eq(once.as_str(), again.as_str()), "one copy kept");

        let mut names = Interner {
            names: Vec::new(),
            max_names: 3,
            max_len: 8,
        };
        assert_eq!(names.intern("too-long-a-name"), "unknown");
        for name in ["a", "b", "c"] {
            assert_eq!(names.intern(name), name);
        }
        assert_eq!(names.intern("d"), "unknown", "past the cap");
        assert_eq!(names.intern("b"), "b", "kept names stay");
        assert_eq!(names.names.len(), 3);
    }

    #[test]
    fn table_progress_json_has_seed_names_and_no_started_at() {
        let table = TableProgress::new("public", "users", 10, 20);
        let json = serde_json::to_value(&table).unwrap();
        let mut keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = [
            "schema",
            "name",
            "status",
            "rows_total",
            "rows_copied",
            "size_bytes",
            "bytes_copied",
            "percent",
            "elapsed_sec",
            // Ours, always present so that "no changes yet" reads as 0.
            "changes_applied",
        ];
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(json["status"], "pending");
    }
}
