//! The plain data every surface reads: phases, tables, snapshots, log entries.
//!
//! JSON field names are the snake_case names of the Go original, so a
//! `state.json` written by either loads in both. Fields added here are
//! optional when reading, and unknown fields are ignored, so older and newer
//! files load too.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::lsn::Lsn;

/// The migration pipeline's phase.
///
/// In JSON a lower-case string (`"switchover-complete"` for
/// [`Phase::SwitchoverComplete`]). A phase this version does not know, say
/// from a state file written by a newer pipeline, loads as [`Phase::Other`]
/// and is written back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Phase {
    /// Nothing has started.
    #[default]
    Idle,
    /// Connecting to the source and destination.
    Connecting,
    /// Copying the schema.
    Schema,
    /// Resuming an interrupted migration.
    Resuming,
    /// Parallel COPY of the tables.
    Copy,
    /// Streaming changes over logical replication.
    Streaming,
    /// Switching applications over to the destination.
    Switchover,
    /// The switchover finished.
    SwitchoverComplete,
    /// The migration is over.
    Done,
    /// A phase this version does not know, kept as it was written.
    Other(String),
}

impl Phase {
    /// Every phase this version knows, in pipeline order.
    pub const KNOWN: [Phase; 9] = [
        Phase::Idle,
        Phase::Connecting,
        Phase::Schema,
        Phase::Resuming,
        Phase::Copy,
        Phase::Streaming,
        Phase::Switchover,
        Phase::SwitchoverComplete,
        Phase::Done,
    ];

    /// The phase's name as written in JSON and shown to people.
    pub fn as_str(&self) -> &str {
        match self {
            Phase::Idle => "idle",
            Phase::Connecting => "connecting",
            Phase::Schema => "schema",
            Phase::Resuming => "resuming",
            Phase::Copy => "copy",
            Phase::Streaming => "streaming",
            Phase::Switchover => "switchover",
            Phase::SwitchoverComplete => "switchover-complete",
            Phase::Done => "done",
            Phase::Other(name) => name,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Phase {
    type Err = std::convert::Infallible;

    /// Never fails: an unknown name becomes [`Phase::Other`]; an empty one
    /// (a Go collector that never had its phase set) is [`Phase::Idle`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Phase::KNOWN
            .into_iter()
            .find(|phase| phase.as_str() == s)
            .unwrap_or_else(|| match s {
                "" => Phase::Idle,
                other => Phase::Other(other.to_owned()),
            }))
    }
}

impl Serialize for Phase {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Phase {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Ok(name.parse().unwrap_or_default())
    }
}

/// Where one table is in its lifecycle. In JSON a lower-case string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableStatus {
    /// Queued for COPY, not started.
    #[default]
    Pending,
    /// A COPY worker is copying it.
    Copying,
    /// The initial COPY finished.
    Copied,
    /// Receiving live changes.
    Streaming,
}

impl TableStatus {
    /// The status's name as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TableStatus::Pending => "pending",
            TableStatus::Copying => "copying",
            TableStatus::Copied => "copied",
            TableStatus::Streaming => "streaming",
        }
    }

    /// Whether the initial copy of the table is over (`copied` or `streaming`).
    pub fn is_copied(self) -> bool {
        matches!(self, TableStatus::Copied | TableStatus::Streaming)
    }
}

impl fmt::Display for TableStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// Seconds until this table's copy should finish at its own recent rate;
    /// absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_sec: Option<f64>,
    /// Wall-clock time of the last progress event for this table; a copying
    /// table whose value stops moving has stalled.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_progress_at: Option<OffsetDateTime>,
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

/// One span of the phase history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSpan {
    /// The phase.
    pub phase: Phase,
    /// When the pipeline entered it.
    #[serde(with = "timestamp")]
    pub started_at: OffsetDateTime,
    /// When the pipeline left it; absent while it is the current phase.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ended_at: Option<OffsetDateTime>,
    /// Seconds spent in it so far.
    #[serde(default)]
    pub duration_sec: f64,
}

/// One recorded error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// When it was recorded.
    #[serde(with = "timestamp")]
    pub time: OffsetDateTime,
    /// The phase the pipeline was in.
    pub phase: Phase,
    /// The error's message, with secrets masked.
    pub message: String,
}

/// The complete state of a migration at one moment; what every surface shows.
///
/// Snapshots are immutable once published: readers share them as
/// `Arc<Snapshot>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When this snapshot was computed (RFC 3339, UTC, milliseconds).
    #[serde(with = "timestamp")]
    pub timestamp: OffsetDateTime,
    /// Current phase.
    pub phase: Phase,
    /// Seconds since the pipeline first set a phase (frozen once `done`).
    #[serde(default)]
    pub elapsed_sec: f64,
    /// Last LSN applied to the destination.
    #[serde(default)]
    pub applied_lsn: Lsn,
    /// Last LSN confirmed (flushed) back to the source.
    #[serde(default)]
    pub confirmed_lsn: Lsn,
    /// Bytes of WAL between the applied LSN and the latest source LSN.
    #[serde(default)]
    pub lag_bytes: u64,
    /// Byte lag and time lag for people: `"1.20 MB (latency: 150ms)"`.
    #[serde(default)]
    pub lag_formatted: String,
    /// Number of tables in the migration.
    #[serde(default)]
    pub tables_total: usize,
    /// Tables whose copy is over (`copied` or `streaming`).
    #[serde(default)]
    pub tables_copied: usize,
    /// Every table, in the order the pipeline listed them.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tables: Vec<TableProgress>,
    /// Rows applied per second over the rate window (60 s by default).
    #[serde(default)]
    pub rows_per_sec: f64,
    /// Bytes applied per second over the rate window.
    #[serde(default)]
    pub bytes_per_sec: f64,
    /// Rows applied since the migration started.
    #[serde(default)]
    pub total_rows: i64,
    /// Bytes applied since the migration started.
    #[serde(default)]
    pub total_bytes: i64,
    /// Errors recorded since the migration started.
    #[serde(default)]
    pub error_count: u64,
    /// The newest error's message; omitted when there is none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,

    /// Latest WAL position reported by the source.
    #[serde(default)]
    pub latest_lsn: Lsn,
    /// How long the oldest WAL not yet applied has been waiting, in seconds;
    /// 0 when caught up.
    #[serde(default)]
    pub lag_seconds: f64,
    /// Whether the applied LSN has reached the latest source LSN.
    #[serde(default)]
    pub caught_up: bool,
    /// Rows copied per second by the table copy over the rate window.
    #[serde(default)]
    pub copy_rows_per_sec: f64,
    /// Bytes copied per second by the table copy over the rate window.
    #[serde(default)]
    pub copy_bytes_per_sec: f64,
    /// Seconds until the whole copy should finish at the recent copy rate;
    /// absent when unknown, 0 when every table is copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_sec: Option<f64>,
    /// Every phase the pipeline went through, oldest first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub phases: Vec<PhaseSpan>,
    /// The newest errors (at most 100), oldest first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub errors: Vec<ErrorEntry>,
    /// Log events the `tracing` layer dropped because the collector was busy.
    #[serde(default)]
    pub logs_dropped: u64,
    /// Set by a reader that mirrors a state file which stopped changing
    /// (its pipeline stopped writing); never by a live collector. Omitted
    /// when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

/// A snapshot older than this is stale: its pipeline writes every 2 s and
/// publishes every 500 ms, so one this old has stopped.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

impl Snapshot {
    /// How long ago the snapshot was taken, as seen at `now` (zero if `now`
    /// is earlier, as with a skewed clock).
    pub fn age(&self, now: OffsetDateTime) -> std::time::Duration {
        (now - self.timestamp).try_into().unwrap_or_default()
    }

    /// Whether the snapshot should be shown as stale at `now`: a reader
    /// flagged it so, or it is older than [`STALE_AFTER`].
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        self.stale || self.age(now) > STALE_AFTER
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            timestamp: OffsetDateTime::UNIX_EPOCH,
            phase: Phase::Idle,
            elapsed_sec: 0.0,
            applied_lsn: Lsn(0),
            confirmed_lsn: Lsn(0),
            lag_bytes: 0,
            lag_formatted: crate::lsn::format_lag(0, std::time::Duration::ZERO),
            tables_total: 0,
            tables_copied: 0,
            tables: Vec::new(),
            rows_per_sec: 0.0,
            bytes_per_sec: 0.0,
            total_rows: 0,
            total_bytes: 0,
            error_count: 0,
            last_error: String::new(),
            latest_lsn: Lsn(0),
            lag_seconds: 0.0,
            caught_up: true,
            copy_rows_per_sec: 0.0,
            copy_bytes_per_sec: 0.0,
            eta_sec: None,
            phases: Vec::new(),
            errors: Vec::new(),
            logs_dropped: 0,
            stale: false,
        }
    }
}

/// Severity of a [`LogEntry`]. In JSON `"debug"`, `"info"`, `"warn"` or `"error"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Detail for developers.
    Debug,
    /// Normal operation.
    Info,
    /// Something an operator may want to look at.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The level's name as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the log viewer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// When it was logged.
    #[serde(with = "timestamp")]
    pub time: OffsetDateTime,
    /// Severity.
    pub level: LogLevel,
    /// The message, with secrets masked once it is in the collector.
    pub message: String,
    /// Structured fields; omitted when empty.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub fields: BTreeMap<String, String>,
}

impl LogEntry {
    /// An entry stamped with the current time and no fields.
    pub fn new(level: LogLevel, message: impl Into<String>) -> Self {
        LogEntry {
            time: OffsetDateTime::now_utc(),
            level,
            message: message.into(),
            fields: BTreeMap::new(),
        }
    }

    /// The same entry with one more field.
    pub fn with_field(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }
}

/// Go writes a nil slice or map as `null`; read it as empty.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Timestamps as RFC 3339 in UTC with milliseconds (`2026-02-27T14:23:01.234Z`);
/// any RFC 3339 timestamp (Go writes nanoseconds and offsets) is read.
pub(crate) mod timestamp {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    use time::{OffsetDateTime, UtcOffset};

    /// Formats `time` as the crate writes every timestamp.
    pub(crate) fn format(time: OffsetDateTime) -> String {
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        time.to_offset(UtcOffset::UTC)
            .format(&format)
            .unwrap_or_else(|_| time.to_string())
    }

    pub(crate) fn serialize<S: Serializer>(
        time: &OffsetDateTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*time))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }

    pub(crate) mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        pub(crate) fn serialize<S: Serializer>(
            time: &Option<OffsetDateTime>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => super::serialize(time, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] OffsetDateTime);
            Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(time)| time))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_and_staleness_follow_one_rule() {
        let snapshot = Snapshot {
            timestamp: OffsetDateTime::UNIX_EPOCH + std::time::Duration::from_secs(100),
            ..Snapshot::default()
        };
        let at = |secs: u64| OffsetDateTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        assert_eq!(snapshot.age(at(112)), std::time::Duration::from_secs(12));
        // A clock behind the writer's: no negative age.
        assert_eq!(snapshot.age(at(90)), std::time::Duration::ZERO);
        assert!(!snapshot.is_stale(at(110)));
        assert!(snapshot.is_stale(at(111)));
        let flagged = Snapshot {
            stale: true,
            ..snapshot
        };
        assert!(flagged.is_stale(at(100)));
    }
    use time::macros::datetime;

    #[test]
    fn phase_names_round_trip_through_json() {
        for phase in Phase::KNOWN {
            let json = serde_json::to_string(&phase).unwrap();
            assert_eq!(json, format!("\"{}\"", phase.as_str()));
            assert_eq!(serde_json::from_str::<Phase>(&json).unwrap(), phase);
        }
        assert_eq!(
            serde_json::to_string(&Phase::SwitchoverComplete).unwrap(),
            "\"switchover-complete\""
        );
    }

    #[test]
    fn unknown_phase_loads_and_is_written_back_unchanged() {
        let phase: Phase = serde_json::from_str("\"validating\"").unwrap();
        assert_eq!(phase, Phase::Other("validating".into()));
        assert_eq!(serde_json::to_string(&phase).unwrap(), "\"validating\"");
        assert_eq!("".parse::<Phase>().unwrap(), Phase::Idle);
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
        ];
        keys.sort_unstable();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(json["status"], "pending");
    }

    #[test]
    fn last_error_is_omitted_when_empty_and_kept_otherwise() {
        let mut snapshot = Snapshot::default();
        let json = serde_json::to_value(&snapshot).unwrap();
        assert!(json.get("last_error").is_none());
        assert!(json.get("eta_sec").is_none());
        snapshot.last_error = "boom".into();
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["last_error"], "boom");
    }

    #[test]
    fn timestamps_are_utc_rfc3339_with_milliseconds() {
        let snapshot = Snapshot {
            timestamp: datetime!(2026-02-27 15:23:01.234567 +01:00),
            ..Snapshot::default()
        };
        let json = serde_json::to_value(&snapshot).unwrap();
        assert_eq!(json["timestamp"], "2026-02-27T14:23:01.234Z");
    }

    #[test]
    fn go_nanosecond_timestamps_with_offsets_load() {
        let entry: LogEntry = serde_json::from_str(
            r#"{"time":"2026-02-27T14:23:01.123456789+02:00","level":"warn","message":"m","fields":null}"#,
        )
        .unwrap();
        assert_eq!(entry.time, datetime!(2026-02-27 12:23:01.123456789 UTC));
        assert!(entry.fields.is_empty());
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let snapshot = Snapshot {
            timestamp: datetime!(2026-02-27 14:23:01.234 UTC),
            phase: Phase::Streaming,
            applied_lsn: Lsn(0x1A3B4C5),
            tables: vec![TableProgress {
                last_progress_at: Some(datetime!(2026-02-27 14:23:00.5 UTC)),
                eta_sec: Some(12.5),
                ..TableProgress::new("public", "users", 100, 4096)
            }],
            phases: vec![PhaseSpan {
                phase: Phase::Copy,
                started_at: datetime!(2026-02-27 14:00:00 UTC),
                ended_at: Some(datetime!(2026-02-27 14:20:00 UTC)),
                duration_sec: 1200.0,
            }],
            errors: vec![ErrorEntry {
                time: datetime!(2026-02-27 14:10:00 UTC),
                phase: Phase::Copy,
                message: "boom".into(),
            }],
            last_error: "boom".into(),
            error_count: 1,
            eta_sec: Some(3.0),
            ..Snapshot::default()
        };
        let json = serde_json::to_string_pretty(&snapshot).unwrap();
        assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), snapshot);
    }

    #[test]
    fn log_entry_builder_sets_fields_and_json_omits_empty_fields() {
        let entry = LogEntry::new(LogLevel::Info, "copied").with_field("table", "public.users");
        assert_eq!(entry.fields["table"], "public.users");
        let plain = serde_json::to_value(LogEntry::new(LogLevel::Error, "x")).unwrap();
        assert!(plain.get("fields").is_none());
        assert_eq!(plain["level"], "error");
    }
}
