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
    J: FnOnce(Collector, Stop) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let path = surfaces.state_file;
    let persister =
        StatePersister::start(collector.clone(), &path).map_err(|source| AppError::StateFile {
            path: path.clone(),
            source,
        })?;
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
        let serving = http::serve(
            surfaces.listener,
            collector.snapshots(),
            surfaces.http,
            stop.clone().cancelled_owned(),
        );
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
    let dashboard = surfaces.tui.then(|| {
        let feed = crate::tui::Feed::local(collector.snapshots());
        let stop = stop.clone();
        tokio::spawn(async move {
            let shown = crate::tui::run(feed, stop.clone().cancelled_owned()).await;
            stop.cancel();
            shown
        })
    });
    let mut work = tokio::spawn(job(collector.clone(), stop.clone().cancelled_owned()));
    let worked = tokio::select! {
        worked = &mut work => worked,
        () = stop.cancelled() => work.await,
    };
    stop.cancel();

    let served = server.await;
    #[cfg(feature = "tui")]
    let shown = match dashboard {
        Some(dashboard) => dashboard.await.map_err(io::Error::other).and_then(|r| r),
        None => Ok(()),
    };
    let saved = persister.stop().await;
    collector.close().await;

    if let Err(join) = worked {
        return Err(AppError::JobPanicked(panic_message(join)));
    }
    served
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(AppError::Serve)?;
    #[cfg(feature = "tui")]
    shown.map_err(AppError::Terminal)?;
    saved.map_err(|source| AppError::FinalWrite { path, source })
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
