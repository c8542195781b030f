//! The task that keeps the state file current.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::write::{
    create_parent, remove_orphaned_temp_files, write_history_file, write_logs_file,
    write_state_file,
};
use super::{FILE_MODE, PERSIST_INTERVAL, not_regular};
use crate::collector::Collector;
use crate::history::History;
use crate::model::LogEntry;

/// Counts of a persister's writes.
#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    failures: AtomicU64,
}

/// Writes a collector's snapshot to a state file every 2 s, and once more
/// when stopped, so `pgmigrator status` can read it, even after the pipeline
/// died.
///
/// [`start`](Self::start) fails at once, rather than later and silently,
/// when the path cannot serve: something other than a regular file is there
/// (a directory, FIFO, socket, device or symbolic link, which a rename
/// would replace), another process writes it (an advisory lock on
/// `.state.json.lock` beside it, naming the holder's pid), or the first
/// write fails (no permission, a file another user owns in a sticky
/// directory, a full disk).
///
/// A later failed write (directory removed, disk full) is counted, retried
/// on the next tick, and reported: as a `tracing` warning and an error in
/// the collector's snapshot, at once and then at most once a minute while
/// it lasts. It never damages the previous file. [`stop`](Self::stop) says
/// whether the final write landed. Dropping the persister without `stop`
/// still makes the final write, in the background.
#[derive(Debug)]
pub struct StatePersister {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    counters: Arc<Counters>,
}

impl StatePersister {
    /// Starts persisting `collector` to `path`, creating its directory (mode
    /// 0700) when missing, and makes the first write before returning (a
    /// short blocking write), so a path that cannot be written fails here.
    /// Must be called inside a Tokio runtime.
    pub fn start(collector: Collector, path: impl Into<PathBuf>) -> io::Result<StatePersister> {
        let path = path.into();
        if path.file_name().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} does not name a file", path.display()),
            ));
        }
        check_target(&path)?;
        create_parent(&path)?;
        let lock = WriterLock::take(&path)?;
        remove_orphaned_temp_files(&path);
        write_state_file(&path, &collector.snapshot())?;
        let (stop, stopped) = oneshot::channel();
        let counters = Arc::new(Counters::default());
        counters.writes.store(1, Ordering::Relaxed);
        let writer = Writer {
            collector,
            history_path: super::companion_path(&path, "history"),
            history_written: None,
            logs_path: super::companion_path(&path, "logs"),
            logs_written: None,
            path: path.clone(),
            counters: Arc::clone(&counters),
            failing_since: None,
            reported_at: None,
            _lock: lock,
        };
        let task = tokio::spawn(writer.run(stopped));
        Ok(StatePersister {
            path,
            stop: Some(stop),
            task: Some(task),
            counters,
        })
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Successful writes so far.
    pub fn writes(&self) -> u64 {
        self.counters.writes.load(Ordering::Relaxed)
    }

    /// Failed writes so far.
    pub fn failures(&self) -> u64 {
        self.counters.failures.load(Ordering::Relaxed)
    }

    /// Flushes the collector, writes the state one final time, releases the
    /// file, and says whether that final write landed.
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task
                .await
                .unwrap_or_else(|join| Err(io::Error::other(join))),
            None => Ok(()),
        }
    }
}

impl Drop for StatePersister {
    fn drop(&mut self) {
        // Dropping the sender tells the task to make its final write.
        self.stop.take();
    }
}

/// Refuses a path where something other than a regular file is: renaming
/// over it would replace a device such as `/dev/null`, a FIFO or a socket
/// another program uses, or a link someone planted.
fn check_target(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) => match not_regular(metadata.file_type()) {
            None => Ok(()),
            Some(what) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is {what}, not a regular file; refusing to replace it",
                    path.display()
                ),
            )),
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

/// An exclusive advisory lock (`flock`) on `.{name}.lock` beside the state
/// file, held while a persister runs; the file holds the holder's pid for
/// the message another writer gets.
#[derive(Debug)]
struct WriterLock {
    _file: File,
}

impl WriterLock {
    fn take(path: &Path) -> io::Result<WriterLock> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let lock_path = path.with_file_name(format!(".{name}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&lock_path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", lock_path.display()),
            ));
        }
        // `flock` on Unix, so older writers and this one exclude each other.
        if let Err(busy) = file.try_lock() {
            if let std::fs::TryLockError::Error(err) = busy {
                return Err(err);
            }
            let mut holder = String::new();
            let _ = (&mut file).take(32).read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if !holder.is_empty() && holder.bytes().all(|b| b.is_ascii_digit()) {
                format!("pid {holder}")
            } else {
                "another process".to_owned()
            };
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "{} is being written by another pgmigrator ({holder}); \
                     stop it or choose another --state-file",
                    path.display()
                ),
            ));
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(WriterLock { _file: file })
    }
}

/// How often a lasting write failure is reported again.
const REPORT_FAILURES_EVERY: Duration = Duration::from_secs(60);

/// The persister's task: owns the lock for as long as it runs.
struct Writer {
    collector: Collector,
    path: PathBuf,
    /// The history's file beside the state file, and the history last
    /// written there (it is written again when a point is added).
    history_path: PathBuf,
    history_written: Option<Arc<History>>,
    /// The same for the log viewer's entries (written when they change).
    logs_path: PathBuf,
    logs_written: Option<Arc<Vec<LogEntry>>>,
    counters: Arc<Counters>,
    /// Failed writes in a row, since the first of them.
    failing_since: Option<u64>,
    /// When the current failure was last reported.
    reported_at: Option<tokio::time::Instant>,
    _lock: WriterLock,
}

impl Writer {
    /// Writes every interval until stopped (or the persister is dropped),
    /// then once more; returns how that final write went.
    async fn run(mut self, mut stop: oneshot::Receiver<()>) -> io::Result<()> {
        // `start` made the first write.
        let first = tokio::time::Instant::now() + PERSIST_INTERVAL;
        let mut ticker = tokio::time::interval_at(first, PERSIST_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let _ = self.write_once().await;
                }
                // A stop request, or the persister was dropped.
                _ = &mut stop => break,
            }
        }
        self.collector.flush().await;
        self.write_once().await
    }

    async fn write_once(&mut self) -> io::Result<()> {
        let snapshot = self.collector.snapshot();
        let target = self.path.clone();
        let history = self.collector.history();
        let history_due = !history.is_empty()
            && !self
                .history_written
                .as_ref()
                .is_some_and(|written| Arc::ptr_eq(written, &history));
        let (history_target, history_written) = (self.history_path.clone(), Arc::clone(&history));
        let logs = self.collector.snapshots().shared_logs();
        let logs_due = !logs.is_empty()
            && !self
                .logs_written
                .as_ref()
                .is_some_and(|written| Arc::ptr_eq(written, &logs));
        let (logs_target, logs_written) = (self.logs_path.clone(), Arc::clone(&logs));
        // One blocking job for serialising and the whole write sequence
        // keeps both off the runtime's worker threads (tokio::fs would hop
        // to the blocking pool once per call anyway).
        let result = tokio::task::spawn_blocking(move || {
            // The directory may have been removed since the last write.
            create_parent(&target)?;
            write_state_file(&target, &snapshot)?;
            if history_due {
                write_history_file(&history_target, &history_written)?;
            }
            if logs_due {
                write_logs_file(&logs_target, &logs_written)?;
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)));
        match &result {
            Ok(()) => {
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                if history_due {
                    self.history_written = Some(history);
                }
                if logs_due {
                    self.logs_written = Some(logs);
                }
                if let Some(failed) = self.failing_since.take() {
                    self.reported_at = None;
                    tracing::info!(
                        path = %self.path.display(),
                        failed,
                        "the state file is written again"
                    );
                }
            }
            Err(err) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                let failed = self.failing_since.map_or(1, |n| n + 1);
                self.failing_since = Some(failed);
                let now = tokio::time::Instant::now();
                let due = self
                    .reported_at
                    .is_none_or(|at| now.duration_since(at) >= REPORT_FAILURES_EVERY);
                if due {
                    self.reported_at = Some(now);
                    let message = format!(
                        "cannot write the state file {}: {err} ({failed} failed writes in a row; \
                         `pgmigrator status` shows older data until this is fixed)",
                        self.path.display()
                    );
                    tracing::warn!("{message}");
                    // A reader writing back, by design: a state file that
                    // cannot be written is an error of this migration, and
                    // the snapshot is where the dashboard, `/metrics` and
                    // the cutover verdict look for errors. Rate-limited
                    // above, so a failing disk cannot flood the collector.
                    self.collector.record_error(message).await;
                }
            }
        }
        result
    }
}
