//! Many migrations in one process: their ids, the directories `serve`
//! watches for migrations that appear, and `monitor` of several
//! subscriptions.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgmigrator_metrics::http::Migrations;
use pgmigrator_metrics::printable::printable;
use pgmigrator_metrics::{Phase, Snapshots, StateFileMirror, alerts, app, default_state_path, pg};
use tracing_subscriber::filter::Targets;

use crate::args::MonitorArgs;
use crate::output::{say, warn};
use crate::serving::{install_logging, listen, logging, resumed_collector, start_alerts};
use crate::signals::shutdown_signal;
use crate::{Failure, monitor_config, stopped};

/// How often a watched directory is listed again.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);
/// Most migrations one server follows: a directory someone fills with
/// thousands of folders must not take every descriptor and task.
pub(crate) const MAX_MIGRATIONS: usize = 1000;

/// A stable id per state file: its name without `.json`, or its
/// directory's name for a `state.json` (see [`unique_id`]).
pub(crate) fn migration_id(path: &Path, taken: &[String]) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let name = match stem.as_deref() {
        Some("state") | None => path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned()),
        Some(stem) => Some(stem.to_owned()),
    };
    unique_id(name.as_deref().unwrap_or("migration"), taken)
}

/// `name` as a migration id that is also a safe folder name: characters
/// an id cannot hold, and a leading `.` (`..`, hidden folders), become
/// `-`; at most 100 characters; one already in `taken` gets `-2`, `-3`….
pub(crate) fn unique_id(name: &str, taken: &[String]) -> String {
    let base: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_alphanumeric() || "_-".contains(c) || (c == '.' && i > 0) {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    let base = if base.is_empty() {
        "migration".to_owned()
    } else {
        base
    };
    let mut id = base.clone();
    let mut n = 2;
    while taken.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// What serving one more state file takes: the alerts file, if any, and
/// whether its notifications must say which of several migrations fires.
#[derive(Clone)]
pub(crate) struct Follow {
    pub(crate) alerts: Option<PathBuf>,
    pub(crate) several: bool,
}

impl Follow {
    /// Follows the state file at `path` under a fresh id in `migrations`.
    pub(crate) fn add(
        &self,
        migrations: &Migrations,
        taken: &mut Vec<String>,
        path: &Path,
    ) -> Result<String, Failure> {
        let id = migration_id(path, taken);
        let mirror = StateFileMirror::start(path);
        // Another process writes the state file (and its alerts); serve's
        // own alert state is kept apart from that process's.
        start_alerts(
            self.alerts.as_deref(),
            mirror.snapshots(),
            None,
            (
                alerts::saved_path(&path.with_extension("serve.json")),
                self.several.then_some(id.as_str()),
            ),
        )?;
        migrations.add(id.clone(), Snapshots::from(mirror))?;
        taken.push(id.clone());
        Ok(id)
    }
}

/// The `state.json` of each folder directly in `dir` (real folders and
/// files, not links), in name order.
fn state_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let state = entry.path().join("state.json");
        if std::fs::symlink_metadata(&state).is_ok_and(|m| m.file_type().is_file()) {
            found.push(state);
        }
    }
    found.sort();
    Ok(found)
}

/// A directory whose folders each hold one migration's `state.json`
/// (`DIR/shop/state.json` is migration `shop`), listed now and every 2 s
/// after, so a migration that starts later is served as soon as its state
/// file appears.
pub(crate) struct Watch {
    dir: PathBuf,
    seen: HashSet<PathBuf>,
    /// Migrations at most, all sources together: [`MAX_MIGRATIONS`].
    cap: usize,
}

impl Watch {
    /// Checks `dir` is a directory that can be listed.
    pub(crate) fn new(dir: PathBuf) -> Result<Watch, Failure> {
        state_files_in(&dir)
            .map_err(|err| format!("{}: {err}", printable(&dir.display().to_string())))?;
        Ok(Watch {
            dir,
            seen: HashSet::new(),
            cap: MAX_MIGRATIONS,
        })
    }

    /// Serves the state files that appeared since the last look; `false`
    /// once the cap on migrations is reached.
    pub(crate) fn look(
        &mut self,
        follow: &Follow,
        migrations: &Migrations,
        taken: &mut Vec<String>,
    ) -> bool {
        let found = match state_files_in(&self.dir) {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), error = %err, "cannot list the watched directory");
                return true;
            }
        };
        for path in found {
            if self.seen.contains(&path) {
                continue;
            }
            if migrations.len() >= self.cap {
                warn(&format!(
                    "{}: already following {} migrations; no more are added",
                    printable(&self.dir.display().to_string()),
                    self.cap
                ));
                return false;
            }
            self.seen.insert(path.clone());
            match follow.add(migrations, taken, &path) {
                Ok(id) => say(&format!(
                    "Following: {} as {id}",
                    printable(&path.display().to_string())
                )),
                Err(err) => warn(&format!(
                    "{}: {err}",
                    printable(&path.display().to_string())
                )),
            }
        }
        true
    }

    /// Looks again every 2 s until the cap is reached.
    pub(crate) async fn run(
        mut self,
        follow: Follow,
        migrations: Migrations,
        mut taken: Vec<String>,
    ) {
        let mut ticks = tokio::time::interval(WATCH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !self.look(&follow, &migrations, &mut taken) {
                return;
            }
        }
    }
}

/// Several subscriptions, each a migration of its own: its monitor, its
/// collector (whose log gets that monitor's events) and its state file
/// `DIR/NAME/state.json`; one server for all of them.
pub(crate) async fn monitor_several(
    args: MonitorArgs,
    log_filter: &Targets,
) -> Result<(), Failure> {
    use tracing::instrument::WithSubscriber;
    install_logging(log_filter, None, args.tui)?;
    let dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => default_state_path()?
            .parent()
            .map(std::path::Path::to_path_buf)
            .ok_or("no directory for the state files: pass --state-dir")?,
    };
    let names = if args.all_subscriptions {
        let dest = args.servers.config(None, &args.cutover)?.dest;
        let names = pg::subscriptions(&dest).await?;
        if names.is_empty() {
            return Err("no subscription in the destination database".into());
        }
        names
    } else {
        args.subscriptions.clone()
    };
    if names.len() > MAX_MIGRATIONS {
        return Err(format!(
            "{} subscriptions: one process follows at most {}",
            names.len(),
            MAX_MIGRATIONS
        )
        .into());
    }
    let (mut taken, mut migrations, mut following) = (Vec::new(), Vec::new(), Vec::new());
    for name in names {
        // Bad input fails here, before anything is served.
        let monitor = pg::Monitor::connect(monitor_config(&args, Some(name.clone()))?).await?;
        let id = unique_id(&name, &taken);
        let state_file = dir.join(&id).join("state.json");
        let collector = resumed_collector(&state_file);
        collector.set_phase(Phase::Connecting).await;
        start_alerts(
            args.alerts.file.as_deref(),
            collector.snapshots(),
            Some(collector.clone()),
            (alerts::saved_path(&state_file), Some(&id)),
        )?;
        let (filter, tui) = (log_filter.clone(), args.tui);
        following.push(format!(
            "Following subscription {} as {id}: {}",
            printable(&name),
            printable(&state_file.display().to_string())
        ));
        migrations.push(app::Migration::new(
            id.clone(),
            collector,
            state_file,
            move |collector, stop| {
                let own = logging(&filter, Some(&collector), tui);
                pg::run(collector, monitor, stop).with_subscriber(own)
            },
        ));
        taken.push(id);
    }
    let (listener, config) = listen(&args.http, !args.tui).await?;
    if !args.tui {
        following.iter().for_each(|line| say(line));
    }
    app::run_migrations(
        migrations,
        listener,
        config,
        args.tui,
        shutdown_signal(None),
    )
    .await?;
    stopped(args.tui);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_ids_come_from_file_or_directory_names_and_stay_unique() {
        let mut taken = Vec::new();
        for path in [
            "/srv/shop/state.json",
            "/srv/billing.json",
            "/other/shop/state.json",
            "/srv/we ird/state.json",
            "state.json",
        ] {
            let id = migration_id(Path::new(path), &taken);
            taken.push(id);
        }
        assert_eq!(taken, ["shop", "billing", "shop-2", "we-ird", "migration"]);
    }

    #[test]
    fn subscription_names_become_safe_folder_names() {
        let taken = vec!["sub".to_owned()];
        assert_eq!(unique_id("sub", &taken), "sub-2");
        assert_eq!(unique_id("..", &taken), "-.");
        assert_eq!(unique_id("../../etc", &taken), "-.-..-etc");
        assert_eq!(unique_id(".hidden", &taken), "-hidden");
        assert_eq!(unique_id("", &taken), "migration");
        assert_eq!(unique_id("Schön/sub", &taken), "Sch-n-sub");
    }

    #[tokio::test]
    async fn a_watched_directory_stops_adding_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b", "c"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(dir.path().join(name).join("state.json"), "{}").unwrap();
        }
        let mut watch = Watch::new(dir.path().to_owned()).unwrap();
        watch.cap = 2;
        let follow = Follow {
            alerts: None,
            several: true,
        };
        let (migrations, mut taken) = (Migrations::empty(), Vec::new());
        assert!(
            !watch.look(&follow, &migrations, &mut taken),
            "the cap ends the watch"
        );
        assert_eq!(taken, ["a", "b"]);
        assert_eq!(migrations.len(), 2);
    }

    #[test]
    fn a_watched_directory_yields_the_state_json_of_real_folders_only() {
        let dir = tempfile::tempdir().unwrap();
        let folder = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir(&path).unwrap();
            path
        };
        std::fs::write(folder("shop").join("state.json"), "{}").unwrap();
        folder("empty");
        std::fs::create_dir(folder("nested").join("state.json")).unwrap();
        std::fs::write(dir.path().join("loose.json"), "{}").unwrap();
        std::os::unix::fs::symlink(dir.path().join("shop"), dir.path().join("link")).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("secret"), "{}").unwrap();
        std::os::unix::fs::symlink(
            elsewhere.path().join("secret"),
            folder("planted").join("state.json"),
        )
        .unwrap();
        assert_eq!(
            state_files_in(dir.path()).unwrap(),
            [dir.path().join("shop").join("state.json")]
        );
    }
}
