//! Several migrations behind one server: each under a stable id, listed
//! with a summary so one screen shows which is in trouble.

use std::sync::{Arc, PoisonError, RwLock};

use time::OffsetDateTime;

use crate::model::{MigrationSummary, Snapshot, summarize};
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

    /// Stops serving the migration `id`; `false` when none had it. Its
    /// WebSocket clients see the end once nothing else holds its source.
    pub fn remove(&self, id: &str) -> bool {
        let mut list = self.list.write().unwrap_or_else(PoisonError::into_inner);
        let before = list.len();
        list.retain(|(other, _)| other != id);
        list.len() != before
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

    /// Every migration's summary at `now`, worst first.
    pub fn summaries(&self, now: OffsetDateTime) -> Vec<MigrationSummary> {
        summarize(
            self.read()
                .iter()
                .map(|(id, s)| (id.as_str(), s.snapshot())),
            now,
        )
    }

    /// Every migration's id and newest snapshot, in order.
    pub fn snapshots(&self) -> Vec<(String, Arc<Snapshot>)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::Publisher;

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
