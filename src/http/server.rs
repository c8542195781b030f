//! The accept loop: every connection is bounded before anyone is
//! authenticated. A cap on open connections (a connection over it is
//! closed at once, with a log line), a deadline for a request's headers
//! (slow or idle clients are closed), and a bounded graceful shutdown (in-
//! flight requests get a few seconds, then their connections are closed).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// How a server bounds its connections.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnectionLimits {
    /// Open connections at most, WebSocket clients included.
    pub(super) max_connections: usize,
    /// Time a client has to send a request's headers, from the moment the
    /// connection is ready for one (so an idle connection is closed too).
    pub(super) header_read_timeout: Duration,
    /// Time in-flight requests get once shutdown starts.
    pub(super) shutdown_grace: Duration,
}

/// One open connection's place under the cap; request handlers that take
/// the connection over (the WebSocket) keep a clone, so the place stays
/// taken until the socket closes.
#[derive(Debug, Clone)]
pub(super) struct ConnectionPermit(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

/// At most one line a minute about the same trouble.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Serves `router` on `listener` until `shutdown` completes; then stops
/// accepting, lets in-flight requests finish within the grace time, and
/// closes what is left.
pub(super) async fn run(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let closing = CancellationToken::new();
    let mut connections = JoinSet::new();
    let mut last_report: Option<Instant> = None;
    let mut report = |what: std::fmt::Arguments<'_>| {
        let now = Instant::now();
        if last_report.is_none_or(|at| now.duration_since(at) >= REPORT_EVERY) {
            last_report = Some(now);
            tracing::warn!("{what}");
        }
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => {
                        let permit = ConnectionPermit(Arc::new(permit));
                        let (router, closing) = (router.clone(), closing.clone());
                        let deadline = limits.header_read_timeout;
                        let tls = tls.clone();
                        connections.spawn(async move {
                            match tls {
                                // The handshake gets the same deadline as
                                // a request's headers.
                                Some(tls) => {
                                    if let Ok(Ok(stream)) =
                                        tokio::time::timeout(deadline, tls.accept(stream)).await
                                    {
                                        serve_connection(stream, router, deadline, closing, permit)
                                            .await;
                                    }
                                }
                                None => {
                                    serve_connection(stream, router, deadline, closing, permit).await;
                                }
                            }
                        });
                    }
                    // Closing at once frees the descriptor and tells the
                    // client, where leaving it in the backlog would not.
                    Err(_) => report(format_args!(
                        "{} connections are open, the limit; refusing new ones",
                        limits.max_connections
                    )),
                },
                Err(err) if is_per_connection(&err) => {}
                Err(err) => {
                    // Out of descriptors or memory: wait, rather than spin.
                    report(format_args!("cannot accept connections: {err}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            // Reap finished connections as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    closing.cancel();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            open = connections.len(),
            "closing connections still open after the shutdown grace time"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Accept errors that concern one connection only (it was reset before we
/// took it); the listener is fine.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

async fn serve_connection(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    router: Router,
    header_read_timeout: Duration,
    closing: CancellationToken,
    permit: ConnectionPermit,
) {
    let service = router.map_request(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(permit.clone());
        request
    });
    let service = TowerToHyperService::new(service.map_err(|never: Infallible| match never {}));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = closing.cancelled() => {
            // Finish the request in flight, if any, then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
