//! Replication health: the source's slot that holds WAL for the migration,
//! and the destination's apply worker.

use super::named::named_enum;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::serde_util::timestamp;

/// The replication slot the migration reads through, on the source.
///
/// A slot that does not advance keeps WAL on the source's disk; with
/// `max_slot_wal_keep_size` set, the source invalidates it (`lost`) and
/// the migration must start again. These are the numbers to watch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SlotHealth {
    /// The slot's name.
    pub name: String,
    /// Whether a walsender is streaming from it now.
    #[serde(default)]
    pub active: bool,
    /// How safe its WAL is (PostgreSQL's `wal_status`).
    #[serde(default)]
    pub wal_status: WalStatus,
    /// Bytes of WAL the slot holds on the source
    /// (`pg_current_wal_lsn() − restart_lsn`).
    #[serde(default)]
    pub retained_bytes: u64,
    /// Bytes that can still be written before the slot is in danger of
    /// being lost; `None` when `max_slot_wal_keep_size` is unlimited (or
    /// the slot is lost).
    #[serde(default)]
    pub safe_wal_size: Option<i64>,
    /// The source's `max_slot_wal_keep_size` in bytes; `None` when
    /// unlimited.
    #[serde(default)]
    pub max_slot_wal_keep_size: Option<u64>,
    /// Since when the slot has been inactive (PostgreSQL 17+ reports it;
    /// on older servers, when the reader first saw it inactive); `None`
    /// while active.
    #[serde(default, with = "timestamp::option")]
    pub inactive_since: Option<OffsetDateTime>,
    /// Bytes of decoded changes spilled to disk (`pg_stat_replication_slots`).
    #[serde(default)]
    pub spill_bytes: u64,
    /// Transactions spilled to disk.
    #[serde(default)]
    pub spill_txns: u64,
    /// Bytes of decoded changes streamed before their transaction ended.
    #[serde(default)]
    pub stream_bytes: u64,
    /// Seconds until `safe_wal_size` reaches zero at the rate it shrank
    /// over the last minute: when the slot is lost, if nothing changes.
    /// Absent while it does not shrink, is unlimited, or was not read long
    /// enough (10 s). Filled in by the collector from the readings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exhausted_in_sec: Option<u64>,
}

named_enum! {
    /// PostgreSQL's `wal_status` of a slot. In JSON its name; a status this
    /// version does not know loads as [`WalStatus::Other`] and is kept.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    pub enum WalStatus {
        /// Within `max_wal_size`: safe.
        #[default]
        Reserved = "reserved",
        /// Beyond `max_wal_size`, kept by the slot or `wal_keep_size`.
        Extended = "extended",
        /// Some of its WAL will be removed at the next checkpoint: about to be
        /// lost.
        Unreserved = "unreserved",
        /// Its WAL is gone: the slot cannot be used again.
        Lost = "lost",
    }
    keep unknown names in Other(String);
}

/// The destination's apply worker, as `pg_stat_subscription` shows it:
/// whether it still hears from the source even when nothing changes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ApplyHealth {
    /// When the last message from the source arrived.
    #[serde(default, with = "timestamp::option")]
    pub last_msg_receipt: Option<OffsetDateTime>,
    /// When the source sent the last WAL position it reported.
    #[serde(default, with = "timestamp::option")]
    pub latest_end_time: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_json_has_the_agreed_names_and_nulls_for_unlimited() {
        let slot = SlotHealth {
            name: "sub".into(),
            wal_status: WalStatus::Unreserved,
            retained_bytes: 200,
            spill_bytes: 3,
            spill_txns: 1,
            ..SlotHealth::default()
        };
        let json = serde_json::to_value(&slot).unwrap();
        assert_eq!(json["wal_status"], "unreserved");
        assert!(json["safe_wal_size"].is_null() && json["max_slot_wal_keep_size"].is_null());
        assert!(json["inactive_since"].is_null());
        let back: SlotHealth = serde_json::from_value(json).unwrap();
        assert_eq!(back, slot);
    }

    #[test]
    fn an_unknown_wal_status_loads_and_is_kept() {
        let slot: SlotHealth =
            serde_json::from_str(r#"{"name":"s","wal_status":"frozen"}"#).unwrap();
        assert_eq!(slot.wal_status, WalStatus::Other("frozen".into()));
        assert_eq!(serde_json::to_value(&slot).unwrap()["wal_status"], "frozen");
    }
}
