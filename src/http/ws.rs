//! The WebSocket hub: each snapshot is serialized once and the bytes shared
//! by every client; each client has its own task and a small queue, so a
//! client that stops reading is dropped after a bounded wait and never
//! delays the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::{AppState, auth, error};
use crate::model::Snapshot;
use crate::source::SnapshotSource;

/// Frames a client may fall behind before it skips to the newest.
const CLIENT_QUEUE: usize = 4;

/// Clients connected now, under the cap.
#[derive(Debug, Default)]
pub(super) struct WsStats {
    clients: AtomicUsize,
}

impl WsStats {
    /// Clients connected now.
    pub(super) fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Takes a client slot unless `max` are taken.
    fn admit(self: &Arc<Self>, max: usize) -> Option<Slot> {
        let before = self.clients.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            self.clients.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(Arc::clone(self)))
    }
}

/// One client's place under the cap; given back when dropped.
struct Slot(Arc<WsStats>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(super) struct Hub {
    /// Resubscribed per client; only the hub task holds the sender, so
    /// clients see the end when the source stops.
    frames: broadcast::Receiver<Utf8Bytes>,
    stats: Arc<WsStats>,
    task: JoinHandle<()>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hub {
    pub(super) fn start<S: SnapshotSource>(source: &S) -> Hub {
        let mut snapshots = source.subscribe();
        let (tx, frames) = broadcast::channel(CLIENT_QUEUE);
        let task = tokio::spawn(async move {
            loop {
                match snapshots.recv().await {
                    Ok(snapshot) => {
                        // No client is not an error.
                        let _ = tx.send(encode(&snapshot));
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Hub {
            frames,
            stats: Arc::default(),
            task,
        }
    }

    pub(super) fn stats(&self) -> &WsStats {
        &self.stats
    }
}

/// A snapshot as a text frame's payload.
fn encode(snapshot: &Snapshot) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(snapshot).unwrap_or_else(|_| String::from("{}")))
}

/// `GET /api/v1/ws`.
pub(super) async fn upgrade<S: SnapshotSource>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !auth::origin_allowed(&headers, &state.config) {
        return error(StatusCode::FORBIDDEN, "WebSocket origin not allowed");
    }
    let Some(slot) = state.hub.stats.admit(state.config.max_clients) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many WebSocket clients",
        );
    };
    let client = Client {
        first: encode(&state.source.snapshot()),
        frames: state.hub.frames.resubscribe(),
        shutdown: state.shutdown.subscribe(),
        send_timeout: state.config.client_send_timeout,
        ping_interval: state.config.ping_interval,
        _slot: slot,
    };
    ws.on_upgrade(move |socket| client.run(socket))
}

struct Client {
    first: Utf8Bytes,
    frames: broadcast::Receiver<Utf8Bytes>,
    shutdown: watch::Receiver<bool>,
    send_timeout: Duration,
    ping_interval: Duration,
    /// Held for the client's lifetime; frees its place when dropped.
    _slot: Slot,
}

impl Client {
    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut incoming) = socket.split();
        let first = Message::Text(self.first.clone());
        if !self.send(&mut sink, first).await {
            return;
        }
        let start = tokio::time::Instant::now() + self.ping_interval;
        let mut ping = tokio::time::interval_at(start, self.ping_interval);
        loop {
            tokio::select! {
                frame = self.frames.recv() => match frame {
                    Ok(text) => {
                        if !self.send(&mut sink, Message::Text(text)).await {
                            return;
                        }
                    }
                    // Fell behind: skip to the newest frame.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                },
                message = incoming.next() => match message {
                    // Client messages are read and ignored; pongs to its
                    // pings go out with the next frame.
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
                _ = ping.tick() => {
                    if !self.send(&mut sink, Message::Ping(Bytes::new())).await {
                        return;
                    }
                }
                () = stopped(&mut self.shutdown) => break,
            }
        }
        let close = Message::Close(Some(CloseFrame {
            code: close_code::AWAY,
            reason: Utf8Bytes::from_static("server shutting down"),
        }));
        let _ = tokio::time::timeout(self.send_timeout, sink.send(close)).await;
    }

    /// Sends one message; `false` when the client is gone or did not take
    /// it within the send timeout.
    async fn send(&self, sink: &mut SplitSink<WebSocket, Message>, message: Message) -> bool {
        match tokio::time::timeout(self.send_timeout, sink.send(message)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::debug!(timeout = ?self.send_timeout, "dropping a WebSocket client that stopped reading");
                false
            }
        }
    }
}

/// Completes once the server shuts down (or the router is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
