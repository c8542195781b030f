//! Alerting with no other infrastructure: rules evaluated on every
//! published snapshot, and notifications to webhooks, Slack or a command.
//!
//! ```
//! use pgmigrator_metrics::alerts::AlertsConfig;
//!
//! let config = AlertsConfig::parse(
//!     r#"
//! [[rule]]
//! name = "lag"
//! when = "lag_bytes > 1MB"
//! for = "30s"
//! "#,
//!     "alerts.toml",
//! )
//! .unwrap();
//! assert_eq!(config.rules[0].condition.threshold(), "1MB");
//!
//! // A mistake names its line.
//! let err = AlertsConfig::parse("[[rule]]\nname = \"x\"\nwhen = \"lag > 1MB\"\n", "alerts.toml");
//! assert!(err.unwrap_err().to_string().starts_with("alerts.toml:3: unknown quantity"));
//! ```

mod config;
mod engine;
mod notify;
mod post;
mod rule;

pub use config::{AlertsConfig, AlertsError, COMMAND_ENV, NotifierConfig, default_rules};
pub use engine::{Engine, Notification, Rule, Saved, SavedFiring};
pub use notify::{Dispatcher, Message, QUEUE_CAPACITY, RetryPolicy};
pub use rule::{Condition, Measured, Op, Quantity};

use std::io;
use std::path::{Path, PathBuf};

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use crate::collector::Collector;
use crate::publish::Snapshots;

/// Largest saved alert state read.
const MAX_SAVED_BYTES: u64 = 1024 * 1024;

/// Where the alert state of the migration persisted at `state_file` is
/// kept: beside it, `state.json` → `state.alerts.json`.
pub fn saved_path(state_file: &Path) -> PathBuf {
    crate::persist::companion_path(state_file, "alerts")
}

/// Evaluates `config`'s rules on every snapshot published to `snapshots`,
/// as any reader does (it never slows the collector), until its publisher
/// stops: hands notifications to `dispatcher`, records the alerts into
/// `record` (the collector behind `snapshots`, so every surface shows
/// them; `None` when following another process's state file), and keeps
/// the firing alerts in `saved` (see [`saved_path`]), so a restart does
/// not tell anyone again.
pub async fn run(
    snapshots: Snapshots,
    record: Option<Collector>,
    config: AlertsConfig,
    dispatcher: Dispatcher,
    saved: Option<PathBuf>,
) {
    let mut engine = Engine::new(config.rules.clone());
    let mut kept = Saved::default();
    if let Some(path) = &saved {
        match load_saved(path) {
            Ok(Some(previous)) => {
                engine.restore(&previous, Instant::now(), time::OffsetDateTime::now_utc());
                kept = previous;
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(
                path = %path.display(),
                error = %err,
                "cannot read the saved alert state; starting afresh"
            ),
        }
    }
    let mut snapshots = snapshots.subscribe();
    let mut shown = (Vec::new(), 0);
    loop {
        let snapshot = match snapshots.recv().await {
            Ok(snapshot) => snapshot,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let now = Instant::now();
        for notification in engine.evaluate(&snapshot, now) {
            dispatcher.send(Message {
                notification,
                migration: config.migration.clone(),
                dashboard_url: config.dashboard_url.clone(),
            });
        }
        let current = (engine.alerts(), dispatcher.failed());
        // A reader writing back, by design: an alert's state depends on how
        // long a condition held (its `for` window, its hysteresis) and on
        // deliveries, which no single snapshot holds, so the engine keeps it
        // and the collector only publishes it. Only a change is sent, and
        // the engine ignores its own field, so the loop settles.
        if let Some(collector) = record.as_ref().filter(|_| current != shown) {
            collector.record_alerts(current.0.clone(), current.1).await;
            shown = current;
        }
        if let Some(path) = &saved {
            // The clock, not the snapshot's time: a state file served by
            // `serve` may be hours old, and its time would date every
            // reminder that long ago.
            let state = engine.saved(now, time::OffsetDateTime::now_utc());
            if state != kept {
                let (path, text) = (path.clone(), serde_json::to_vec_pretty(&state));
                let written = match text {
                    Ok(text) => tokio::task::spawn_blocking(move || {
                        refuse_linked_folder(&path)?;
                        crate::persist::write_atomically(&path, &text)
                    })
                    .await
                    .unwrap_or_else(|err| Err(io::Error::other(err))),
                    Err(err) => Err(io::Error::other(err)),
                };
                match written {
                    Ok(()) => kept = state,
                    Err(err) => tracing::warn!(error = %err, "cannot save the alert state"),
                }
            }
        }
    }
}

/// Refuses a path whose folder is a symbolic link: a migration folder
/// swapped for a link would have this write land wherever it points.
fn refuse_linked_folder(path: &Path) -> io::Result<()> {
    let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if std::fs::symlink_metadata(folder).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(io::Error::other(format!(
            "{} is a symbolic link; the alert state is not written through it",
            crate::printable::printable(&folder.display().to_string())
        )));
    }
    Ok(())
}

/// The saved alert state, `None` when there is none yet.
fn load_saved(path: &Path) -> io::Result<Option<Saved>> {
    match crate::persist::read_small_file(path, MAX_SAVED_BYTES, crate::persist::Links::Refuse) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(io::Error::other),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alert_state_is_never_written_through_a_linked_folder() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let shop = dir.path().join("shop");
        std::os::unix::fs::symlink(&elsewhere, &shop).unwrap();
        let err = refuse_linked_folder(&shop.join("state.serve.json")).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        std::fs::create_dir(dir.path().join("real")).unwrap();
        assert!(refuse_linked_folder(&dir.path().join("real").join("state.serve.json")).is_ok());
        assert!(refuse_linked_folder(Path::new("state.serve.json")).is_ok());
    }
}
