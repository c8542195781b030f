//! Following a state file written by a pipeline in another process, and
//! republishing it as if it were a live collector.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use tokio::task::JoinHandle;

use crate::collector::DEFAULT_TICK;
use crate::model::{ErrorEntry, STALE_AFTER, Snapshot};
use crate::persist::{read_history_file, read_logs_file, read_state_file};
use crate::publish::{Publisher, Snapshots};

/// How often a mirror looks at its file, and broadcasts: a collector's tick.
pub const MIRROR_POLL: Duration = DEFAULT_TICK;

/// Most tables served of one state file: a file that lists more is shown
/// with the first ones and says so as its newest error.
pub const MAX_MIRRORED_TABLES: usize = 100_000;

/// Most bytes of state files all the mirrors of a process hold at once (a
/// fleet of large files must not grow the server without limit): a file
/// that would pass it is not loaded, and says why, until others shrink or
/// go. One file is at most [`MAX_STATE_FILE_BYTES`](crate::persist::MAX_STATE_FILE_BYTES);
/// mirrors reading at the same moment may pass the total by one file each.
pub const MAX_MIRRORED_BYTES: u64 = 512 * 1024 * 1024;

/// Bytes of the state files the mirrors of this process hold.
static MIRRORED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Republishes a state file written by a pipeline in another process, as if
/// it were a live collector: re-read when it changes (checked every 500 ms),
/// broadcast every 500 ms, and marked [`stale`](Snapshot::stale) while the
/// file has not been modified for 10 s (by its modification time, so a file
/// abandoned long ago is stale at once).
///
/// A file that is missing, unreadable or invalid is never shown as a quiet,
/// caught-up migration: the snapshot is stale, not caught up, and carries
/// the reason as its newest error (over the last good state, if there was
/// one), a `tracing` warning says it once, and the file is read again as
/// soon as it changes. Nothing is read, copied or published again while
/// the file and its staleness stay the same.
#[derive(Debug, Clone)]
pub struct StateFileMirror {
    inner: Arc<MirrorInner>,
}

#[derive(Debug)]
struct MirrorInner {
    path: PathBuf,
    /// What the following task publishes.
    snapshots: Snapshots,
    task: JoinHandle<()>,
}

impl Drop for MirrorInner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StateFileMirror {
    /// Starts following `path`: reads it once now, so that the first
    /// snapshot served is already the file's, then follows it in a task.
    /// Must be called inside a Tokio runtime.
    pub fn start(path: impl Into<PathBuf>) -> StateFileMirror {
        let path = path.into();
        let mut watch = FileWatch::new(path.clone());
        watch.reload();
        let first = Arc::new(watch.published());
        let publisher = Publisher::new(Arc::clone(&first));
        publish_companions(&publisher, watch.reload_companions());
        let snapshots = publisher.snapshots();
        let task = tokio::spawn(watch_file(watch, first, publisher));
        StateFileMirror {
            inner: Arc::new(MirrorInner {
                path,
                snapshots,
                task,
            }),
        }
    }

    /// A read handle on what the mirror publishes; it keeps the mirror
    /// following its file while it lives.
    pub fn snapshots(&self) -> Snapshots {
        self.inner.snapshots.clone().keeping(self.clone())
    }

    /// The file being followed.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl From<StateFileMirror> for Snapshots {
    fn from(mirror: StateFileMirror) -> Snapshots {
        mirror.snapshots()
    }
}

/// The file's identity for change detection: modification and change
/// times, size and inode. Writers that rename a new file into place (ours
/// do) change the inode every time, even when two writes fall in one tick
/// of the file system's clock and have the same size; the change time
/// catches a `chmod` that makes an unreadable file readable.
fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((
        metadata.modified().ok()?,
        metadata.ctime(),
        metadata.ctime_nsec(),
        metadata.len(),
        metadata.ino(),
    ))
}

type Stamp = (SystemTime, i64, i64, u64, u64);

/// What a mirror knows of its file.
struct FileWatch {
    path: PathBuf,
    /// The file's identity at the last attempt to read it (`None`: missing);
    /// outer `None` before the first attempt.
    seen: Option<Option<Stamp>>,
    /// Modification time of the file last read successfully.
    modified: Option<SystemTime>,
    /// Its contents.
    current: Option<Snapshot>,
    /// Why the file cannot be read now.
    error: Option<String>,
    /// What was left out of what was read (tables past the cap).
    note: Option<String>,
    /// Its bytes, counted in [`MIRRORED_BYTES`] while held.
    held: u64,
    /// The files the persister keeps beside it.
    history: Companion,
    logs: Companion,
}

/// A file kept beside the state file, and its identity at the last attempt
/// to read it.
struct Companion {
    path: PathBuf,
    seen: Option<Stamp>,
}

impl Companion {
    fn new(state_file: &Path, what: &str) -> Companion {
        Companion {
            path: crate::persist::companion_path(state_file, what),
            seen: None,
        }
    }

    /// Its contents, when it changed since the last attempt and reads
    /// well; a bad file keeps what was shown before, and says so once.
    fn reload<T>(&mut self, read: fn(&Path) -> std::io::Result<T>) -> Option<T> {
        let now = stamp(&self.path)?;
        if self.seen == Some(now) {
            return None;
        }
        self.seen = Some(now);
        read(&self.path)
            .inspect_err(|err| {
                tracing::warn!(path = %self.path.display(), error = %err, "cannot read it");
            })
            .ok()
    }
}

impl FileWatch {
    fn new(path: PathBuf) -> Self {
        FileWatch {
            history: Companion::new(&path, "history"),
            logs: Companion::new(&path, "logs"),
            path,
            seen: None,
            modified: None,
            current: None,
            error: None,
            note: None,
            held: 0,
        }
    }

    /// Re-reads the file if it changed since the last attempt; `true` when
    /// what is known of it changed.
    fn reload(&mut self) -> bool {
        let now = stamp(&self.path);
        if self.seen == Some(now) {
            return false;
        }
        self.seen = Some(now);
        let size = now.map_or(0, |(_, _, _, len, _)| len);
        let others = MIRRORED_BYTES
            .load(Ordering::Relaxed)
            .saturating_sub(self.held);
        let read = if over_budget(others, size) {
            Err(format!(
                "{}: not loaded: with the other state files served it would pass {} MiB \
                 (this one is {} MiB)",
                self.path.display(),
                MAX_MIRRORED_BYTES >> 20,
                size >> 20
            ))
        } else {
            read_state_file(&self.path).map_err(|err| err.to_string())
        };
        match read {
            Ok(mut snapshot) => {
                let listed = snapshot.tables.len();
                snapshot.tables.truncate(MAX_MIRRORED_TABLES);
                self.note = (listed > MAX_MIRRORED_TABLES).then(|| {
                    format!(
                        "the state file lists {listed} tables; the first {MAX_MIRRORED_TABLES} are shown"
                    )
                });
                self.hold(size);
                self.current = Some(snapshot);
                self.modified = now.map(|(modified, ..)| modified);
                if self.error.take().is_some() {
                    tracing::info!(path = %self.path.display(), "the state file is readable again");
                }
                true
            }
            Err(error) => {
                if self.error.as_deref() == Some(error.as_str()) {
                    return false;
                }
                tracing::warn!("{error}; showing it as stale until it can be read");
                self.error = Some(error);
                true
            }
        }
    }

    /// Counts `size` bytes as this file's in [`MIRRORED_BYTES`].
    fn hold(&mut self, size: u64) {
        MIRRORED_BYTES.fetch_add(size, Ordering::Relaxed);
        MIRRORED_BYTES.fetch_sub(self.held, Ordering::Relaxed);
        self.held = size;
    }

    /// The history and log files beside the state file, those that changed
    /// (small files, read at most every 500 ms).
    fn reload_companions(&mut self) -> Companions {
        (
            self.history.reload(read_history_file),
            self.logs.reload(read_logs_file),
        )
    }

    /// Whether the file has not been modified for a while (or was never
    /// read, or cannot be read now).
    fn is_stale(&self) -> bool {
        self.error.is_some()
            || self
                .modified
                .and_then(|modified| modified.elapsed().ok())
                .is_none_or(|age| age >= STALE_AFTER)
    }

    /// The snapshot to publish.
    fn published(&self) -> Snapshot {
        let mut snapshot = self.current.clone().unwrap_or_default();
        snapshot.stale = self.is_stale();
        if let Some(note) = &self.note {
            snapshot.error_count = snapshot.error_count.saturating_add(1);
            snapshot.last_error.clone_from(note);
        }
        if let Some(error) = &self.error {
            snapshot.caught_up = false;
            snapshot.error_count = snapshot.error_count.saturating_add(1);
            snapshot.last_error.clone_from(error);
            snapshot.errors.push(ErrorEntry {
                time: OffsetDateTime::now_utc(),
                phase: snapshot.phase.clone(),
                message: error.clone(),
            });
        }
        snapshot
    }
}

/// Whether a file of `size` bytes, beside `others` bytes held by the other
/// mirrors, would pass [`MAX_MIRRORED_BYTES`].
fn over_budget(others: u64, size: u64) -> bool {
    others.saturating_add(size) > MAX_MIRRORED_BYTES
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.hold(0);
    }
}

/// A new history and new log entries, when their files changed.
type Companions = (
    Option<crate::history::History>,
    Option<Vec<crate::model::LogEntry>>,
);

fn publish_companions(publisher: &Publisher, (history, logs): Companions) {
    if let Some(history) = history {
        publisher.publish_history(Arc::new(history));
    }
    if let Some(logs) = logs {
        publisher.publish_logs(logs);
    }
}

/// Runs until the mirror is dropped (which aborts it).
async fn watch_file(mut watch: FileWatch, mut published: Arc<Snapshot>, publisher: Publisher) {
    let mut poll = tokio::time::interval(MIRROR_POLL);
    loop {
        poll.tick().await;
        // Reading may block on a slow disk: off the worker threads.
        let changed;
        (watch, changed) = match tokio::task::spawn_blocking(move || {
            let changed = watch.reload();
            (watch, changed)
        })
        .await
        {
            Ok(done) => done,
            Err(_) => return, // the runtime is shutting down
        };
        publish_companions(&publisher, watch.reload_companions());
        if changed || watch.is_stale() != published.stale {
            published = Arc::new(watch.published());
            publisher.publish(Arc::clone(&published));
        }
        // The same snapshot again when nothing changed: subscribers that
        // serialize it can tell, and skip the work.
        publisher.broadcast(Arc::clone(&published));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_would_pass_the_fleet_budget_is_not_loaded() {
        assert!(!over_budget(0, MAX_MIRRORED_BYTES));
        assert!(over_budget(1, MAX_MIRRORED_BYTES));
        assert!(over_budget(MAX_MIRRORED_BYTES - 10, 11));
        assert!(!over_budget(MAX_MIRRORED_BYTES - 10, 10));
        assert!(over_budget(u64::MAX, 1), "no overflow");
    }
}
