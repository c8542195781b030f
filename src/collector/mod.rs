//! The collector: a cheap handle for writers and readers over one actor task
//! that owns the migration's state.
//!
//! Writers `.await` bounded channels, one per handle clone among four
//! (back-pressure instead of unbounded memory); the actor applies updates in
//! the order they were sent and publishes immutable snapshots through its
//! [`Publisher`](crate::publish) for every [`Snapshots`] reader.

mod actor;
mod builder;
mod clock;
mod eta;
mod event;
mod inbox;
#[cfg(feature = "tracing-layer")]
mod layer;
mod log_ring;
mod outlook;
mod phases;
mod state;
mod table;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

#[cfg(feature = "tracing-layer")]
pub use self::layer::CollectorLayer;

pub use self::builder::CollectorBuilder;
pub(crate) use self::event::Update;
use self::event::{Envelope, Message};
use crate::history::History;
use crate::lsn::Lsn;
use crate::model::{
    AlertStatus, ApplyHealth, Cutover, LogEntry, Phase, SlotHealth, Snapshot, TableName,
    TableProgress, VerifyProgress,
};
use crate::publish::Snapshots;

/// Default time between broadcasts.
pub const DEFAULT_TICK: Duration = Duration::from_millis(500);
/// Default throughput window.
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(60);
/// Default number of log entries kept.
pub const DEFAULT_LOG_CAPACITY: usize = 500;
/// Default capacity of the writers' channel.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 8192;
/// Channels between the handles and the actor; each handle sends on one.
const SHARDS: usize = 4;

/// Every channel's sender, to give each new handle one of them.
struct Senders {
    shards: Box<[mpsc::Sender<Envelope>]>,
    next: AtomicUsize,
}

impl Senders {
    /// The next shard, round-robin.
    fn next(&self) -> mpsc::Sender<Envelope> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.shards[i].clone()
    }
}

/// The metrics collector: a cheap, cloneable handle.
///
/// Pipeline tasks call the `async` writers; they wait only when their
/// channel to the actor is full. Readers take the newest published snapshot with
/// [`snapshot`](Self::snapshot), follow it with [`watch`](Self::watch), or
/// get one every tick with [`subscribe`](Self::subscribe).
///
/// Updates are applied in the order they were sent (an update sent after
/// another finished sending, from any handle, is applied after it) and are
/// published within 50 ms, at every tick, and at once on
/// [`flush`](Self::flush). Writes after [`close`](Self::close) are ignored.
/// The actor stops when `close` is called or every handle is dropped; it
/// never holds a handle to itself.
///
/// Each clone sends on one of a few channels, so writers on different cores
/// do not contend for one; give each writer task its own clone.
pub struct Collector {
    /// This handle's channel.
    tx: mpsc::Sender<Envelope>,
    /// All channels, for clones.
    senders: Arc<Senders>,
    /// What the actor publishes.
    snapshots: Snapshots,
    /// Log events the tracing layer could not queue.
    logs_dropped: Arc<AtomicU64>,
}

impl Clone for Collector {
    fn clone(&self) -> Self {
        Collector {
            tx: self.senders.next(),
            senders: Arc::clone(&self.senders),
            snapshots: self.snapshots.clone(),
            logs_dropped: Arc::clone(&self.logs_dropped),
        }
    }
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snapshot = self.snapshots.snapshot();
        f.debug_struct("Collector")
            .field("phase", &snapshot.phase)
            .field("tables", &snapshot.tables_total)
            .field("closed", &self.tx.is_closed())
            .finish_non_exhaustive()
    }
}

impl Default for Collector {
    /// Same as [`Collector::new`]; must run inside a Tokio runtime.
    fn default() -> Self {
        Collector::new()
    }
}

impl Collector {
    /// A collector with default settings. Spawns its actor, so it must be
    /// called inside a Tokio runtime (it panics otherwise, like
    /// `tokio::spawn`).
    pub fn new() -> Collector {
        Collector::builder().build()
    }

    /// A builder for non-default settings.
    pub fn builder() -> CollectorBuilder {
        CollectorBuilder::default()
    }

    /// The pipeline entered `phase`. The first call starts the elapsed time;
    /// `done` stops it.
    pub async fn set_phase(&self, phase: Phase) {
        self.send(Update::SetPhase(phase)).await;
    }

    /// The tables of the migration, in display order. Duplicates keep the
    /// first. A table listed again as pending keeps the progress already
    /// known for it, so a restarted pipeline may list every table afresh.
    pub async fn set_tables(&self, tables: Vec<TableProgress>) {
        self.send(Update::SetTables(tables)).await;
    }

    /// A COPY worker started copying a table.
    pub async fn table_started(&self, schema: &str, name: &str) {
        self.send(Update::TableStarted(TableName::new(schema, name)))
            .await;
    }

    /// Rows and bytes copied so far for a table (absolute counts).
    pub async fn update_table_progress(
        &self,
        schema: &str,
        name: &str,
        rows_copied: i64,
        bytes_copied: i64,
    ) {
        let table = TableName::new(schema, name);
        self.send(Update::TableProgress {
            table,
            rows: rows_copied,
            bytes: bytes_copied,
        })
        .await;
    }

    /// A table's copy finished with `rows_copied` rows.
    pub async fn table_done(&self, schema: &str, name: &str, rows_copied: i64) {
        let table = TableName::new(schema, name);
        self.send(Update::TableDone {
            table,
            rows: rows_copied,
        })
        .await;
    }

    /// A table now receives live changes.
    pub async fn table_streaming(&self, schema: &str, name: &str) {
        self.send(Update::TableStreaming(TableName::new(schema, name)))
            .await;
    }

    /// The applier wrote a batch of `rows` rows and `bytes` bytes and has
    /// applied WAL up to `applied`. A lower LSN than before is ignored; the
    /// rows and bytes still count. Negative counts count as 0.
    pub async fn record_applied(&self, applied: Lsn, rows: i64, bytes: i64) {
        self.send(Update::Applied {
            lsn: applied,
            rows,
            bytes,
        })
        .await;
    }

    /// The LSN confirmed (flushed) back to the source. Never moves backwards.
    pub async fn record_confirmed_lsn(&self, lsn: Lsn) {
        self.send(Update::ConfirmedLsn(lsn)).await;
    }

    /// The source's newest WAL position. Drives byte lag and time lag.
    pub async fn record_latest_lsn(&self, lsn: Lsn) {
        self.send(Update::LatestLsn(lsn)).await;
    }

    /// `changes` more inserts, updates and deletes were applied to a
    /// streaming table; they add up in its `changes_applied`.
    pub async fn add_table_changes(&self, schema: &str, name: &str, changes: u64) {
        let table = TableName::new(schema, name);
        self.send(Update::TableChanges { table, changes }).await;
    }

    /// The replication slot on the source, as just read; shown until the
    /// next report.
    pub async fn record_slot(&self, slot: SlotHealth) {
        self.send(Update::Slot(Box::new(slot))).await;
    }

    /// The destination's apply worker, as just read.
    pub async fn record_apply(&self, apply: ApplyHealth) {
        self.send(Update::Apply(apply)).await;
    }

    /// The cutover verdict, as just computed; `ready` is set from its
    /// blockers (true exactly when there are none).
    pub async fn record_cutover(&self, cutover: Cutover) {
        self.send(Update::Cutover(Box::new(cutover))).await;
    }

    /// How many tables the pipeline copies at once (its COPY workers): the
    /// copy's forecast schedules the tables still waiting onto them. Until
    /// it is said, the most tables seen copying at once stand for it.
    pub async fn set_copy_workers(&self, workers: u32) {
        self.send(Update::CopyWorkers(workers)).await;
    }

    /// Data verification's progress as it now stands; the verdict derives
    /// its `data_mismatch` blockers and `unverified` warnings from it.
    pub async fn record_verify(&self, progress: VerifyProgress) {
        self.send(Update::Verify(Box::new(progress))).await;
    }

    /// The alerts as just evaluated, and how many notifications were given
    /// up on so far.
    pub async fn record_alerts(&self, alerts: Vec<AlertStatus>, notifications_failed: u64) {
        self.send(Update::Alerts(Box::new((alerts, notifications_failed))))
            .await;
    }

    /// An error happened. Passwords in its message are masked.
    pub async fn record_error(&self, err: impl fmt::Display) {
        self.send(Update::Error(err.to_string())).await;
    }

    /// Adds a line to the log viewer. Passwords in it are masked.
    pub async fn add_log(&self, entry: LogEntry) {
        self.send(Update::Log(Box::new(entry))).await;
    }

    /// The newest published snapshot. Lock-free and allocation-free.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.snapshot()
    }

    /// The log viewer's entries as of the newest snapshot, oldest first.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.snapshots.logs()
    }

    /// The history of the headline series, as last published.
    pub fn history(&self) -> Arc<History> {
        self.snapshots.history()
    }

    /// A receiver of one snapshot per tick. It holds at most
    /// [`BROADCAST_CAPACITY`](crate::BROADCAST_CAPACITY) unread snapshots; a
    /// receiver that falls further behind skips to the newest
    /// (`RecvError::Lagged`) and never slows the collector. It ends
    /// (`RecvError::Closed`) when the collector stops. Dropping it is all
    /// the unsubscribing there is.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Snapshot>> {
        self.snapshots.subscribe()
    }

    /// A receiver of the newest snapshot, marked changed on every
    /// publication. It keeps only the latest value, so a reader that stops
    /// reading costs nothing.
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.watch()
    }

    /// A read-only handle on what this collector publishes, for readers
    /// that must not write (surfaces, dashboards). It does not keep the
    /// collector running: when every `Collector` handle is gone or
    /// [`close`](Self::close) is called, its channels end.
    pub fn snapshots(&self) -> Snapshots {
        self.snapshots.clone()
    }

    /// Returns once every update sent before it is applied and a snapshot
    /// computed at that moment is published. Returns at once after
    /// [`close`](Self::close).
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        if self
            .tx
            .send(Envelope::new(Message::Flush(reply)))
            .await
            .is_ok()
        {
            let _ = done.await;
        }
    }

    /// Stops the collector: applies every update already queued, publishes
    /// a final snapshot (also to subscribers), then stops the actor, which
    /// ends every `subscribe()` and `watch()` receiver. Idempotent; every
    /// call returns once the collector has stopped.
    pub async fn close(&self) {
        // A failed send means it is closed or closing already.
        let _ = self.tx.send(Envelope::new(Message::Close)).await;
        self.snapshots.closed().await;
    }

    /// A `tracing` layer that feeds this collector's log ring.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use pgmigrator_metrics::Collector;
    /// use tracing_subscriber::layer::SubscriberExt;
    ///
    /// let collector = Collector::new();
    /// let subscriber = tracing_subscriber::registry().with(collector.tracing_layer());
    /// tracing::subscriber::with_default(subscriber, || {
    ///     tracing::info!(table = "public.users", "copy started");
    /// });
    /// collector.flush().await;
    /// assert_eq!(collector.logs()[0].message, "copy started");
    /// # }
    /// ```
    #[cfg(feature = "tracing-layer")]
    pub fn tracing_layer(&self) -> CollectorLayer {
        CollectorLayer::new(LogSink {
            tx: self.tx.downgrade(),
            dropped: Arc::clone(&self.logs_dropped),
        })
    }

    /// Sends one update; the monitor's diff speaks this vocabulary
    /// directly instead of going through the public methods one by one.
    pub(crate) async fn send(&self, update: Update) {
        // After close the actor is gone; writes are ignored by design.
        let _ = self.tx.send(Envelope::new(Message::Update(update))).await;
    }
}

/// Where the tracing layer puts log entries: never blocks, never keeps the
/// collector alive.
#[cfg(feature = "tracing-layer")]
struct LogSink {
    tx: mpsc::WeakSender<Envelope>,
    dropped: Arc<AtomicU64>,
}

#[cfg(feature = "tracing-layer")]
impl LogSink {
    fn try_log(&self, entry: LogEntry) {
        let Some(tx) = self.tx.upgrade() else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(_)) =
            tx.try_send(Envelope::new(Message::Update(Update::Log(Box::new(entry)))))
        {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A read handle that keeps the collector running while it lives, as the
/// `Collector` it was made from did.
impl From<Collector> for Snapshots {
    fn from(collector: Collector) -> Snapshots {
        collector.snapshots().keeping(collector)
    }
}
