//! Many migrations in one process: `serve` of several state files and
//! watched directories, and `monitor` of several subscriptions. What a
//! fleet is (ids, watched directories, the cap) is the library's
//! [`fleet`] module; this file wires it to flags and output.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgmigrator_metrics::fleet::{self, MAX_MIGRATIONS, WatchedDir};
use pgmigrator_metrics::http::{self, Migrations};
use pgmigrator_metrics::printable::printable;
use pgmigrator_metrics::{Phase, Snapshots, StateFileMirror, alerts, app, default_state_path, pg};
use tracing_subscriber::filter::Targets;

use crate::args::{MonitorArgs, ServeArgs};
use crate::output::{say, warn};
use crate::serving::{install_logging, listen, logging, resumed_collector, start_alerts};
use crate::signals::shutdown_signal;
use crate::{Failure, monitor_config, state_path, stopped};

/// How often the watched directories are listed again.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// `serve`: the state files named, then those that appear in the watched
/// directories, every 2 s, up to [`MAX_MIGRATIONS`].
pub(crate) async fn serve(args: ServeArgs, log_filter: &Targets) -> Result<(), Failure> {
    install_logging(log_filter, None, false)?;
    let files = match (args.state_files.as_slice(), args.state_dirs.as_slice()) {
        ([], []) => vec![state_path(None)?],
        (files, _) => files.to_vec(),
    };
    let follow = Follow {
        alerts: args.alerts.file.clone(),
        several: files.len() > 1 || !args.state_dirs.is_empty(),
        migrations: Migrations::empty(),
        files: files.clone(),
    };
    let reserved = fleet::exact_ids(files.iter().map(PathBuf::as_path));
    let mut ids = Vec::new();
    for path in &files {
        ids.push(follow.add(path, &reserved)?);
    }
    let mut watches = args
        .state_dirs
        .into_iter()
        .map(|dir| {
            WatchedDir::open(dir.clone())
                .map_err(|err| format!("{}: {err}", printable(&dir.display().to_string())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (listener, config) = listen(&args.http, true).await?;
    for (path, id) in files.iter().zip(&ids) {
        say(&format!(
            "Following: {} as {id}",
            printable(&path.display().to_string())
        ));
    }
    if !watches.is_empty() {
        follow.look(&mut watches);
        tokio::spawn(follow.clone().watch(watches));
    }
    http::serve_migrations(listener, follow.migrations, config, shutdown_signal(None))
        .await
        .map_err(|err| format!("serving: {err}"))?;
    Ok(())
}

/// What serving one more state file takes: the alerts file, if any,
/// whether its notifications must say which of several migrations fires,
/// and the migrations served.
#[derive(Clone)]
struct Follow {
    alerts: Option<PathBuf>,
    several: bool,
    migrations: Migrations,
    /// The state files named on the command line.
    files: Vec<PathBuf>,
}

impl Follow {
    /// Follows the state file at `path` under a fresh id.
    fn add(&self, path: &Path, reserved: &HashSet<String>) -> Result<String, Failure> {
        let id = fleet::id_for_state_file(path, |id| self.migrations.contains(id), reserved);
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
        self.migrations.add(id.clone(), Snapshots::from(mirror))?;
        Ok(id)
    }

    /// Follows what appeared in `watches`; `false` once the cap is reached.
    /// One task looks at every directory in turn, so two folders of the
    /// same name in two directories get two ids; a folder whose name is an
    /// id as it is keeps that id for itself, whatever order folders are
    /// found in.
    fn look(&self, watches: &mut [WatchedDir]) -> bool {
        let mut found = Vec::new();
        for watch in watches.iter_mut() {
            let room = MAX_MIGRATIONS.saturating_sub(self.migrations.len());
            match watch.appeared(room + 1) {
                Ok(appeared) => found.push((watch.dir().to_owned(), appeared)),
                Err(err) => {
                    tracing::warn!(dir = %watch.dir().display(), error = %err, "cannot list the watched directory");
                }
            }
        }
        let reserved = fleet::exact_ids(
            self.files
                .iter()
                .map(PathBuf::as_path)
                .chain(watches.iter().flat_map(WatchedDir::seen)),
        );
        for (dir, appeared) in found {
            for path in appeared {
                if self.migrations.len() >= MAX_MIGRATIONS {
                    warn(&format!(
                        "{}: already following {MAX_MIGRATIONS} migrations; no more are added",
                        printable(&dir.display().to_string()),
                    ));
                    return false;
                }
                let shown = path.display().to_string();
                let shown = printable(&shown);
                match self.add(&path, &reserved) {
                    Ok(id) => say(&format!("Following: {shown} as {id}")),
                    Err(err) => warn(&format!("{shown}: {err}")),
                }
            }
        }
        true
    }

    /// Looks again every 2 s until the cap is reached.
    async fn watch(self, mut watches: Vec<WatchedDir>) {
        let mut ticks = tokio::time::interval(WATCH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if !self.look(&mut watches) {
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
    let exact: HashSet<String> = names.iter().filter(|n| fleet::is_id(n)).cloned().collect();
    let (mut taken, mut migrations, mut following) = (Vec::<String>::new(), Vec::new(), Vec::new());
    for name in names {
        // Bad input fails here, before anything is served.
        let monitor = pg::Monitor::connect(monitor_config(&args, Some(name.clone()))?).await?;
        // A subscription whose name is an id as it is keeps it, whatever
        // the order of the others.
        let id = fleet::id_for_name(&name, |id| {
            taken.iter().any(|t| t == id) || (id != name && exact.contains(id))
        });
        let state_file = fleet::state_file_in(&dir, &id);
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

    #[tokio::test]
    async fn the_same_folders_get_the_same_ids_whatever_order_they_appear_in() {
        let dir = tempfile::tempdir().unwrap();
        let folder = |name: &str, lag_bytes: u64| {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            let state = pgmigrator_metrics::Snapshot {
                lag_bytes,
                ..pgmigrator_metrics::Snapshot::default()
            };
            pgmigrator_metrics::write_state_file(&dir.path().join(name).join("state.json"), &state)
                .unwrap();
        };
        // `a b` sorts first and used to take `a-b` from the folder named so.
        folder("a b", 1);
        folder("a-b", 2);
        let follow = Follow {
            alerts: None,
            several: true,
            migrations: Migrations::empty(),
            files: Vec::new(),
        };
        let mut watches = [WatchedDir::open(dir.path().to_owned()).unwrap()];
        assert!(follow.look(&mut watches));
        let shown = follow.migrations.summaries(time::OffsetDateTime::now_utc());
        let mut ids: Vec<(&str, u64)> =
            shown.iter().map(|m| (m.id.as_str(), m.lag_bytes)).collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [("a-b", 2), ("a-b-2", 1)],
            "the folder named a-b is a-b"
        );
    }

    #[tokio::test]
    async fn watched_directories_stop_adding_at_the_cap_and_never_reuse_an_id() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [&one, &two] {
            std::fs::create_dir(dir.path().join("shop")).unwrap();
            std::fs::write(dir.path().join("shop").join("state.json"), "{}").unwrap();
        }
        let follow = Follow {
            alerts: None,
            several: true,
            migrations: Migrations::empty(),
            files: Vec::new(),
        };
        let mut watches = [one.path(), two.path()].map(|d| WatchedDir::open(d.to_owned()).unwrap());
        assert!(follow.look(&mut watches));
        assert!(follow.migrations.contains("shop") && follow.migrations.contains("shop-2"));
        for n in 0..MAX_MIGRATIONS - 1 {
            let folder = one.path().join(format!("m{n:04}"));
            std::fs::create_dir(&folder).unwrap();
            std::fs::write(folder.join("state.json"), "{}").unwrap();
        }
        assert!(!follow.look(&mut watches), "the cap ends the watch");
        assert_eq!(follow.migrations.len(), MAX_MIGRATIONS);
    }
}
