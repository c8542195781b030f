//! The snapshot every surface shows, with its history entries.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::serde_util::{null_as_default, timestamp};
use super::{
    AlertStatus, ApplyHealth, CatchUp, Cutover, Eta, Phase, SlotHealth, TableProgress, TableStatus,
    VerifyProgress,
};
use crate::lsn::Lsn;

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
    /// Byte lag and time lag for people: `"1.20 MiB (latency: 150ms)"`.
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
    /// Seconds until the whole copy should finish (`eta.seconds`); absent
    /// when unknown, 0 when every table is copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_sec: Option<f64>,
    /// The copy's forecast on its critical path, with its state and band;
    /// absent while there are no tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Eta>,
    /// How many tables the pipeline copies at once, when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_workers: Option<u32>,
    /// When streaming will have caught up, or how fast it falls behind;
    /// absent before streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
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
    /// The replication slot on the source; omitted while unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<SlotHealth>,
    /// The destination's apply worker; omitted while unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<ApplyHealth>,
    /// Whether it is safe to switch over; omitted while nothing computed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cutover: Option<Cutover>,
    /// Alerts pending, firing or recently resolved; omitted when none.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub alerts: Vec<AlertStatus>,
    /// Notifications given up on after their retries (or dropped from a
    /// full queue); omitted when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub notifications_failed: u64,
    /// Data verification (`--verify`); omitted when it is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyProgress>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A snapshot older than this is stale: its pipeline writes every 2 s and
/// publishes every 500 ms, so one this old has stopped.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

impl Snapshot {
    /// How long ago the snapshot was taken, as seen at `now` (zero if `now`
    /// is earlier, as with a skewed clock).
    pub fn age(&self, now: OffsetDateTime) -> std::time::Duration {
        (now - self.timestamp).try_into().unwrap_or_default()
    }

    /// The longest silence at the snapshot's time, in seconds: a copying
    /// table without progress, or (while streaming) the apply worker
    /// without a message from the source; 0 when nothing is silent.
    pub fn stalled_seconds(&self) -> f64 {
        let since = |at: OffsetDateTime| (self.timestamp - at).as_seconds_f64().max(0.0);
        let tables = self
            .tables
            .iter()
            .filter(|t| t.status == TableStatus::Copying)
            .filter_map(|t| t.last_progress_at.map(since));
        let apply = self
            .apply
            .as_ref()
            .filter(|_| self.phase == Phase::Streaming)
            .and_then(|a| a.last_msg_receipt)
            .map(since);
        tables.chain(apply).fold(0.0, f64::max)
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
            eta: None,
            copy_workers: None,
            catch_up: None,
            phases: Vec::new(),
            errors: Vec::new(),
            logs_dropped: 0,
            stale: false,
            slot: None,
            apply: None,
            cutover: None,
            alerts: Vec::new(),
            notifications_failed: 0,
            verify: None,
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
}
