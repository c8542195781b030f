//! The WebSocket hub: each snapshot is serialized once and the bytes shared
//! by every client; each client has its own task and a small queue, so a
//! client that stops reading is dropped after a bounded wait and never
//! delays the others. A client that asks for `?mode=delta` gets a full
//! frame, then only what changed each tick, and the log (see
//! [`delta`](super::delta)), computed once a tick for all of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::delta::{Base, Differ, Frames, full_frame, logs_frame};
use super::rest::Migration;
use super::server::ConnectionPermit;
use super::{AppState, error};
use crate::model::Snapshot;
use crate::publish::{Snapshots, SourceId};

/// Frames a client may fall behind before it skips to the newest: 16 s of
/// ticks, so that a client still reading is never skipped just because the
/// runtime is slow to get to it under load, while one that stopped reading
/// is closed at the send timeout (5 s) long before. Frames are shared, so
/// the queue holds pointers, not copies. Measured with `cargo bench --bench
/// fanout` on 2 cores, 10,000 clients of a 100-table snapshot: a queue of 4
/// left 7,343 clients missing ticks at 34 % of a core, 16 left 963; with 32
/// the only misses left are clients closed at the send timeout because the
/// bench's own readers (a core of CPU) fell behind (0 to 3,408 a run).
const CLIENT_QUEUE: usize = 32;
/// Largest message or frame a client may send. Clients send nothing but
/// control frames (pongs, a close); without a cap the WebSocket library
/// would buffer a 64 MiB message before we could ignore it.
pub(super) const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Client messages allowed in a burst, and per second after it; a client
/// over the rate is disconnected (close code 1008).
const CLIENT_BURST: f64 = 32.0;
const CLIENT_MESSAGES_PER_SEC: f64 = 8.0;
/// The slowest reading a client is allowed on top of the send timeout: a
/// 2.4 MB first frame (10,000 tables) over a slow link takes 37 s more, a
/// delta of a few kilobytes nothing more.
const MIN_CLIENT_BYTES_PER_SEC: f64 = 64.0 * 1024.0;

/// What every migration's clients share: the cap on clients, their tasks
/// and the signal to close them; and a hub per migration, started when its
/// first client comes.
pub(super) struct Hubs {
    /// Places under the cap on clients; a client holds one while connected.
    places: Arc<Semaphore>,
    /// Every client's task, so shutdown can wait for their close frames.
    clients: TaskTracker,
    /// Cancelled to send every client a close frame.
    closing: CancellationToken,
    /// By migration id.
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
}

impl Hubs {
    /// Hubs for at most `max_clients` clients in all.
    pub(super) fn new(max_clients: usize) -> Hubs {
        Hubs {
            places: Arc::new(Semaphore::new(max_clients)),
            clients: TaskTracker::new(),
            closing: CancellationToken::new(),
            hubs: Mutex::default(),
        }
    }

    /// The hub of migration `id`, started on `source` when it has none.
    /// The hub of migration `id`, started again when `id` now names
    /// another source (a migration removed, and one added under its id).
    fn hub(&self, id: &str, source: &Snapshots) -> Arc<Hub> {
        let mut hubs = self.hubs.lock().unwrap_or_else(PoisonError::into_inner);
        // Hubs of sources gone are dropped as they are found.
        hubs.retain(|_, hub| !hub.task.is_finished());
        let hub = hubs
            .entry(id.to_owned())
            .and_modify(|hub| {
                if !hub.source.is(source) {
                    *hub = Arc::new(Hub::start(source));
                }
            })
            .or_insert_with(|| Arc::new(Hub::start(source)));
        Arc::clone(hub)
    }

    /// Sends every client a close frame.
    pub(super) fn close_clients(&self) {
        self.closing.cancel();
        self.clients.close();
    }

    /// Waits, at most `within`, for every client to be gone.
    pub(super) async fn clients_gone(&self, within: Duration) {
        let _ = tokio::time::timeout(within, self.clients.wait()).await;
    }
}

/// One migration's hub: one subscription to its snapshots, and frames for
/// each of its clients.
struct Hub {
    /// Resubscribed per client; only the hub task holds the sender, so
    /// clients see the end when the source stops.
    frames: broadcast::Receiver<Arc<Frames>>,
    /// Its clients (frames are made only while there are).
    viewers: Arc<AtomicUsize>,
    /// Its clients in delta mode (deltas are computed only while there are).
    delta_clients: Arc<AtomicUsize>,
    /// The newest snapshot's frame: shared by the ticks and the first
    /// frame of every client that comes, so a thousand clients arriving at
    /// once cost one serialization, not a thousand.
    frame_of: FrameOf,
    /// Which source it follows.
    source: SourceId,
    task: JoinHandle<()>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hub {
    fn start(source: &Snapshots) -> Hub {
        let mut snapshots = source.subscribe();
        let (tx, frames) = broadcast::channel(CLIENT_QUEUE);
        let viewers = Arc::<AtomicUsize>::default();
        let delta_clients = Arc::<AtomicUsize>::default();
        let frame_of = FrameOf::default();
        let task = tokio::spawn({
            let viewers = Arc::clone(&viewers);
            let delta_clients = Arc::clone(&delta_clients);
            // Not kept alive by its hub: a migration no longer served ends
            // here too.
            let source = source.unkept();
            let mut differ = Differ::default();
            let frame_of = frame_of.clone();
            async move {
                loop {
                    let snapshot = match snapshots.recv().await {
                        Ok(snapshot) => snapshot,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return,
                    };
                    // Nobody to send to: a new client gets its first frame
                    // from the source itself.
                    if viewers.load(Ordering::Relaxed) == 0 {
                        continue;
                    }
                    // A source that republishes the same snapshot (a
                    // mirror of an unchanged file) costs nothing more.
                    let plain = frame_of.get(&snapshot);
                    let for_deltas = delta_clients.load(Ordering::Relaxed) > 0;
                    let frames = differ.next(&snapshot, plain, source.shared_logs(), for_deltas);
                    // Clients that just left are not an error.
                    let _ = tx.send(Arc::new(frames));
                }
            }
        });
        Hub {
            frames,
            viewers,
            delta_clients,
            frame_of,
            source: source.source_id(),
            task,
        }
    }
}

/// A snapshot and its frame.
type Encoded = (Arc<Snapshot>, Utf8Bytes);

/// The newest snapshot's frame, serialized once whoever asks first.
#[derive(Clone, Default)]
struct FrameOf {
    cache: Arc<Mutex<Option<Encoded>>>,
    /// Snapshots serialized so far: what the tests check.
    #[cfg(test)]
    encoded: Arc<AtomicUsize>,
}

impl FrameOf {
    fn get(&self, snapshot: &Arc<Snapshot>) -> Utf8Bytes {
        let cached = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((sent, frame)) = cached.as_ref()
            && Arc::ptr_eq(sent, snapshot)
        {
            return frame.clone();
        }
        drop(cached);
        // Serialized outside the lock; two that race both serialize once.
        #[cfg(test)]
        self.encoded.fetch_add(1, Ordering::Relaxed);
        let frame = encode(snapshot);
        *self.cache.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Arc::clone(snapshot), frame.clone()));
        frame
    }
}

/// A snapshot as a text frame's payload.
fn encode(snapshot: &Snapshot) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(snapshot).unwrap_or_else(|_| String::from("{}")))
}

/// What a client asks for in the query string of its WebSocket.
#[derive(Debug, Default, Deserialize)]
pub(super) struct WsQuery {
    /// How frames follow the first.
    #[serde(default)]
    mode: WsMode,
}

/// How frames follow the first.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WsMode {
    /// The whole snapshot every tick.
    #[default]
    Full,
    /// A full frame and the log, then what changed.
    Delta,
}

/// `GET …/ws`: a client of one migration's hub; its snapshot at once,
/// then one per tick; with `?mode=delta`, a full frame and the log, then
/// what changed. An unknown mode is answered 400.
pub(super) async fn upgrade(
    State(state): State<Arc<AppState>>,
    migration: Migration,
    query: Result<Query<WsQuery>, QueryRejection>,
    connection: Option<Extension<ConnectionPermit>>,
    ws: WebSocketUpgrade,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "mode is full or delta");
    };
    let (id, source) = (&migration.id, &migration.snapshots);
    let Ok(place) = Arc::clone(&state.hubs.places).try_acquire_owned() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many WebSocket clients",
        );
    };
    let hub = state.hubs.hub(id, source);
    // Counted before the first frame is read, so no tick between the two
    // goes unmade.
    let viewer = Counted::new(&hub.viewers);
    let deltas = query.mode == WsMode::Delta;
    let snapshot = source.snapshot();
    let plain = hub.frame_of.get(&snapshot);
    let (first, mode) = if deltas {
        let first = vec![full_frame(0, &plain), logs_frame(&source.shared_logs())];
        (
            first,
            Mode::Delta {
                // The next tick is a delta from this first frame (seq 0),
                // not a second full one.
                last: Some((0, Some(Base::of(&snapshot)))),
                _counted: Counted::new(&hub.delta_clients),
            },
        )
    } else {
        (vec![plain], Mode::Plain)
    };
    let client = Client {
        first,
        mode,
        frames: hub.frames.resubscribe(),
        closing: state.hubs.closing.clone(),
        send_timeout: state.config.client_send_timeout,
        ping_interval: state.config.ping_interval,
        _place: place,
        _viewer: viewer,
        _connection: connection.map(|Extension(permit)| permit),
    };
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| state.hubs.clients.track_future(client.run(socket)))
}

/// What a client is sent.
enum Mode {
    /// The snapshot, every tick.
    Plain,
    /// A delta after the frame it applies to, else a full frame; and the
    /// log when it changes.
    Delta {
        /// The last frame sent and the snapshot it brought the client to;
        /// `None` until one was, or after a resync.
        last: Option<(u64, Option<Base>)>,
        /// Held for the count of delta clients.
        _counted: Counted,
    },
}

/// Counts a client in `count` while it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Counted {
        count.fetch_add(1, Ordering::Relaxed);
        Counted(Arc::clone(count))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Client {
    /// What the client gets before the first tick.
    first: Vec<Utf8Bytes>,
    mode: Mode,
    frames: broadcast::Receiver<Arc<Frames>>,
    /// Cancelled when the server shuts down.
    closing: CancellationToken,
    send_timeout: Duration,
    ping_interval: Duration,
    /// Held for the client's lifetime; frees its place when dropped.
    _place: OwnedSemaphorePermit,
    /// Counts it among its hub's clients.
    _viewer: Counted,
    /// Its connection's place under the server's connection cap.
    _connection: Option<ConnectionPermit>,
}

/// A token bucket over the messages a client sends.
struct ClientRate {
    allowance: f64,
    last: tokio::time::Instant,
}

impl ClientRate {
    fn new() -> Self {
        ClientRate {
            allowance: CLIENT_BURST,
            last: tokio::time::Instant::now(),
        }
    }

    /// Counts one message; `false` once the client is over the rate.
    fn allow(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * CLIENT_MESSAGES_PER_SEC;
        self.last = now;
        self.allowance = (self.allowance + refill).min(CLIENT_BURST);
        if self.allowance < 1.0 {
            return false;
        }
        self.allowance -= 1.0;
        true
    }
}

impl Client {
    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut incoming) = socket.split();
        for first in std::mem::take(&mut self.first) {
            if !self.send(&mut sink, Message::Text(first)).await {
                return;
            }
        }
        let start = tokio::time::Instant::now() + self.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.ping_interval);
        let mut rate = ClientRate::new();
        let close = loop {
            tokio::select! {
                frame = self.frames.recv() => match frame {
                    Ok(frames) => {
                        for text in self.mode.pick(&frames) {
                            if !self.send(&mut sink, Message::Text(text)).await {
                                return;
                            }
                        }
                    }
                    // Fell behind: skip to the newest frame.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break SHUTTING_DOWN,
                },
                message = incoming.next() => match message {
                    // Closed, or broke a limit (a message over the size
                    // cap is an error here): drop the connection.
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    // Pongs to its pings go out with the next frame; a delta
                    // client that missed a frame asks for a full one.
                    Some(Ok(message)) => {
                        if !rate.allow() {
                            tracing::debug!("closing a WebSocket client that floods messages");
                            break TOO_MANY_MESSAGES;
                        }
                        if let (Message::Text(text), Mode::Delta { last, .. }) = (&message, &mut self.mode)
                            && text.contains("\"resync\"")
                        {
                            *last = None;
                        }
                    }
                },
                _ = ping.tick() => {
                    if !self.send(&mut sink, Message::Ping(Bytes::new())).await {
                        return;
                    }
                }
                () = self.closing.cancelled() => break SHUTTING_DOWN,
            }
        };
        let close = Message::Close(Some(CloseFrame {
            code: close.0,
            reason: Utf8Bytes::from_static(close.1),
        }));
        let _ = tokio::time::timeout(self.send_timeout, sink.send(close)).await;
    }

    /// Sends one message; `false` when the client is gone or did not take
    /// it within the send timeout (longer for a large frame, see
    /// [`MIN_CLIENT_BYTES_PER_SEC`]).
    async fn send(&self, sink: &mut SplitSink<WebSocket, Message>, message: Message) -> bool {
        let len = match &message {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) | Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
            Message::Close(_) => 0,
        };
        let allowed = send_allowance(self.send_timeout, len);
        match tokio::time::timeout(allowed, sink.send(message)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::debug!(timeout = ?self.send_timeout, "dropping a WebSocket client that stopped reading");
                false
            }
        }
    }
}

impl Mode {
    /// What to send of a tick's `frames`.
    fn pick(&mut self, frames: &Frames) -> Vec<Utf8Bytes> {
        match self {
            Mode::Plain => vec![frames.plain.clone()],
            Mode::Delta { last, .. } => {
                // The shared delta when the client got the frame before;
                // after missed frames, a delta from the last one it got;
                // a full frame when neither applies.
                let frame = match (last.as_ref(), &frames.delta, &frames.base) {
                    (Some((seq, _)), Some(delta), _) if *seq + 1 == frames.seq => delta.clone(),
                    (Some((seq, Some(from))), _, Some(to)) => from
                        .delta_to(*seq, to, frames.seq)
                        .unwrap_or_else(|| frames.full()),
                    _ => frames.full(),
                };
                let mut out = vec![frame];
                out.extend(frames.logs.clone());
                *last = Some((frames.seq, frames.base.clone()));
                out
            }
        }
    }
}

/// The time a client has to take a message of `len` bytes: `base`, plus
/// the time to read it at [`MIN_CLIENT_BYTES_PER_SEC`].
fn send_allowance(base: Duration, len: usize) -> Duration {
    base + Duration::from_secs_f64(len as f64 / MIN_CLIENT_BYTES_PER_SEC)
}

/// Close codes and reasons.
const SHUTTING_DOWN: (u16, &str) = (close_code::AWAY, "server shutting down");
const TOO_MANY_MESSAGES: (u16, &str) = (close_code::POLICY, "too many messages");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::Publisher;

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn a_delta_client_that_missed_frames_catches_up_from_the_last_it_got() {
        let mut differ = Differ::default();
        let tick = |differ: &mut Differ, lag: u64| {
            let snapshot = Arc::new(Snapshot {
                lag_bytes: lag,
                ..Snapshot::default()
            });
            differ.next(&snapshot, encode(&snapshot), Arc::default(), true)
        };
        let count = Arc::<AtomicUsize>::default();
        let mut mode = Mode::Delta {
            last: None,
            _counted: Counted::new(&count),
        };
        let first = tick(&mut differ, 1);
        let sent = mode.pick(&first);
        assert!(sent[0].contains("\"type\":\"full\""), "{}", sent[0]);
        let second = tick(&mut differ, 2);
        assert!(mode.pick(&second)[0].contains("\"from\":1"));
        let _missed = tick(&mut differ, 3);
        let fourth = tick(&mut differ, 4);
        let caught_up = &mode.pick(&fourth)[0];
        assert!(caught_up.contains("\"type\":\"delta\""), "{caught_up}");
        assert!(caught_up.contains("\"from\":2"), "{caught_up}");
        assert!(caught_up.contains("\"lag_bytes\":4"), "{caught_up}");
        assert_eq!(count.load(Ordering::Relaxed), 1);
        drop(mode);
        assert_eq!(
            count.load(Ordering::Relaxed),
            0,
            "the count follows the client"
        );
    }

    #[test]
    fn a_delta_client_gets_deltas_from_its_first_full_frame_not_a_second_full_one() {
        let mut differ = Differ::default();
        let tick = |differ: &mut Differ, lag: u64| {
            let snapshot = Arc::new(Snapshot {
                lag_bytes: lag,
                ..Snapshot::default()
            });
            (
                Arc::clone(&snapshot),
                differ.next(&snapshot, encode(&snapshot), Arc::default(), true),
            )
        };
        for lag in 0..5 {
            tick(&mut differ, lag);
        }
        // A client arrives: its first frame is the newest snapshot, seq 0.
        let (newest, _) = tick(&mut differ, 5);
        let count = Arc::<AtomicUsize>::default();
        let mut mode = Mode::Delta {
            last: Some((0, Some(Base::of(&newest)))),
            _counted: Counted::new(&count),
        };
        let (_, next) = tick(&mut differ, 6);
        let sent = &mode.pick(&next)[0];
        assert!(sent.contains("\"type\":\"delta\""), "{sent}");
        assert!(sent.contains("\"from\":0"), "{sent}");
        assert!(sent.contains("\"lag_bytes\":6"), "{sent}");
    }

    #[tokio::test]
    async fn the_hub_serializes_nothing_without_clients_and_a_repeat_once() {
        let publisher = Publisher::new(Arc::default());
        let hub = Hub::start(&publisher.snapshots());
        let snapshot = Arc::new(Snapshot::default());
        for _ in 0..3 {
            publisher.broadcast(Arc::clone(&snapshot));
            settle().await;
        }
        assert_eq!(
            hub.frame_of.encoded.load(Ordering::Relaxed),
            0,
            "no client, no work"
        );

        let _viewer = Counted::new(&hub.viewers);
        let mut frames = hub.frames.resubscribe();
        for _ in 0..3 {
            publisher.broadcast(Arc::clone(&snapshot));
            settle().await;
        }
        assert_eq!(
            hub.frame_of.encoded.load(Ordering::Relaxed),
            1,
            "the same snapshot is serialized once"
        );
        let newest = Arc::new(Snapshot::default());
        publisher.broadcast(Arc::clone(&newest));
        settle().await;
        assert_eq!(hub.frame_of.encoded.load(Ordering::Relaxed), 2);
        assert!(frames.try_recv().is_ok());
        // A client that comes now gets the same bytes as its first frame.
        let first = hub.frame_of.get(&newest);
        assert_eq!(
            hub.frame_of.encoded.load(Ordering::Relaxed),
            2,
            "not serialized again"
        );
        assert_eq!(first, encode(&newest));
    }

    #[test]
    fn a_large_frame_gets_the_time_a_slow_link_needs_to_carry_it() {
        let base = Duration::from_secs(5);
        assert_eq!(send_allowance(base, 0), base);
        assert_eq!(send_allowance(base, 64 * 1024), Duration::from_secs(6));
        let first_of_ten_thousand_tables = send_allowance(base, 2_400_000);
        assert!(
            first_of_ten_thousand_tables > Duration::from_secs(40),
            "{first_of_ten_thousand_tables:?}"
        );
    }
}
