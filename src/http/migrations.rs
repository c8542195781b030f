//! Several migrations behind one server: each under a stable id, listed
//! with a summary so one screen shows which is in trouble.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;

use super::{AppState, Resource, error, resource};
use crate::model::{AlertState, Phase, Snapshot};
use crate::publish::Snapshots;

/// The migrations a server serves, each under its id (letters, digits,
/// `.`, `_` and `-`; unique), in the order given.
#[derive(Debug, Clone)]
pub struct Migrations {
    list: Vec<(String, Snapshots)>,
}

impl Migrations {
    /// Migrations by id; at least one, and no id twice.
    pub fn new(list: Vec<(String, Snapshots)>) -> Result<Migrations, String> {
        if list.is_empty() {
            return Err("no migration to serve".to_owned());
        }
        for (index, (id, _)) in list.iter().enumerate() {
            let valid = !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !valid {
                return Err(format!(
                    "{:?} is not a migration id (letters, digits, '.', '_' and '-')",
                    id.chars().take(128).collect::<String>()
                ));
            }
            if list[..index].iter().any(|(other, _)| other == id) {
                return Err(format!("two migrations named {id:?}"));
            }
        }
        Ok(Migrations { list })
    }

    /// One migration, named `default`.
    pub(super) fn single(snapshots: Snapshots) -> Migrations {
        Migrations {
            list: vec![("default".to_owned(), snapshots)],
        }
    }

    /// The first migration.
    pub(super) fn first(&self) -> &Snapshots {
        &self.list[0].1
    }

    fn get(&self, id: &str) -> Option<&Snapshots> {
        self.list.iter().find(|(i, _)| i == id).map(|(_, s)| s)
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
    /// Absent while nothing computed a verdict.
    cutover_ready: Option<bool>,
    stale: bool,
}

impl<'a> Summary<'a> {
    fn of(id: &'a str, s: &'a Snapshot, now: OffsetDateTime) -> Summary<'a> {
        Summary {
            id,
            phase: &s.phase,
            tables_total: s.tables_total,
            tables_copied: s.tables_copied,
            lag_bytes: s.lag_bytes,
            lag_seconds: s.lag_seconds,
            eta_sec: s.eta_sec,
            alerts_firing: s
                .alerts
                .iter()
                .filter(|a| a.state == AlertState::Firing)
                .count(),
            cutover_ready: s.cutover.as_ref().map(|c| c.ready),
            stale: s.is_stale(now),
        }
    }
}

/// `GET /api/v1/migrations`: a summary per migration, in order.
pub(super) async fn list(State(state): State<Arc<AppState>>) -> Response {
    let now = OffsetDateTime::now_utc();
    let snapshots: Vec<(&str, Arc<Snapshot>)> = state
        .migrations
        .list
        .iter()
        .map(|(id, s)| (id.as_str(), s.snapshot()))
        .collect();
    let summaries: Vec<Summary<'_>> = snapshots
        .iter()
        .map(|(id, s)| Summary::of(id, s, now))
        .collect();
    Json(summaries).into_response()
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
    resource(snapshots, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::Publisher;

    #[test]
    fn ids_are_checked() {
        let snapshots = || Publisher::new(Arc::default()).snapshots();
        assert!(Migrations::new(vec![]).is_err());
        assert!(Migrations::new(vec![("shop-eu_1.a".into(), snapshots())]).is_ok());
        for bad in ["", "a b", "../x", "é", "a/b"] {
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
