//! Several migrations behind one server: each under a stable id, listed
//! with a summary so one screen shows which is in trouble.

use std::sync::{Arc, PoisonError, RwLock};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;

use super::{AppState, Resource, error, resource};
use crate::model::{AlertState, Phase, Severity, Snapshot, WalStatus};
use crate::publish::Snapshots;

/// The migrations a server serves, each under its id (letters, digits,
/// `.`, `_` and `-`, not starting with `.`; unique), in the order they
/// were given or added. A
/// handle: clones share the list, so a migration added through one (a
/// state file appearing in a watched directory) is served at once.
#[derive(Debug, Clone, Default)]
pub struct Migrations {
    list: Arc<RwLock<Vec<(String, Snapshots)>>>,
}

impl Migrations {
    /// Migrations by id; at least one, and no id twice.
    pub fn new(list: Vec<(String, Snapshots)>) -> Result<Migrations, String> {
        if list.is_empty() {
            return Err("no migration to serve".to_owned());
        }
        let migrations = Migrations::empty();
        for (id, snapshots) in list {
            migrations.add(id, snapshots)?;
        }
        Ok(migrations)
    }

    /// None yet: the list of a server that waits for migrations to
    /// [`add`](Migrations::add). Until the first arrives, the unprefixed
    /// endpoints answer 404.
    pub fn empty() -> Migrations {
        Migrations::default()
    }

    /// Serves one more migration, after the others.
    pub fn add(&self, id: String, snapshots: Snapshots) -> Result<(), String> {
        check_id(&id)?;
        let mut list = self.list.write().unwrap_or_else(PoisonError::into_inner);
        if list.iter().any(|(other, _)| *other == id) {
            return Err(format!("two migrations named {id:?}"));
        }
        list.push((id, snapshots));
        Ok(())
    }

    /// How many are served.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether none is served yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether one is served under `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// One migration, named `default`.
    pub(super) fn single(snapshots: Snapshots) -> Migrations {
        Migrations {
            list: Arc::new(RwLock::new(vec![("default".to_owned(), snapshots)])),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<(String, Snapshots)>> {
        self.list.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first migration and its id: the unprefixed endpoints serve it.
    pub(super) fn first(&self) -> Option<(String, Snapshots)> {
        self.read().first().cloned()
    }

    pub(super) fn get(&self, id: &str) -> Option<Snapshots> {
        self.read()
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, s)| s.clone())
    }

    /// Every migration's id and newest snapshot, in order.
    pub(super) fn snapshots(&self) -> Vec<(String, Arc<Snapshot>)> {
        self.read()
            .iter()
            .map(|(id, s)| (id.clone(), s.snapshot()))
            .collect()
    }
}

fn check_id(id: &str) -> Result<(), String> {
    let valid = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a migration id (letters, digits, '.', '_' and '-', not first '.')",
            id.chars().take(128).collect::<String>()
        ))
    }
}

/// One line of the fleet view.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    id: &'a str,
    phase: &'a Phase,
    tables_total: usize,
    tables_copied: usize,
    lag_bytes: u64,
    lag_seconds: f64,
    eta_sec: Option<f64>,
    alerts_firing: usize,
    /// The worst severity firing; absent when none is.
    alert_severity: Option<Severity>,
    /// The slot's `wal_status`; absent when no slot is reported.
    slot_wal_status: Option<&'a WalStatus>,
    /// Absent while nothing computed a verdict.
    cutover_ready: Option<bool>,
    stale: bool,
    /// Warning and critical alerts firing.
    #[serde(skip)]
    troubling: usize,
}

impl<'a> Summary<'a> {
    fn of(id: &'a str, s: &'a Snapshot, now: OffsetDateTime) -> Summary<'a> {
        let firing = || s.alerts.iter().filter(|a| a.state == AlertState::Firing);
        Summary {
            id,
            phase: &s.phase,
            tables_total: s.tables_total,
            tables_copied: s.tables_copied,
            lag_bytes: s.lag_bytes,
            lag_seconds: s.lag_seconds,
            eta_sec: s.eta_sec,
            alerts_firing: firing().count(),
            alert_severity: firing().map(|a| a.severity).max(),
            slot_wal_status: s.slot.as_ref().map(|slot| &slot.wal_status),
            cutover_ready: s.cutover.as_ref().map(|c| c.ready),
            stale: s.is_stale(now),
            troubling: firing().filter(|a| a.severity > Severity::Info).count(),
        }
    }

    /// Larger is worse: a critical or warning alert firing, then a slot
    /// whose WAL is in danger, then the lag (time, then bytes). Info alerts
    /// ("ready to cut over") are no trouble.
    fn trouble(&self) -> (u8, usize, u8, f64, u64) {
        let alerts = match self.alert_severity {
            Some(Severity::Critical) => 2,
            Some(Severity::Warning) => 1,
            Some(Severity::Info) | None => 0,
        };
        let slot = match self.slot_wal_status {
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
        (alerts, self.troubling, slot, lag_seconds, self.lag_bytes)
    }
}

/// `GET /api/v1/migrations`: a summary per migration, worst first.
pub(super) async fn list(State(state): State<Arc<AppState>>) -> Response {
    let now = OffsetDateTime::now_utc();
    let snapshots = state.migrations.snapshots();
    let mut summaries: Vec<Summary<'_>> = snapshots
        .iter()
        .map(|(id, s)| Summary::of(id, s, now))
        .collect();
    sort_worst_first(&mut summaries);
    Json(summaries).into_response()
}

/// Worst first (see [`Summary::trouble`]); equals keep their order.
fn sort_worst_first(summaries: &mut [Summary<'_>]) {
    summaries.sort_by(|a, b| {
        let (a, b) = (a.trouble(), b.trouble());
        b.0.cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then(b.2.cmp(&a.2))
            .then(b.3.total_cmp(&a.3))
            .then(b.4.cmp(&a.4))
    });
}

/// `GET /api/v1/migrations/{id}/{what}`.
pub(super) async fn one(
    State(state): State<Arc<AppState>>,
    Path((id, what)): Path<(String, String)>,
    uri: Uri,
) -> Response {
    let Some(snapshots) = state.migrations.get(&id) else {
        return error(StatusCode::NOT_FOUND, "no such migration");
    };
    let what = match what.as_str() {
        "status" => Resource::Status,
        "tables" => Resource::Tables,
        "logs" => Resource::Logs,
        "cutover" => Resource::Cutover,
        "alerts" => Resource::Alerts,
        "history" => Resource::History(uri.query()),
        _ => return error(StatusCode::NOT_FOUND, "not found"),
    };
    resource(&snapshots, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::Publisher;

    #[test]
    fn trouble_orders_alerts_then_slot_danger_then_lag() {
        use crate::model::{AlertStatus, SlotHealth};
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
                    alerts: vec![alert(Severity::Info)],
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
        let mut summaries: Vec<Summary<'_>> = cases
            .iter()
            .map(|(id, s)| Summary::of(id, s, now))
            .collect();
        sort_worst_first(&mut summaries);
        let order: Vec<&str> = summaries.iter().map(|s| s.id).collect();
        assert_eq!(
            order,
            [
                "critical", "warned", "lost", "extended", "lagging", "nan", "calm", "ready"
            ]
        );
    }

    #[test]
    fn ids_are_checked() {
        let snapshots = || Publisher::new(Arc::default()).snapshots();
        assert!(Migrations::new(vec![]).is_err());
        assert!(Migrations::new(vec![("shop-eu_1.a".into(), snapshots())]).is_ok());
        for bad in ["", "a b", "../x", "..", ".hidden", "é", "a/b"] {
            assert!(
                Migrations::new(vec![(bad.into(), snapshots())]).is_err(),
                "{bad}"
            );
        }
        let twice = vec![("a".into(), snapshots()), ("a".into(), snapshots())];
        assert!(
            Migrations::new(twice)
                .unwrap_err()
                .contains("two migrations")
        );
    }
}
