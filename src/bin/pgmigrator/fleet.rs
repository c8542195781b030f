//! Many migrations in one process: `serve` of several state files and
//! watched directories, and `monitor` of several subscriptions. What a
//! fleet is (ids, watched directories, the cap) is the library's
//! [`fleet`] module; this file wires it to flags and output.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pgmigrator_metrics::fleet::{self, MAX_MIGRATIONS, WatchedDir};
use pgmigrator_metrics::http::{self, Migrations};
use pgmigrator_metrics::otlp::Source;
use pgmigrator_metrics::printable::printable;
use pgmigrator_metrics::{Phase, Snapshots, StateFileMirror, alerts, app, default_state_path, pg};
use tokio::task::JoinHandle;
use tracing_subscriber::filter::Targets;

use crate::args::{MonitorArgs, ServeArgs};
use crate::output::{say, warn};
use crate::serving::{
    install_logging, listen, logging, resume_verify, resumed_collector, start_alerts, start_otlp,
    stop_otlp,
};
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
    let mut follow = Follow::new(
        args.alerts.file.clone(),
        files.len() > 1 || !args.state_dirs.is_empty(),
        files.clone(),
    );
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
    let (listener, mut config) = listen(&args.http, true).await?;
    for (path, id) in files.iter().zip(&ids) {
        say(&format!(
            "Following: {} as {id}",
            printable(&path.display().to_string())
        ));
    }
    let migrations = follow.migrations.clone();
    let source = fleet_source(migrations.clone());
    let export = start_otlp(&args.otlp, &mut config, source, true)?;
    if !watches.is_empty() {
        follow.look(&mut watches);
        tokio::spawn(follow.watch(watches));
    }
    let served = http::serve_migrations(listener, migrations, config, shutdown_signal(None)).await;
    stop_otlp(export).await;
    served.map_err(|err| format!("serving: {err}"))?;
    Ok(())
}

/// What a fleet's OTLP export pushes: every migration served at the time
/// of the push, each labelled with its id, as its `/metrics` is.
fn fleet_source(migrations: Migrations) -> Source {
    Arc::new(move || {
        migrations
            .snapshots()
            .into_iter()
            .map(|(id, snapshot)| (Some(id), snapshot))
            .collect()
    })
}

/// What serving one more state file takes: the alerts file, if any,
/// whether its notifications must say which of several migrations fires,
/// and the migrations served, by the state file each follows.
struct Follow {
    alerts: Option<PathBuf>,
    several: bool,
    migrations: Migrations,
    /// The state files named on the command line.
    files: Vec<PathBuf>,
    /// Each state file served from a watched directory: its id, and its
    /// alerts task (which holds the file's mirror while it runs).
    served: HashMap<PathBuf, (String, Option<JoinHandle<()>>)>,
    /// What was last said of the cap and of each directory that could not
    /// be listed, so each is said once per change.
    at_cap: bool,
    unlisted: HashSet<PathBuf>,
}

impl Follow {
    fn new(alerts: Option<PathBuf>, several: bool, files: Vec<PathBuf>) -> Follow {
        Follow {
            alerts,
            several,
            migrations: Migrations::empty(),
            files,
            served: HashMap::new(),
            at_cap: false,
            unlisted: HashSet::new(),
        }
    }

    /// Follows the state file at `path` under a fresh id.
    fn add(&mut self, path: &Path, reserved: &HashSet<String>) -> Result<String, Failure> {
        let id = fleet::id_for_state_file(path, |id| self.migrations.contains(id), reserved);
        let mirror = StateFileMirror::start(path);
        // Another process writes the state file (and its alerts); serve's
        // own alert state is kept apart from that process's.
        let alerts = start_alerts(
            self.alerts.as_deref(),
            mirror.snapshots(),
            None,
            (
                alerts::saved_path(&path.with_extension("serve.json")),
                self.several.then_some(id.as_str()),
            ),
        )?;
        self.migrations.add(id.clone(), Snapshots::from(mirror))?;
        self.served.insert(path.to_owned(), (id.clone(), alerts));
        Ok(id)
    }

    /// Stops serving the state file at `path`: its id, its mirror and its
    /// alerts go, so a migration removed costs nothing and frees a place.
    fn remove(&mut self, path: &Path) -> Option<String> {
        let (id, alerts) = self.served.remove(path)?;
        if let Some(alerts) = alerts {
            alerts.abort();
        }
        self.migrations.remove(&id);
        Some(id)
    }

    /// Follows what appeared in `watches` and drops what is gone. One task
    /// looks at every directory in turn, so two folders of the same name
    /// in two directories get two ids; a folder whose name is an id as it
    /// is keeps that id for itself, whatever order folders are found in.
    fn look(&mut self, watches: &mut [WatchedDir]) {
        let mut appeared = Vec::new();
        for watch in watches.iter_mut() {
            let room = MAX_MIGRATIONS.saturating_sub(self.migrations.len());
            let shown = printable(&watch.dir().display().to_string()).into_owned();
            match watch.look(room) {
                Ok(changes) => {
                    if self.unlisted.remove(watch.dir()) {
                        say(&format!("{shown}: listed again"));
                    }
                    for path in changes.gone {
                        if let Some(id) = self.remove(&path) {
                            say(&format!("No longer following {id}: its state file is gone"));
                        }
                    }
                    appeared.extend(changes.appeared);
                }
                Err(err) => {
                    if self.unlisted.insert(watch.dir().to_owned()) {
                        warn(&format!(
                            "{shown}: cannot list it: {err}; trying again every 2 s"
                        ));
                    }
                }
            }
        }
        let reserved = fleet::exact_ids(
            self.files
                .iter()
                .map(PathBuf::as_path)
                .chain(watches.iter().flat_map(WatchedDir::seen)),
        );
        for path in appeared {
            let shown = path.display().to_string();
            let shown = printable(&shown);
            match self.add(&path, &reserved) {
                Ok(id) => say(&format!("Following: {shown} as {id}")),
                Err(err) => warn(&format!("{shown}: {err}")),
            }
        }
        let at_cap = self.migrations.len() >= MAX_MIGRATIONS;
        if at_cap && !self.at_cap {
            warn(&format!(
                "already following {MAX_MIGRATIONS} migrations; more are added as others go"
            ));
        }
        self.at_cap = at_cap;
    }

    /// Looks again every 2 s, for as long as the server runs.
    async fn watch(mut self, mut watches: Vec<WatchedDir>) {
        let mut ticks = tokio::time::interval(WATCH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.look(&mut watches);
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
    let mut sources = Vec::new();
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
        if args.verify.verify {
            resume_verify(&collector, &state_file).await;
        }
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
        sources.push((id.clone(), collector.snapshots()));
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
    let (listener, mut config) = listen(&args.http, !args.tui).await?;
    if !args.tui {
        following.iter().for_each(|line| say(line));
    }
    let followed = Migrations::new(sources).map_err(|err| format!("OTLP export: {err}"))?;
    let export = start_otlp(&args.otlp, &mut config, fleet_source(followed), !args.tui)?;
    let ran = app::run_migrations(
        migrations,
        listener,
        config,
        args.tui,
        shutdown_signal(None),
    )
    .await;
    stop_otlp(export).await;
    ran?;
    stopped(args.tui);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_in(dir: &Path, name: &str, lag_bytes: u64) {
        std::fs::create_dir(dir.join(name)).unwrap();
        let state = pgmigrator_metrics::Snapshot {
            lag_bytes,
            ..pgmigrator_metrics::Snapshot::default()
        };
        pgmigrator_metrics::write_state_file(&dir.join(name).join("state.json"), &state).unwrap();
    }

    fn ids(follow: &Follow) -> Vec<(String, u64)> {
        let mut ids: Vec<(String, u64)> = follow
            .migrations
            .summaries(time::OffsetDateTime::now_utc())
            .into_iter()
            .map(|m| (m.id, m.lag_bytes))
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn the_same_folders_get_the_same_ids_whatever_order_they_appear_in() {
        let dir = tempfile::tempdir().unwrap();
        // `a b` sorts first and used to take `a-b` from the folder named so.
        state_in(dir.path(), "a b", 1);
        state_in(dir.path(), "a-b", 2);
        let mut follow = Follow::new(None, true, Vec::new());
        let mut watches = [WatchedDir::open(dir.path().to_owned()).unwrap()];
        follow.look(&mut watches);
        assert_eq!(
            ids(&follow),
            [("a-b".to_owned(), 2), ("a-b-2".to_owned(), 1)],
            "the folder named a-b is a-b"
        );
    }

    #[tokio::test]
    async fn two_directories_with_one_folder_name_give_two_ids() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        state_in(one.path(), "shop", 1);
        state_in(two.path(), "shop", 2);
        let mut follow = Follow::new(None, true, Vec::new());
        let mut watches = [one.path(), two.path()].map(|d| WatchedDir::open(d.to_owned()).unwrap());
        follow.look(&mut watches);
        assert_eq!(
            ids(&follow),
            [("shop".to_owned(), 1), ("shop-2".to_owned(), 2)]
        );
    }

    #[tokio::test]
    async fn a_removed_migration_is_dropped_and_frees_its_place_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..MAX_MIGRATIONS {
            state_in(dir.path(), &format!("m{n:04}"), 0);
        }
        let mut follow = Follow::new(None, true, Vec::new());
        let mut watches = [WatchedDir::open(dir.path().to_owned()).unwrap()];
        follow.look(&mut watches);
        assert_eq!(follow.migrations.len(), MAX_MIGRATIONS);
        // One more waits for a place.
        state_in(dir.path(), "late", 7);
        follow.look(&mut watches);
        assert!(!follow.migrations.contains("late"));
        // One goes: it is dropped, and the one waiting takes its place.
        std::fs::remove_dir_all(dir.path().join("m0000")).unwrap();
        follow.look(&mut watches);
        assert!(!follow.migrations.contains("m0000"));
        follow.look(&mut watches);
        assert!(
            follow.migrations.contains("late"),
            "the watch goes on past the cap"
        );
        assert_eq!(follow.migrations.len(), MAX_MIGRATIONS);
        // Back again later: served again under its own name.
        std::fs::remove_dir_all(dir.path().join("m0001")).unwrap();
        follow.look(&mut watches);
        state_in(dir.path(), "m0001", 9);
        follow.look(&mut watches);
        assert!(follow.migrations.contains("m0001"));
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_listed_is_said_once_until_it_can() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("fleet");
        std::fs::create_dir(&watched).unwrap();
        let mut follow = Follow::new(None, true, Vec::new());
        let mut watches = [WatchedDir::open(watched.clone()).unwrap()];
        std::fs::remove_dir(&watched).unwrap();
        follow.look(&mut watches);
        follow.look(&mut watches);
        assert!(follow.unlisted.contains(&watched));
        std::fs::create_dir(&watched).unwrap();
        follow.look(&mut watches);
        assert!(follow.unlisted.is_empty());
    }
}
