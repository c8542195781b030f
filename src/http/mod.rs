//! The live HTTP surfaces: REST, a WebSocket push hub, Prometheus metrics and
//! the dashboard, as one `axum` router over any [`SnapshotSource`].
//!
//! | path | what |
//! |---|---|
//! | `GET /api/v1/status` | the snapshot as JSON |
//! | `GET /api/v1/tables` | its `tables` array |
//! | `GET /api/v1/logs` | the log ring, oldest first |
//! | `GET /api/v1/ws` | WebSocket: the snapshot at once, then one per tick |
//! | `GET /metrics` | Prometheus / OpenMetrics text |
//! | `GET /healthz` | 200, no auth |
//! | `GET /` | the dashboard |
//!
//! Safe by default: [`check_listen_address`] refuses a non-loopback address
//! without a token; with a token, everything but `/healthz` requires it
//! (`Authorization: Bearer …`, or `?token=` for the page and the WebSocket,
//! where browsers cannot set headers). WebSocket upgrades from a foreign
//! `Origin` are refused unless allowed. No wildcard CORS.

mod auth;
pub mod metrics;
mod ws;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::source::SnapshotSource;

/// The address `pgmigrator` listens on by default: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7654";
/// Environment variable holding the access token.
pub const TOKEN_ENV: &str = "PGMIGRATOR_TOKEN";

/// Settings of the HTTP surfaces.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Required on every path but `/healthz` when set.
    pub token: Option<String>,
    /// Origins (`scheme://host[:port]`) allowed to open the WebSocket besides
    /// the server's own.
    pub allowed_origins: Vec<String>,
    /// Concurrent WebSocket clients at most; more are answered 503.
    pub max_clients: usize,
    /// Longest time a request may take (the WebSocket once upgraded is not
    /// a request).
    pub request_timeout: Duration,
    /// Longest time a WebSocket client may take to accept one frame before
    /// it is dropped.
    pub client_send_timeout: Duration,
    /// Time between pings to idle WebSocket clients.
    pub ping_interval: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            token: None,
            allowed_origins: Vec::new(),
            max_clients: 1024,
            request_timeout: Duration::from_secs(10),
            client_send_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(20),
        }
    }
}

/// Refuses to serve on a non-loopback address without a token: the data
/// names every table of a production database.
pub fn check_listen_address(addr: SocketAddr, config: &HttpConfig) -> io::Result<()> {
    if addr.ip().is_loopback() || config.token.as_deref().is_some_and(|t| !t.is_empty()) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to listen on {addr} without a token: pass --token or set {TOKEN_ENV}, \
                 or listen on a loopback address"
            ),
        ))
    }
}

/// What the handlers share.
struct AppState<S> {
    source: S,
    config: HttpConfig,
    hub: ws::Hub,
    /// Set to `true` to close every WebSocket client; lives as long as the
    /// router.
    shutdown: watch::Sender<bool>,
}

/// The router over `source`. It spawns the WebSocket hub, so it must be
/// called inside a Tokio runtime. WebSocket clients are closed when the
/// source stops (e.g. `Collector::close`); [`serve`] also closes them on its
/// shutdown signal.
pub fn router<S: SnapshotSource>(source: S, config: HttpConfig) -> Router {
    build(source, config).0
}

fn build<S: SnapshotSource>(source: S, config: HttpConfig) -> (Router, Arc<AppState<S>>) {
    let hub = ws::Hub::start(&source);
    let state = Arc::new(AppState {
        source,
        config,
        hub,
        shutdown: watch::channel(false).0,
    });
    let protected = Router::new()
        .route("/", get(dashboard))
        .route("/api/v1/status", get(status::<S>))
        .route("/api/v1/tables", get(tables::<S>))
        .route("/api/v1/logs", get(logs::<S>))
        .route("/api/v1/ws", get(ws::upgrade::<S>))
        .route("/metrics", get(prometheus::<S>))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::require_token::<S>,
        ));
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(protected)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            request_timeout::<S>,
        ))
        .with_state(Arc::clone(&state));
    (router, state)
}

/// Serves `source` on `listener` until `shutdown` completes: then stops
/// accepting, sends every WebSocket client a close frame and returns once
/// they are gone (or after two seconds).
pub async fn serve<S: SnapshotSource>(
    listener: TcpListener,
    source: S,
    config: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (router, state) = build(source, config);
    let signal = Arc::clone(&state);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            signal.shutdown.send_replace(true);
        })
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while state.hub.stats().clients() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn request_timeout<S: SnapshotSource>(
    State(state): State<Arc<AppState<S>>>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "request timed out"),
    }
}

/// A JSON error body: `{"error": "…"}`.
fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

async fn status<S: SnapshotSource>(State(state): State<Arc<AppState<S>>>) -> Response {
    Json(&*state.source.snapshot()).into_response()
}

async fn tables<S: SnapshotSource>(State(state): State<Arc<AppState<S>>>) -> Response {
    Json(&state.source.snapshot().tables).into_response()
}

async fn logs<S: SnapshotSource>(State(state): State<Arc<AppState<S>>>) -> Response {
    Json(state.source.logs()).into_response()
}

/// OpenMetrics when the scraper asks for it, the classic text format else.
async fn prometheus<S: SnapshotSource>(
    State(state): State<Arc<AppState<S>>>,
    headers: HeaderMap,
) -> Response {
    let snapshot = state.source.snapshot();
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    if openmetrics {
        let body = metrics::render_openmetrics(snapshot);
        (
            [(header::CONTENT_TYPE, metrics::OPENMETRICS_CONTENT_TYPE)],
            body,
        )
            .into_response()
    } else {
        let body = metrics::render_text(snapshot);
        ([(header::CONTENT_TYPE, metrics::TEXT_CONTENT_TYPE)], body).into_response()
    }
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}
