//! Publishing snapshots: one writer ([`Publisher`], owned by whoever
//! produces snapshots: the collector's actor, a state-file mirror's task) and
//! any number of cheap read handles ([`Snapshots`]).
//!
//! A snapshot is published three ways: into an [`ArcSwap`] (the newest, read
//! without locking), a `watch` channel (the newest, marked changed: for
//! dashboards) and, on every tick, a `broadcast` channel (one per tick, for
//! push). Readers see every channel end when the publisher is dropped.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch};

use crate::history::History;
use crate::model::{LogEntry, Snapshot};

/// Snapshots a [`Snapshots::subscribe`] receiver holds before it lags.
pub const BROADCAST_CAPACITY: usize = 4;

/// The newest snapshot and log lines.
#[derive(Debug)]
struct Latest {
    snapshot: ArcSwap<Snapshot>,
    logs: ArcSwap<Vec<LogEntry>>,
    history: ArcSwap<History>,
}

/// The write side: only its owner publishes.
#[derive(Debug)]
pub(crate) struct Publisher {
    latest: Arc<Latest>,
    watch: watch::Sender<Arc<Snapshot>>,
    broadcast: broadcast::Sender<Arc<Snapshot>>,
}

impl Publisher {
    /// A publisher whose readers start with `first` and no log lines.
    pub(crate) fn new(first: Arc<Snapshot>) -> Publisher {
        Publisher {
            latest: Arc::new(Latest {
                snapshot: ArcSwap::new(Arc::clone(&first)),
                logs: ArcSwap::from_pointee(Vec::new()),
                history: ArcSwap::from_pointee(History::new()),
            }),
            watch: watch::channel(first).0,
            broadcast: broadcast::channel(BROADCAST_CAPACITY).0,
        }
    }

    /// A read handle; it does not keep the publisher alive.
    pub(crate) fn snapshots(&self) -> Snapshots {
        Snapshots {
            latest: Arc::clone(&self.latest),
            watch: self.watch.subscribe(),
            broadcast: self.broadcast.downgrade(),
            _source: None,
        }
    }

    /// Makes `snapshot` the newest, for `snapshot()` and `watch()` readers.
    pub(crate) fn publish(&self, snapshot: Arc<Snapshot>) {
        self.latest.snapshot.store(Arc::clone(&snapshot));
        self.watch.send_replace(snapshot);
    }

    /// Sends `snapshot` to `subscribe()` readers (once per tick). No
    /// subscriber is not an error; a slow one lags.
    pub(crate) fn broadcast(&self, snapshot: Arc<Snapshot>) {
        let _ = self.broadcast.send(snapshot);
    }

    /// Replaces the log lines readers see.
    pub(crate) fn publish_logs(&self, logs: Vec<LogEntry>) {
        self.latest.logs.store(Arc::new(logs));
    }

    /// Replaces the history readers see.
    pub(crate) fn publish_history(&self, history: Arc<History>) {
        self.latest.history.store(history);
    }
}

/// A cheap, cloneable handle that reads what a collector or a state-file
/// mirror publishes; it cannot write. What the HTTP surfaces, the terminal
/// dashboard and any other reader take.
///
/// Made with [`Collector::snapshots`](crate::Collector::snapshots) (which
/// does not keep the collector running), or by converting a
/// [`Collector`](crate::Collector) or a
/// [`StateFileMirror`](crate::StateFileMirror) with `into()`, which keeps
/// that source alive as long as the handle.
#[derive(Clone)]
pub struct Snapshots {
    latest: Arc<Latest>,
    watch: watch::Receiver<Arc<Snapshot>>,
    /// Weak, so that readers do not keep old snapshots alive in the channel
    /// and see it end when the publisher goes.
    broadcast: broadcast::WeakSender<Arc<Snapshot>>,
    /// What this handle keeps alive, if anything.
    _source: Option<Arc<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.latest.snapshot.load();
        f.debug_struct("Snapshots")
            .field("phase", &snapshot.phase)
            .field("tables", &snapshot.tables_total)
            .finish_non_exhaustive()
    }
}

/// Names a publisher without keeping it (or its snapshots) alive: a
/// source that was dropped is never mistaken for a later one.
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub(crate) struct SourceId(std::sync::Weak<Latest>);

#[cfg(feature = "http")]
impl SourceId {
    /// Whether `snapshots` reads this source.
    pub(crate) fn is(&self, snapshots: &Snapshots) -> bool {
        std::ptr::eq(self.0.as_ptr(), Arc::as_ptr(&snapshots.latest))
    }
}

impl Snapshots {
    /// Which source this handle reads.
    #[cfg(feature = "http")]
    pub(crate) fn source_id(&self) -> SourceId {
        SourceId(Arc::downgrade(&self.latest))
    }

    /// The same handle, also keeping `source` alive.
    pub(crate) fn keeping(mut self, source: impl Any + Send + Sync) -> Snapshots {
        self._source = Some(Arc::new(source));
        self
    }

    /// The same handle, keeping nothing alive: for a reader that must end
    /// when its source goes rather than hold it (a WebSocket hub).
    #[cfg(feature = "http")]
    pub(crate) fn unkept(&self) -> Snapshots {
        Snapshots {
            _source: None,
            ..self.clone()
        }
    }

    /// The newest snapshot. Lock-free and allocation-free.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.latest.snapshot.load_full()
    }

    /// The log viewer's entries as of the newest snapshot, oldest first.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.latest.logs.load().as_ref().clone()
    }

    /// The same entries, shared: the same `Arc` until they change.
    pub(crate) fn shared_logs(&self) -> Arc<Vec<LogEntry>> {
        self.latest.logs.load_full()
    }

    /// The history of the headline series (see [`History`]); it changes
    /// when a point is finished (every 10 s).
    pub fn history(&self) -> Arc<History> {
        self.latest.history.load_full()
    }

    /// A receiver of one snapshot per tick. It holds at most
    /// [`BROADCAST_CAPACITY`] unread snapshots; a receiver that falls further
    /// behind skips to the newest (`RecvError::Lagged`) and never slows the
    /// publisher. It ends (`RecvError::Closed`) when the publisher stops.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Snapshot>> {
        match self.broadcast.upgrade() {
            Some(sender) => sender.subscribe(),
            // Already over: a receiver that says so at once.
            None => broadcast::channel(1).1,
        }
    }

    /// A receiver of the newest snapshot, marked changed on every
    /// publication. It keeps only the latest value, so a reader that stops
    /// reading costs nothing.
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.watch.clone()
    }

    /// Completes once the publisher has stopped.
    pub async fn closed(&self) {
        let mut watch = self.watch.clone();
        while watch.changed().await.is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::RecvError;

    #[tokio::test]
    async fn readers_see_every_publication_and_the_end() {
        let publisher = Publisher::new(Arc::default());
        let readers = publisher.snapshots();
        let mut ticks = readers.subscribe();
        let watch = readers.watch();
        let next = Arc::new(Snapshot {
            total_rows: 7,
            ..Snapshot::default()
        });
        publisher.publish(Arc::clone(&next));
        publisher.broadcast(Arc::clone(&next));
        publisher.publish_logs(vec![LogEntry::new(crate::model::LogLevel::Info, "x")]);
        assert_eq!(readers.snapshot().total_rows, 7);
        assert!(watch.has_changed().unwrap());
        assert!(Arc::ptr_eq(&ticks.recv().await.unwrap(), &next));
        assert_eq!(readers.logs().len(), 1);
        drop(publisher);
        assert_eq!(ticks.recv().await.unwrap_err(), RecvError::Closed);
        assert_eq!(
            readers.subscribe().recv().await.unwrap_err(),
            RecvError::Closed
        );
        readers.closed().await;
    }

    #[tokio::test]
    async fn readers_do_not_keep_broadcast_snapshots_alive() {
        let publisher = Publisher::new(Arc::default());
        let readers = publisher.snapshots();
        let big = Arc::new(Snapshot::default());
        publisher.broadcast(Arc::clone(&big));
        // Nobody subscribed: the channel keeps no copy for anyone (a
        // reader that held a receiver template used to keep four).
        assert_eq!(Arc::strong_count(&big), 1);
        drop(readers);
    }
}
