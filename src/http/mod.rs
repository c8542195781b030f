//! The live HTTP surfaces: REST, a WebSocket push hub, Prometheus metrics and
//! the dashboard, as one `axum` router over a [`Snapshots`] reader.
//!
//! | path | what |
//! |---|---|
//! | `GET /api/v1/status` | the snapshot as JSON |
//! | `GET /api/v1/tables` | its `tables` array |
//! | `GET /api/v1/logs` | the log ring, oldest first |
//! | `GET /api/v1/cutover` | the cutover verdict (404 until one is computed) |
//! | `GET /api/v1/verify` | data verification: progress and the rows that differ (404 unless `--verify`) |
//! | `GET /api/v1/alerts` | the alerts pending, firing or recently resolved |
//! | `GET /api/v1/history?since=…&step=…` | the headline series over time, oldest first |
//! | `GET /api/v1/migrations` | every migration served, as a summary, worst first |
//! | `GET /api/v1/migrations/{id}/…` | one migration's: each path above under `/api/v1` |
//! | `GET /api/v1/ws` | WebSocket: the snapshot at once, then one per tick (`?mode=delta`: what changed) |
//! | `GET /metrics` | Prometheus / OpenMetrics text (a `migration` label when there are several) |
//! | `GET /healthz` | 200, no auth |
//! | `GET /` | the dashboard |
//!
//! Safe by default:
//! - [`check_listen_address`] refuses a non-loopback address without a
//!   token of at least 16 characters, and any token with white space.
//! - With a token, everything but `/healthz` requires it: `Authorization:
//!   Bearer …` everywhere, and `?token=` only for the page and every
//!   WebSocket, where browsers cannot set headers ([`RouteKind`]).
//! - The `Host` header must be an IP address, `localhost`, or a name the
//!   configuration allows, so a web page cannot reach a loopback server
//!   through a DNS name it rebinds to 127.0.0.1.
//! - Requests from a foreign `Origin` (a WebSocket opened or a fetch made
//!   by another site's page) are refused unless allowed. No CORS headers
//!   at all.
//! - Every connection is bounded before authentication: a cap on open
//!   connections, a deadline for request headers (idle connections are
//!   closed too), a request timeout, small WebSocket messages from clients
//!   and a rate limit on them, and a shutdown that waits at most a few
//!   seconds for requests in flight.

mod auth;
mod delta;
pub mod metrics;
mod migrations;
mod rest;
mod routes;
mod server;
mod tls;
mod ws;

pub use routes::{Route, RouteKind, routes};
pub use tls::TlsFiles;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

use crate::publish::Snapshots;

pub use migrations::Migrations;

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
    /// the server's own; their host names are also allowed in `Host`.
    pub allowed_origins: Vec<String>,
    /// Host names allowed in the `Host` header besides IP addresses and
    /// `localhost` (e.g. the name a reverse proxy or DNS gives the server).
    pub allowed_hosts: Vec<String>,
    /// Open connections at most, WebSocket clients included; a connection
    /// over the cap is closed at once.
    pub max_connections: usize,
    /// Concurrent WebSocket clients at most; more are answered 503.
    pub max_clients: usize,
    /// Time a client has to send a request's headers; a connection that
    /// sends nothing for this long is closed.
    pub header_read_timeout: Duration,
    /// Longest time a request may take (the WebSocket once upgraded is not
    /// a request).
    pub request_timeout: Duration,
    /// Time requests in flight get to finish once shutdown starts.
    pub shutdown_grace: Duration,
    /// Serve HTTPS (and `wss://`) only, with this certificate and key,
    /// read again when they change; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
    /// Longest time a WebSocket client may take to accept one frame before
    /// it is dropped.
    pub client_send_timeout: Duration,
    /// Time between pings to idle WebSocket clients.
    pub ping_interval: Duration,
    /// Per-table series in `/metrics` for at most this many tables of each
    /// migration, the most interesting ones (stalled, differing, copying,
    /// most left to copy, busiest); every table when `None`. The
    /// migration-level series are exact either way.
    pub metrics_tables: Option<usize>,
    /// The process's own counters, shown in `/metrics` (say, an OTLP
    /// export's failures).
    pub counters: Vec<metrics::ProcessCounter>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            token: None,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_connections: 512,
            max_clients: 256,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            tls: None,
            client_send_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(20),
            metrics_tables: None,
            counters: Vec::new(),
        }
    }
}

impl HttpConfig {
    /// The same settings with `max_connections` and `max_clients` lowered
    /// to fit this process's open-file limit (`ulimit -n`), keeping 64
    /// descriptors for the state file, database connections and the
    /// runtime: a flood of connections must never leave the state file
    /// writer without a descriptor.
    pub fn within_fd_limit(mut self) -> Self {
        if let Some(limit) = open_file_limit() {
            let budget = usize::try_from(limit.saturating_sub(64))
                .unwrap_or(usize::MAX)
                .max(8);
            self.max_connections = self.max_connections.min(budget);
        }
        self.max_clients = self.max_clients.min(self.max_connections);
        self
    }
}

/// The soft limit on open files, when there is one.
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Shortest token accepted on a non-loopback address.
pub const MIN_PUBLIC_TOKEN_LEN: usize = 16;

/// Refuses a token with white space or control characters anywhere, and
/// a non-loopback address without a token of at least
/// [`MIN_PUBLIC_TOKEN_LEN`] characters: the data names every table of a
/// production database.
pub fn check_listen_address(addr: SocketAddr, config: &HttpConfig) -> io::Result<()> {
    let refuse = |why: String| Err(io::Error::new(io::ErrorKind::PermissionDenied, why));
    let token = config.token.as_deref().filter(|t| !t.is_empty());
    if token.is_some_and(|t| t.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return refuse("the token must not contain white space or control characters".into());
    }
    if addr.ip().is_loopback() {
        return Ok(());
    }
    match token {
        None => refuse(format!(
            "refusing to listen on {addr} without a token: pass --token, --token-file or \
             set {TOKEN_ENV}, or listen on a loopback address"
        )),
        Some(t) if t.chars().count() < MIN_PUBLIC_TOKEN_LEN => refuse(format!(
            "refusing to listen on {addr} with a token shorter than {MIN_PUBLIC_TOKEN_LEN} characters"
        )),
        Some(_) => Ok(()),
    }
}

/// What the handlers share.
struct AppState {
    /// Every migration, by id, under `/api/v1/migrations`; the unprefixed
    /// endpoints serve the first.
    migrations: Migrations,
    config: HttpConfig,
    hubs: ws::Hubs,
    /// Every route's kind, by the path the router matches.
    kinds: HashMap<String, RouteKind>,
}

/// The router over `source`. It spawns the WebSocket hub, so it must be
/// called inside a Tokio runtime. WebSocket clients are closed when the
/// source stops (e.g. `Collector::close`); [`serve`] also closes them on its
/// shutdown signal.
pub fn router(source: impl Into<Snapshots>, config: HttpConfig) -> Router {
    build(Migrations::single(source.into()), config).0
}

fn build(migrations: Migrations, config: HttpConfig) -> (Router, Arc<AppState>) {
    let state = Arc::new(AppState {
        migrations,
        hubs: ws::Hubs::new(config.max_clients),
        config,
        kinds: routes()
            .into_iter()
            .map(|route| (route.path, route.kind))
            .collect(),
    });
    let router = routes::router()
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            auth::guard,
        ))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout,
        ))
        .with_state(Arc::clone(&state));
    (router, state)
}

/// Serves `source` on `listener` until `shutdown` completes: then stops
/// accepting, sends every WebSocket client a close frame, gives requests in
/// flight [`HttpConfig::shutdown_grace`] to finish, and returns once the
/// WebSocket clients are gone (or after two more seconds).
pub async fn serve(
    listener: TcpListener,
    source: impl Into<Snapshots>,
    config: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_migrations(
        listener,
        Migrations::single(source.into()),
        config,
        shutdown,
    )
    .await
}

/// [`serve`] for several migrations: each under
/// `/api/v1/migrations/{id}/…` (its WebSocket too), listed at
/// `/api/v1/migrations`; `/metrics` shows them all, each series labelled
/// `migration="id"` when there are several; the unprefixed endpoints and
/// `/api/v1/ws` serve the first.
pub async fn serve_migrations(
    listener: TcpListener,
    migrations: Migrations,
    config: HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = server::ConnectionLimits {
        max_connections: config.max_connections.max(1),
        header_read_timeout: config.header_read_timeout,
        shutdown_grace: config.shutdown_grace,
    };
    let tls = match &config.tls {
        Some(files) => Some(
            tls::acceptor(files).map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?,
        ),
        None => None,
    };
    let (router, state) = build(migrations, config);
    let shutdown = async {
        shutdown.await;
        // WebSocket clients get their close frame while requests finish.
        state.hubs.close_clients();
    };
    server::run(listener, router, limits, tls, shutdown).await?;
    state.hubs.clients_gone(Duration::from_secs(2)).await;
    Ok(())
}

/// A JSON error body: `{"error": "…"}`.
fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}
