//! The one task that owns the state: it applies what writers send, and
//! publishes snapshots for readers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{self, Instant, MissedTickBehavior};

use super::clock::Moment;
use super::event::Message;
use super::inbox::Inbox;
use super::state::State;
use crate::history::History;
use crate::publish::Publisher;

/// Below this many messages in a round, the actor yields before waiting
/// again, so that writers can fill the channels (see `run`). Applying large
/// batches under one timestamp is what lets it keep up with millions of
/// events a second.
const SMALL_BATCH: usize = 1024;

/// Shortest time between two publications outside ticks and flushes. A burst
/// of updates is published within this time, but a snapshot of ten thousand
/// tables is not rebuilt for every one of them.
const MIN_PUBLISH_INTERVAL: Duration = Duration::from_millis(50);

pub(super) struct Actor {
    state: State,
    /// The only writer of what readers see; dropped with the actor, which
    /// ends every reader's channels.
    publisher: Publisher,
    /// Log events the tracing layer could not queue (it counts them).
    logs_dropped: Arc<AtomicU64>,
    tick: Duration,
    /// Updates applied since the last publication.
    dirty: bool,
    last_publish: Instant,
    /// The log ring's version at the last publication.
    logs_published: u64,
    /// The headline series, one sample per tick.
    history: History,
}

impl Actor {
    pub(super) fn new(
        state: State,
        publisher: Publisher,
        logs_dropped: Arc<AtomicU64>,
        tick: Duration,
        history: History,
    ) -> Self {
        Actor {
            history,
            logs_published: state.logs().version(),
            state,
            publisher,
            logs_dropped,
            tick,
            dirty: false,
            last_publish: Instant::now(),
        }
    }

    /// Runs until [`Message::Close`] or until every handle is dropped; then
    /// publishes a final snapshot. Dropping `self` at the end closes the
    /// watch and broadcast channels, which tells every reader it is over.
    pub(super) async fn run(mut self, mut inbox: Inbox) {
        let mut ticker = time::interval(self.tick);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let publish_later = time::sleep(Duration::ZERO);
        tokio::pin!(publish_later);
        let mut publish_pending = false;
        let mut batch = Vec::with_capacity(SMALL_BATCH);
        loop {
            tokio::select! {
                biased;
                _ = ticker.tick() => self.publish(&Moment::now(), true),
                () = &mut publish_later, if publish_pending => {
                    publish_pending = false;
                    if self.dirty {
                        self.publish(&Moment::now(), false);
                    }
                }
                open = inbox.recv(&mut batch) => {
                    if !open {
                        break; // every handle is gone
                    }
                    let received = batch.len();
                    let at = Moment::now();
                    if self.handle(&mut batch, &at) {
                        inbox.close();
                        while inbox.recv(&mut batch).await {
                            self.handle(&mut batch, &Moment::now());
                        }
                        break;
                    }
                    if received < SMALL_BATCH {
                        // Let the writers run before waiting again. Without
                        // this the actor drains a handful of messages, sleeps
                        // and is woken across threads for the next handful:
                        // measured, batches of ~6 and a third of the
                        // throughput of batches of ~500.
                        tokio::task::yield_now().await;
                    }
                    if self.dirty {
                        let due = self.last_publish + MIN_PUBLISH_INTERVAL;
                        if at.instant >= due {
                            self.publish(&at, false);
                        } else if !publish_pending {
                            publish_later.as_mut().reset(due);
                            publish_pending = true;
                        }
                    }
                }
            }
        }
        self.publish(&Moment::now(), true);
    }

    /// Applies a batch; returns whether it asked the collector to close.
    fn handle(&mut self, batch: &mut Vec<Message>, at: &Moment) -> bool {
        let mut close = false;
        for message in batch.drain(..) {
            match message {
                Message::Update(update) => {
                    self.state.apply(update, at);
                    self.dirty = true;
                }
                Message::Flush(reply) => {
                    self.publish(at, false);
                    // The caller may have stopped waiting; that is fine.
                    let _ = reply.send(());
                }
                Message::Close => close = true,
            }
        }
        close
    }

    fn publish(&mut self, at: &Moment, broadcast: bool) {
        let dropped = self.logs_dropped.load(Ordering::Relaxed);
        self.state.observe(at.instant);
        let mut snapshot = self.state.snapshot(at, dropped);
        if let Some(eta) = &mut snapshot.eta {
            eta.drift_sec = self.history.drift(eta, snapshot.timestamp);
        }
        let snapshot = Arc::new(snapshot);
        let logs = self.state.logs();
        if logs.version() != self.logs_published {
            self.logs_published = logs.version();
            self.publisher.publish_logs(logs.to_vec());
        }
        self.publisher.publish(Arc::clone(&snapshot));
        if broadcast {
            if self.history.record(&snapshot) {
                self.publisher
                    .publish_history(Arc::new(self.history.clone()));
            }
            self.publisher.broadcast(snapshot);
        }
        self.dirty = false;
        self.last_publish = at.instant;
    }
}
