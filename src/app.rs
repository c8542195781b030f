//! Running a job (the migration, the demo, the monitor) with every surface
//! around it: the state file, the HTTP server, optionally the terminal
//! dashboard, and one stop for all of them.
//!
//! The binary parses its flags and calls [`run`] with a shutdown future
//! (Ctrl-C, SIGTERM, SIGHUP); tests pass their own.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::collector::Collector;
use crate::http::{self, HttpConfig};
use crate::persist::StatePersister;

/// Where a running job is shown.
#[derive(Debug)]
pub struct Surfaces {
    /// The bound listener of the HTTP surfaces.
    pub listener: TcpListener,
    /// Their settings.
    pub http: HttpConfig,
    /// The state file to persist to.
    pub state_file: PathBuf,
    /// Show the terminal dashboard in the foreground; its quit key stops
    /// everything.
    #[cfg(feature = "tui")]
    pub tui: bool,
}

/// Completes when the job should stop.
pub type Stop = WaitForCancellationFutureOwned;

/// Why [`run`] failed. The final state was written (or its failure is the
/// error) in every case but [`AppError::StateFile`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AppError {
    /// The state file cannot be used; nothing was started.
    StateFile {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The job panicked; everything was stopped.
    JobPanicked(String),
    /// The HTTP server failed.
    Serve(io::Error),
    /// The terminal dashboard failed.
    Terminal(io::Error),
    /// The final write of the state file failed: it holds an older state.
    FinalWrite {
        /// Its path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The message names what failed; the cause is its [`source`](std::error::Error::source).
impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::StateFile { path, .. } => {
                write!(f, "cannot use the state file {}", path.display())
            }
            AppError::JobPanicked(message) => write!(f, "the job failed: {message}"),
            AppError::Serve(_) => f.write_str("serving"),
            AppError::Terminal(_) => f.write_str("terminal"),
            AppError::FinalWrite { path, .. } => write!(
                f,
                "the final state could not be written to {}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AppError::StateFile { source, .. } | AppError::FinalWrite { source, .. } => {
                Some(source)
            }
            AppError::Serve(err) | AppError::Terminal(err) => Some(err),
            AppError::JobPanicked(_) => None,
        }
    }
}

/// Runs `job` on `collector` while persisting it to the state file, serving
/// it over HTTP and, when asked, showing the terminal dashboard. Everything
/// stops when `shutdown` completes, the job ends (or panics), or the
/// dashboard's quit key is pressed; then the final state is written and the
/// collector closed.
///
/// The state file is checked before anything starts: a path that cannot be
/// written fails here, with nothing served.
pub async fn run<J, F>(
    collector: Collector,
    surfaces: Surfaces,
    job: J,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError>
where
    J: FnOnce(Collector, Stop) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let migration = Migration::new("default", collector, surfaces.state_file, job);
    #[cfg(feature = "tui")]
    let tui = surfaces.tui;
    #[cfg(not(feature = "tui"))]
    let tui = false;
    run_all(
        vec![migration],
        Served::Single,
        (surfaces.listener, surfaces.http, tui),
        shutdown,
    )
    .await
}

/// A job started with its collector and the stop signal.
type BoxedJob = Box<dyn FnOnce(Collector, Stop) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One migration of [`run_migrations`]: its id, collector, state file and
/// job.
pub struct Migration {
    id: String,
    collector: Collector,
    state_file: PathBuf,
    job: BoxedJob,
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migration")
            .field("id", &self.id)
            .field("state_file", &self.state_file)
            .finish_non_exhaustive()
    }
}

impl Migration {
    /// `job` on `collector`, persisted to `state_file`, served under
    /// `/api/v1/migrations/{id}` (an id as [`http::Migrations`] accepts).
    pub fn new<J, F>(
        id: impl Into<String>,
        collector: Collector,
        state_file: impl Into<PathBuf>,
        job: J,
    ) -> Migration
    where
        J: FnOnce(Collector, Stop) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        Migration {
            id: id.into(),
            collector,
            state_file: state_file.into(),
            job: Box::new(move |collector, stop| Box::pin(job(collector, stop))),
        }
    }
}

/// How the server lists what it serves.
enum Served {
    /// One migration, as [`http::serve`] does.
    Single,
    /// Each under its id.
    Each,
}

/// [`run`] for several migrations in one process: each persisted to its
/// own state file, all served by one server (see
/// [`http::serve_migrations`]); the terminal dashboard, when `tui` is set
/// and the `tui` feature is on, opens on their list. Everything stops when
/// `shutdown` completes, any job ends or panics, or the dashboard's quit
/// key is pressed; then every final state is written.
///
/// Every id and state file is checked before anything starts (a repeated
/// or invalid id is [`AppError::Serve`]); with no migration it returns at
/// once.
pub async fn run_migrations(
    migrations: Vec<Migration>,
    listener: TcpListener,
    http: HttpConfig,
    tui: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    run_all(migrations, Served::Each, (listener, http, tui), shutdown).await
}

async fn run_all(
    migrations: Vec<Migration>,
    served: Served,
    (listener, http_config, tui): (TcpListener, HttpConfig, bool),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AppError> {
    let Some(first) = migrations.first().map(|m| m.collector.clone()) else {
        return Ok(());
    };
    // Ids are checked before anything starts.
    let listed = match served {
        Served::Single => None,
        Served::Each => Some(
            http::Migrations::new(
                migrations
                    .iter()
                    .map(|m| (m.id.clone(), m.collector.snapshots()))
                    .collect(),
            )
            .map_err(|err| AppError::Serve(io::Error::new(io::ErrorKind::InvalidInput, err)))?,
        ),
    };
    let mut persisters = Vec::with_capacity(migrations.len());
    for migration in &migrations {
        let persister = StatePersister::start(migration.collector.clone(), &migration.state_file)
            .map_err(|source| AppError::StateFile {
            path: migration.state_file.clone(),
            source,
        })?;
        persisters.push((persister, migration.state_file.clone()));
    }
    let stop = CancellationToken::new();
    // The shutdown signal, or any part ending, stops every part.
    let _on_shutdown = tokio::spawn(stop.clone().run_until_cancelled_owned({
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    }));
    let server = tokio::spawn({
        let stopped = stop.clone().cancelled_owned();
        let serving = async move {
            match listed {
                Some(listed) => {
                    http::serve_migrations(listener, listed, http_config, stopped).await
                }
                None => http::serve(listener, first.snapshots(), http_config, stopped).await,
            }
        };
        let stop = stop.clone();
        async move {
            let served = serving.await;
            // A server that fails stops everything rather than leaving a
            // job nobody can see.
            stop.cancel();
            served
        }
    });
    #[cfg(feature = "tui")]
    let dashboard = tui.then(|| {
        let stopped = stop.clone().cancelled_owned();
        let shown: Pin<Box<dyn Future<Output = io::Result<()>> + Send>> = match served {
            Served::Single => Box::pin(crate::tui::run(
                crate::tui::Feed::local(migrations[0].collector.snapshots()),
                stopped,
            )),
            Served::Each => Box::pin(crate::tui::run_fleet(
                crate::tui::Fleet::local(
                    migrations
                        .iter()
                        .map(|m| (m.id.clone(), m.collector.snapshots()))
                        .collect(),
                ),
                stopped,
            )),
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let shown = shown.await;
            stop.cancel();
            shown
        })
    });
    #[cfg(not(feature = "tui"))]
    let _ = tui;
    let mut collectors = Vec::with_capacity(migrations.len());
    let mut work = tokio::task::JoinSet::new();
    for migration in migrations {
        collectors.push(migration.collector.clone());
        work.spawn((migration.job)(
            migration.collector,
            stop.clone().cancelled_owned(),
        ));
    }
    // The first job to end stops the others.
    let mut panicked = None;
    tokio::select! {
        Some(worked) = work.join_next() => {
            if let Err(join) = worked {
                panicked = Some(panic_message(join));
            }
        }
        () = stop.cancelled() => {}
    }
    stop.cancel();
    while let Some(worked) = work.join_next().await {
        if let (Err(join), None) = (worked, &panicked) {
            panicked = Some(panic_message(join));
        }
    }

    let served = server.await;
    #[cfg(feature = "tui")]
    let shown = match dashboard {
        Some(dashboard) => dashboard.await.map_err(io::Error::other).and_then(|r| r),
        None => Ok(()),
    };
    let mut saved = Ok(());
    for (persister, path) in persisters {
        if let (Err(source), Ok(())) = (persister.stop().await, &saved) {
            saved = Err(AppError::FinalWrite { path, source });
        }
    }
    for collector in collectors {
        collector.close().await;
    }

    if let Some(message) = panicked {
        return Err(AppError::JobPanicked(message));
    }
    served
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(AppError::Serve)?;
    #[cfg(feature = "tui")]
    shown.map_err(AppError::Terminal)?;
    saved
}

fn panic_message(join: tokio::task::JoinError) -> String {
    match join.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "it panicked".to_owned()),
        Err(join) => join.to_string(),
    }
}
