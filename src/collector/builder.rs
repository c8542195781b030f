//! Settings for a collector, and starting its actor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::actor::Actor;
use super::clock::Moment;
use super::inbox::Inbox;
use super::state::{Settings, State};
use super::{
    Collector, DEFAULT_CHANNEL_CAPACITY, DEFAULT_LOG_CAPACITY, DEFAULT_RATE_WINDOW, DEFAULT_TICK,
    SHARDS, Senders,
};
use crate::history::History;
use crate::model::Snapshot;
use crate::publish::Publisher;

/// Settings for a [`Collector`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use pgmigrator_metrics::Collector;
///
/// let collector = Collector::builder()
///     .tick(Duration::from_millis(250))
///     .rate_window(Duration::from_secs(30))
///     .log_capacity(1000)
///     .channel_capacity(4096)
///     .build();
/// # collector.close().await;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CollectorBuilder {
    tick: Duration,
    rate_window: Duration,
    log_capacity: usize,
    channel_capacity: usize,
    resume: Option<Snapshot>,
    history: History,
}

impl Default for CollectorBuilder {
    fn default() -> Self {
        CollectorBuilder {
            tick: DEFAULT_TICK,
            rate_window: DEFAULT_RATE_WINDOW,
            log_capacity: DEFAULT_LOG_CAPACITY,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            resume: None,
            history: History::new(),
        }
    }
}

impl CollectorBuilder {
    /// Time between broadcasts to `subscribe()` receivers (default 500 ms,
    /// at least 1 ms).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick.max(Duration::from_millis(1));
        self
    }

    /// Window of the throughput rates and ETAs (default 60 s, at least 1 s).
    pub fn rate_window(mut self, window: Duration) -> Self {
        self.rate_window = window.max(Duration::from_secs(1));
        self
    }

    /// Log entries kept (default 500; 0 keeps none).
    pub fn log_capacity(mut self, capacity: usize) -> Self {
        self.log_capacity = capacity;
        self
    }

    /// Capacity of the writers' channels (default 8192, split evenly over
    /// the four channels, at least 1 each). A writer waits when its channel
    /// is full; the tracing layer drops instead.
    pub fn channel_capacity(mut self, capacity: usize) -> Self {
        self.channel_capacity = capacity.max(1);
        self
    }

    /// Continues a previous run from its snapshot (usually read back from
    /// `state.json` with [`read_state_file`](crate::read_state_file)): phase
    /// and history, tables and their statuses, totals, errors, LSNs and
    /// elapsed time. Throughput and time lag start afresh.
    pub fn resume_from(mut self, snapshot: Snapshot) -> Self {
        self.resume = Some(snapshot);
        self
    }

    /// Continue the history of the headline series from a previous run's
    /// (see [`read_history_file`](crate::read_history_file)).
    pub fn resume_history(mut self, history: History) -> Self {
        self.history = history;
        self
    }

    /// Starts the collector's actor. Must be called inside a Tokio runtime.
    pub fn build(self) -> Collector {
        let settings = Settings {
            rate_window: self.rate_window,
            log_capacity: self.log_capacity,
        };
        let state = match self.resume {
            Some(previous) => State::resumed(settings, previous, Instant::now()),
            None => State::new(settings),
        };
        let publisher = Publisher::new(Arc::new(state.snapshot(&Moment::now(), 0)));
        publisher.publish_logs(state.logs().to_vec());
        publisher.publish_history(Arc::new(self.history.clone()));
        let snapshots = publisher.snapshots();
        let logs_dropped = Arc::new(AtomicU64::new(0));
        let per_shard = self.channel_capacity.div_ceil(SHARDS).max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..SHARDS).map(|_| mpsc::channel(per_shard)).unzip();
        let senders = Arc::new(Senders {
            shards: senders.into_boxed_slice(),
            next: AtomicUsize::new(0),
        });
        let actor = Actor::new(
            state,
            publisher,
            Arc::clone(&logs_dropped),
            self.tick,
            self.history,
        );
        tokio::spawn(actor.run(Inbox::new(receivers)));
        Collector {
            tx: senders.next(),
            senders,
            snapshots,
            logs_dropped,
        }
    }
}
