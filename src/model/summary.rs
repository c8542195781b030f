//! One line per migration, for the screens that show many at once.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{AlertState, Eta, Phase, Severity, Snapshot, WalStatus};

/// A migration at a glance: what `GET /api/v1/migrations` lists, the
/// dashboard's fleet view and the terminal dashboard's migration list show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationSummary {
    /// Its id under `/api/v1/migrations/{id}`.
    pub id: String,
    /// The pipeline's phase.
    pub phase: Phase,
    /// Tables in the migration.
    pub tables_total: usize,
    /// Tables whose initial copy is over.
    pub tables_copied: usize,
    /// WAL bytes not yet applied.
    pub lag_bytes: u64,
    /// How long the oldest unapplied WAL has waited.
    pub lag_seconds: f64,
    /// Seconds until every table is copied, when known.
    pub eta_sec: Option<f64>,
    /// The copy's forecast: its state (say, `stalled`), band and drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Eta>,
    /// Alerts firing.
    pub alerts_firing: usize,
    /// The worst severity firing; `None` when none is.
    pub alert_severity: Option<Severity>,
    /// The slot's `wal_status`; `None` when no slot is reported.
    pub slot_wal_status: Option<WalStatus>,
    /// Seconds until the slot's WAL is lost at the rate it fills, when
    /// that is forecast (see [`SlotHealth::exhausted_in_sec`](super::SlotHealth::exhausted_in_sec)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_exhausted_in_sec: Option<u64>,
    /// The cutover verdict; `None` while nothing computed one.
    pub cutover_ready: Option<bool>,
    /// The data comes from a state file that stopped changing, or is old.
    pub stale: bool,
}

impl MigrationSummary {
    /// The summary of migration `id` from its snapshot, at `now`.
    pub fn of(id: &str, s: &Snapshot, now: OffsetDateTime) -> MigrationSummary {
        let firing = || s.alerts.iter().filter(|a| a.state == AlertState::Firing);
        MigrationSummary {
            id: id.to_owned(),
            phase: s.phase.clone(),
            tables_total: s.tables_total,
            tables_copied: s.tables_copied,
            lag_bytes: s.lag_bytes,
            lag_seconds: s.lag_seconds,
            eta_sec: s.eta_sec,
            eta: s.eta,
            alerts_firing: firing().count(),
            alert_severity: firing().map(|a| a.severity).max(),
            slot_wal_status: s.slot.as_ref().map(|slot| slot.wal_status.clone()),
            slot_exhausted_in_sec: s.slot.as_ref().and_then(|slot| slot.exhausted_in_sec),
            cutover_ready: s.cutover.as_ref().map(|c| c.ready),
            stale: s.is_stale(now),
        }
    }

    /// Whether a warning or critical alert fires (info alerts, such as
    /// "ready to cut over", are no trouble).
    pub fn needs_attention(&self) -> bool {
        self.alert_severity > Some(Severity::Info)
    }

    /// Larger is worse: a critical, then a warning alert firing (more of
    /// them worse); then a slot whose WAL is lost, unreserved, extended;
    /// then the lag in time, then in bytes.
    fn trouble(&self) -> (u8, usize, u8, f64, u64) {
        let alerts = match self.alert_severity {
            Some(Severity::Critical) => 2,
            Some(Severity::Warning) => 1,
            Some(Severity::Info) | None => 0,
        };
        let slot = match &self.slot_wal_status {
            Some(WalStatus::Lost) => 3,
            Some(WalStatus::Unreserved | WalStatus::Other(_)) => 2,
            Some(WalStatus::Extended) => 1,
            Some(WalStatus::Reserved) | None => 0,
        };
        let lag_seconds = if self.lag_seconds.is_finite() {
            self.lag_seconds
        } else {
            0.0
        };
        let firing = if alerts > 0 { self.alerts_firing } else { 0 };
        (alerts, firing, slot, lag_seconds, self.lag_bytes)
    }

    /// Orders `a` before `b` when it is in more trouble.
    fn worse_first(a: &MigrationSummary, b: &MigrationSummary) -> Ordering {
        let (a, b) = (a.trouble(), b.trouble());
        b.0.cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then(b.2.cmp(&a.2))
            .then(b.3.total_cmp(&a.3))
            .then(b.4.cmp(&a.4))
    }
}

/// Sorts `summaries` worst first: alerts firing (critical, then warning),
/// then slot danger, then lag; equals keep their order.
pub fn sort_worst_first(summaries: &mut [MigrationSummary]) {
    summaries.sort_by(MigrationSummary::worse_first);
}

/// The summaries of `migrations` (id and newest snapshot) at `now`,
/// worst first.
pub fn summarize<'a>(
    migrations: impl IntoIterator<Item = (&'a str, Arc<Snapshot>)>,
    now: OffsetDateTime,
) -> Vec<MigrationSummary> {
    let mut summaries: Vec<MigrationSummary> = migrations
        .into_iter()
        .map(|(id, snapshot)| MigrationSummary::of(id, &snapshot, now))
        .collect();
    sort_worst_first(&mut summaries);
    summaries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertStatus, SlotHealth};

    #[test]
    fn worst_first_orders_alerts_then_slot_danger_then_lag() {
        let now = OffsetDateTime::now_utc();
        let alert = |severity| AlertStatus {
            name: "a".into(),
            state: AlertState::Firing,
            severity,
            since: now,
            value: String::new(),
            summary: String::new(),
        };
        let slot = |wal_status| SlotHealth {
            wal_status,
            ..SlotHealth::default()
        };
        let cases = [
            ("calm", Snapshot::default()),
            (
                "ready",
                Snapshot {
                    alerts: vec![alert(Severity::Info), alert(Severity::Info)],
                    ..Snapshot::default()
                },
            ),
            (
                "lagging",
                Snapshot {
                    lag_seconds: 30.0,
                    ..Snapshot::default()
                },
            ),
            (
                "nan",
                Snapshot {
                    lag_seconds: f64::NAN,
                    lag_bytes: 1,
                    ..Snapshot::default()
                },
            ),
            (
                "extended",
                Snapshot {
                    slot: Some(slot(WalStatus::Extended)),
                    ..Snapshot::default()
                },
            ),
            (
                "lost",
                Snapshot {
                    slot: Some(slot(WalStatus::Lost)),
                    ..Snapshot::default()
                },
            ),
            (
                "warned",
                Snapshot {
                    alerts: vec![alert(Severity::Warning)],
                    ..Snapshot::default()
                },
            ),
            (
                "critical",
                Snapshot {
                    alerts: vec![alert(Severity::Critical)],
                    ..Snapshot::default()
                },
            ),
        ];
        let mut summaries: Vec<MigrationSummary> = cases
            .iter()
            .map(|(id, s)| MigrationSummary::of(id, s, now))
            .collect();
        sort_worst_first(&mut summaries);
        let order: Vec<&str> = summaries.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            order,
            [
                "critical", "warned", "lost", "extended", "lagging", "nan", "calm", "ready"
            ]
        );
        assert!(summaries[1].needs_attention() && !summaries[7].needs_attention());
    }

    #[test]
    fn summaries_round_trip_through_json() {
        let summary = MigrationSummary::of("shop", &Snapshot::default(), OffsetDateTime::now_utc());
        let json = serde_json::to_string(&summary).unwrap();
        assert!(json.contains("\"alert_severity\":null"), "{json}");
        assert_eq!(
            serde_json::from_str::<MigrationSummary>(&json).unwrap(),
            summary
        );
    }
}
