//! Where surfaces get snapshots: a live [`Collector`], or a state file
//! written by a pipeline in another process ([`StateFileMirror`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::collector::{BROADCAST_CAPACITY, Collector, DEFAULT_TICK};
use crate::model::{LogEntry, Snapshot};
use crate::persist::read_state_file;

/// Something that publishes snapshots: what the HTTP surfaces and
/// dashboards read.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The newest snapshot.
    fn snapshot(&self) -> Arc<Snapshot>;
    /// One snapshot per tick; ends when the source stops.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Snapshot>>;
    /// The newest snapshot, marked changed on every publication.
    fn watch(&self) -> watch::Receiver<Arc<Snapshot>>;
    /// The log viewer's entries, oldest first.
    fn logs(&self) -> Vec<LogEntry>;
}

impl SnapshotSource for Collector {
    fn snapshot(&self) -> Arc<Snapshot> {
        Collector::snapshot(self)
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<Snapshot>> {
        Collector::subscribe(self)
    }
    fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        Collector::watch(self)
    }
    fn logs(&self) -> Vec<LogEntry> {
        Collector::logs(self)
    }
}

/// How often a mirror looks at its file, and broadcasts: a collector's tick.
pub const MIRROR_POLL: Duration = DEFAULT_TICK;
/// A mirrored file that has not changed for this long is marked stale.
pub const MIRROR_STALE_AFTER: Duration = Duration::from_secs(10);

/// Republishes a state file written by a pipeline in another process, as if
/// it were a live collector: re-read when it changes (checked every 500 ms),
/// broadcast every 500 ms, and marked [`stale`](Snapshot::stale) while the
/// file has not been modified for 10 s (by its modification time, so a file
/// abandoned long ago is stale at once).
///
/// Until the file can be read the mirror publishes an empty, stale
/// snapshot; a file that later turns unreadable keeps the last good one
/// (marked stale once it is old).
#[derive(Debug, Clone)]
pub struct StateFileMirror {
    inner: Arc<MirrorInner>,
}

#[derive(Debug)]
struct MirrorInner {
    path: PathBuf,
    snapshot: Arc<ArcSwap<Snapshot>>,
    watch: watch::Receiver<Arc<Snapshot>>,
    broadcast: broadcast::Sender<Arc<Snapshot>>,
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
        let mut follower = Follower {
            path: path.clone(),
            last_stamp: None,
            current: None,
        };
        follower.reload();
        let first = Arc::new(follower.published());
        let snapshot = Arc::new(ArcSwap::new(Arc::clone(&first)));
        let (watch_tx, watch) = watch::channel(first);
        let (broadcast, _) = broadcast::channel(BROADCAST_CAPACITY);
        let task = tokio::spawn(follow(
            follower,
            Arc::clone(&snapshot),
            watch_tx,
            broadcast.clone(),
        ));
        StateFileMirror {
            inner: Arc::new(MirrorInner {
                path,
                snapshot,
                watch,
                broadcast,
                task,
            }),
        }
    }

    /// The file being followed.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl SnapshotSource for StateFileMirror {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<Snapshot>> {
        self.inner.broadcast.subscribe()
    }
    fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.watch.clone()
    }
    fn logs(&self) -> Vec<LogEntry> {
        Vec::new()
    }
}

/// The file's identity for change detection: modification time, size and
/// inode. Writers that rename a new file into place (ours do) change the
/// inode every time, even when two writes fall in one tick of the file
/// system's clock and have the same size.
fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len(), metadata.ino()))
}

type Stamp = (SystemTime, u64, u64);

/// What a mirror knows of its file.
struct Follower {
    path: PathBuf,
    /// Identity of the file last read successfully.
    last_stamp: Option<Stamp>,
    /// Its contents.
    current: Option<Snapshot>,
}

impl Follower {
    /// Re-reads the file if it changed. A file that cannot be
    /// read (half-written by a writer that does not rename, or gone) keeps
    /// the last good state until next time.
    fn reload(&mut self) {
        let now = stamp(&self.path);
        if now.is_none() || now == self.last_stamp {
            return;
        }
        match read_state_file(&self.path) {
            Ok(snapshot) => {
                self.current = Some(snapshot);
                self.last_stamp = now;
            }
            Err(err) => tracing::debug!(error = %err, "state file not readable"),
        }
    }

    /// The snapshot to publish: stale when the file has not been modified
    /// for a while (or was never read).
    fn published(&self) -> Snapshot {
        let unchanged = self
            .last_stamp
            .and_then(|(modified, ..)| modified.elapsed().ok());
        Snapshot {
            stale: unchanged.is_none_or(|age| age >= MIRROR_STALE_AFTER),
            ..self.current.clone().unwrap_or_default()
        }
    }
}

/// Runs until the mirror is dropped (which aborts it).
async fn follow(
    mut follower: Follower,
    snapshot: Arc<ArcSwap<Snapshot>>,
    watch: watch::Sender<Arc<Snapshot>>,
    broadcast: broadcast::Sender<Arc<Snapshot>>,
) {
    let mut poll = tokio::time::interval(MIRROR_POLL);
    loop {
        poll.tick().await;
        // Reading may block on a slow disk: off the worker threads.
        follower = match tokio::task::spawn_blocking(move || {
            follower.reload();
            follower
        })
        .await
        {
            Ok(follower) => follower,
            Err(_) => return, // the runtime is shutting down
        };
        let published = Arc::new(follower.published());
        snapshot.store(Arc::clone(&published));
        watch.send_replace(Arc::clone(&published));
        let _ = broadcast.send(published);
    }
}
