//! The cutover verdict: can the application switch to the destination now,
//! and if not, what stands in the way.

use super::named::named_enum;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::serde_util::timestamp;

/// Whether it is safe to switch over, with every blocker named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cutover {
    /// True exactly when there is no blocker.
    pub ready: bool,
    /// When the checks ran.
    #[serde(with = "timestamp")]
    pub checked_at: OffsetDateTime,
    /// What must be fixed before switching.
    #[serde(default)]
    pub blockers: Vec<CutoverItem>,
    /// What an operator should look at, but need not block.
    #[serde(default)]
    pub warnings: Vec<CutoverItem>,
}

impl Cutover {
    /// A verdict from `blockers` and `warnings`, ready exactly when there
    /// are no blockers.
    pub fn new(
        checked_at: OffsetDateTime,
        blockers: Vec<CutoverItem>,
        warnings: Vec<CutoverItem>,
    ) -> Cutover {
        Cutover {
            ready: blockers.is_empty(),
            checked_at,
            blockers,
            warnings,
        }
    }
}

/// One blocker or warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoverItem {
    /// What kind of problem.
    pub kind: CutoverKind,
    /// The table (or sequence) it concerns, as `schema.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// What exactly, for people (`source 120045, destination 1`).
    #[serde(default)]
    pub detail: String,
}

named_enum! {
    /// The kinds of [`CutoverItem`]. In JSON a snake_case name; a kind this
    /// version does not know loads as [`CutoverKind::Other`] and is shown as
    /// it is.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub enum CutoverKind {
        /// A subscribed table is not streaming yet.
        TableNotReady = "table_not_ready",
        /// Not caught up, or more lag than allowed.
        Lag = "lag",
        /// The subscription is disabled.
        SubscriptionDisabled = "subscription_disabled",
        /// The replication slot is not in use.
        SlotInactive = "slot_inactive",
        /// The replication slot is lost.
        SlotLost = "slot_lost",
        /// An apply or sync error happened recently.
        RecentErrors = "recent_errors",
        /// A table is published but not subscribed (or in no publication).
        NotSubscribed = "not_subscribed",
        /// A published table has no replica identity: UPDATE and DELETE on it
        /// fail on the source.
        NoReplicaIdentity = "no_replica_identity",
        /// A table's columns differ between source and destination.
        SchemaMismatch = "schema_mismatch",
        /// A sequence is behind on the destination (sequences are not
        /// replicated).
        SequenceBehind = "sequence_behind",
        /// Row counts differ (only when counted).
        RowCountMismatch = "row_count_mismatch",
        /// Rows differ between the servers (only when verified).
        DataMismatch = "data_mismatch",
        /// A table is not verified yet, or cannot be (only when verifying).
        Unverified = "unverified",
    }
    keep unknown names in Other(String);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_matches_the_agreed_shape_and_unknown_kinds_load() {
        let text = r#"{
          "ready": false,
          "checked_at": "2026-11-28T10:00:00.000Z",
          "blockers": [ { "kind": "sequence_behind", "table": "public.orders_id_seq", "detail": "source 120045, destination 1" } ],
          "warnings": [ { "kind": "estimate_only", "table": "public.events", "detail": "…" },
                        { "kind": "from_the_future", "detail": "kept" } ]
        }"#;
        let cutover: Cutover = serde_json::from_str(text).unwrap();
        assert_eq!(cutover.blockers[0].kind, CutoverKind::SequenceBehind);
        assert_eq!(
            cutover.warnings[1].kind,
            CutoverKind::Other("from_the_future".into())
        );
        let back = serde_json::to_value(&cutover).unwrap();
        assert_eq!(back["blockers"][0]["kind"], "sequence_behind");
        assert_eq!(back["warnings"][1]["kind"], "from_the_future");
        assert!(back["warnings"][1].get("table").is_none());
        assert_eq!(back["checked_at"], "2026-11-28T10:00:00.000Z");
    }

    #[test]
    fn ready_is_exactly_no_blockers() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let warning = CutoverItem {
            kind: CutoverKind::NoReplicaIdentity,
            table: None,
            detail: String::new(),
        };
        assert!(Cutover::new(at, vec![], vec![warning.clone()]).ready);
        let blocker = CutoverItem {
            kind: CutoverKind::Lag,
            ..warning
        };
        assert!(!Cutover::new(at, vec![blocker], vec![]).ready);
    }
}
