//! The HTTP surfaces against a real server on an ephemeral loopback port,
//! with a real HTTP client and real WebSocket clients.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pgmigrator_metrics::http::{self, HttpConfig};
use pgmigrator_metrics::{
    Collector, LogEntry, LogLevel, Lsn, Phase, Snapshot, Snapshots, StateFileMirror, TableProgress,
    write_state_file,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::three_tables;

/// A server on 127.0.0.1:0; dropping `stop` (or sending on it) shuts it down.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(source: impl Into<Snapshots>, config: HttpConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(listener, source.into(), config, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn ws(&self, query: &str) -> String {
        format!("ws://{}/api/v1/ws{query}", self.addr)
    }

    async fn shutdown(mut self) {
        drop(self.stop.take());
        timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
    }
}

/// GET that may fail: the status line's code, or `None` when no HTTP
/// answer came.
pub(crate) async fn try_get(url: &str) -> Option<u16> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let request = hyper::Request::get(url).body(Empty::new()).unwrap();
    let response = timeout(Duration::from_secs(5), client.request(request))
        .await
        .ok()?
        .ok()?;
    Some(response.status().as_u16())
}

/// GET with optional headers: (status, content type, body).
pub(crate) async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = hyper::Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn busy_collector() -> Collector {
    let collector = Collector::builder()
        .tick(Duration::from_millis(100))
        .build();
    collector.set_phase(Phase::Copy).await;
    collector.set_tables(three_tables()).await;
    collector.table_started("public", "users").await;
    collector
        .update_table_progress("public", "users", 500, 4096)
        .await;
    collector.table_done("public", "orders", 4000).await;
    collector.record_applied(Lsn(0x3000), 15, 1500).await;
    collector.record_latest_lsn(Lsn(0x4000)).await;
    collector.record_error("boom").await;
    collector
        .add_log(LogEntry::new(LogLevel::Warn, "careful"))
        .await;
    collector.table_streaming("public", "orders").await;
    collector.add_table_changes("public", "orders", 1000).await;
    collector
        .record_slot(pgmigrator_metrics::SlotHealth {
            name: "sub".into(),
            wal_status: pgmigrator_metrics::WalStatus::Extended,
            retained_bytes: 96 << 20,
            safe_wal_size: Some(16 << 20),
            max_slot_wal_keep_size: Some(64 << 20),
            spill_bytes: 13 << 20,
            spill_txns: 1,
            ..pgmigrator_metrics::SlotHealth::default()
        })
        .await;
    collector.flush().await;
    collector
}

/// Reads the next text frame as a snapshot.
async fn next_snapshot<S>(ws: &mut S) -> Snapshot
where
    S: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        match timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("connection ended: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_endpoints_serve_status_tables_logs_and_health() {
    let collector = busy_collector().await;
    let server = Server::start(collector.clone(), HttpConfig::default()).await;

    let (status, content_type, body) = get(&server.url("/api/v1/status"), &[]).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let snapshot: Snapshot = serde_json::from_str(&body).unwrap();
    assert_eq!(snapshot.phase, Phase::Copy);
    assert_eq!(snapshot.total_rows, 15);

    let (status, _, body) = get(&server.url("/api/v1/tables"), &[]).await;
    let tables: Vec<TableProgress> = serde_json::from_str(&body).unwrap();
    assert_eq!((status, tables.len()), (200, 3));
    assert_eq!(tables[0].rows_copied, 500);

    let (status, _, body) = get(&server.url("/api/v1/logs"), &[]).await;
    let logs: Vec<LogEntry> = serde_json::from_str(&body).unwrap();
    assert_eq!((status, logs[0].message.as_str()), (200, "careful"));

    assert_eq!(get(&server.url("/healthz"), &[]).await.0, 200);
    let (status, content_type, body) = get(&server.url("/no/such/path"), &[]).await;
    assert_eq!((status, content_type.as_str()), (404, "application/json"));
    assert_eq!(body, r#"{"error":"not found"}"#);

    let (status, content_type, body) = get(&server.url("/"), &[]).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"));
    assert!(body.contains("new WebSocket(") && !body.contains("https://cdn"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_snapshot_and_pass_promtool() {
    let collector = busy_collector().await;
    let server = Server::start(collector.clone(), HttpConfig::default()).await;
    let (status, content_type, text) = get(&server.url("/metrics"), &[]).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for line in [
        "pgmigrator_phase{phase=\"copy\"} 1",
        "pgmigrator_phase{phase=\"streaming\"} 0",
        "pgmigrator_tables{status=\"copying\"} 1",
        "pgmigrator_tables{status=\"streaming\"} 1",
        "pgmigrator_table_rows_copied{schema=\"public\",table=\"users\"} 500",
        "pgmigrator_table_rows_estimated{schema=\"public\",table=\"orders\"} 4000",
        "pgmigrator_applied_lsn_bytes 12288",
        "pgmigrator_latest_lsn_bytes 16384",
        "pgmigrator_replication_lag_bytes 4096",
        "pgmigrator_caught_up 0",
        "pgmigrator_rows_applied_total 15",
        "pgmigrator_bytes_applied_total 1500",
        "pgmigrator_errors_total 1",
        "# TYPE pgmigrator_errors_total counter",
        "pgmigrator_build_info{version=\"",
        "pgmigrator_table_changes_applied_total{schema=\"public\",table=\"orders\"} 1000",
        "pgmigrator_table_changes_applied_total{schema=\"public\",table=\"users\"} 0",
        "pgmigrator_slot_retained_wal_bytes 100663296",
        "pgmigrator_slot_safe_wal_size_bytes 16777216",
        "pgmigrator_slot_active 0",
        "pgmigrator_slot_wal_status{status=\"extended\"} 1",
        "pgmigrator_slot_wal_status{status=\"reserved\"} 0",
        "pgmigrator_slot_spill_bytes_total 13631488",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // The never-analysed table has no estimate series at all.
    assert!(!text.contains("pgmigrator_table_rows_estimated{schema=\"public\",table=\"events\"}"));
    assert!(!text.contains("# EOF"));

    let (_, content_type, openmetrics) = get(
        &server.url("/metrics"),
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await;
    assert!(content_type.starts_with("application/openmetrics-text"));
    assert!(openmetrics.ends_with("# EOF\n"));

    crate::tools::promtool_check(&text);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_sends_a_snapshot_at_once_then_one_per_tick() {
    let collector = busy_collector().await; // ticks every 100 ms
    let server = Server::start(collector.clone(), HttpConfig::default()).await;
    let started = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws(""))
        .await
        .unwrap();
    let first = next_snapshot(&mut ws).await;
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(first.total_rows, 15);
    let mut stamps = BTreeSet::new();
    for _ in 0..10 {
        stamps.insert(next_snapshot(&mut ws).await.timestamp);
    }
    let elapsed = started.elapsed();
    assert_eq!(stamps.len(), 10, "each tick brings a new snapshot");
    assert!(
        elapsed >= Duration::from_millis(850) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // Client messages are read and ignored.
    ws.send(Message::text("hello")).await.unwrap();
    next_snapshot(&mut ws).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_all_receive_every_snapshot() {
    let collector = Collector::builder()
        .tick(Duration::from_millis(200))
        .build();
    collector.set_tables(three_tables()).await;
    let server = Server::start(collector.clone(), HttpConfig::default()).await;
    let mut clients = Vec::new();
    for _ in 0..200 {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.ws(""))
            .await
            .unwrap();
        next_snapshot(&mut ws).await;
        clients.push(ws);
    }
    // From now on, every client must see the same ticks.
    let from = time::OffsetDateTime::now_utc() + Duration::from_millis(300);
    let until = from + Duration::from_millis(1000);
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut seen = BTreeSet::new();
                loop {
                    let snapshot = next_snapshot(&mut ws).await;
                    if snapshot.timestamp > until {
                        return seen;
                    }
                    if snapshot.timestamp >= from {
                        seen.insert(snapshot.timestamp);
                    }
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for reader in readers {
        all.push(reader.await.unwrap());
    }
    assert!(all[0].len() >= 4, "{:?}", all[0]);
    assert!(
        all.iter().all(|seen| *seen == all[0]),
        "some client missed a snapshot"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_delay_the_others() {
    let collector = Collector::builder().tick(Duration::from_millis(50)).build();
    // Large frames (~1 MB) fill the stuck client's socket buffers quickly.
    let tables: Vec<_> = (0..4000)
        .map(|i| TableProgress::new("public", &format!("table_with_a_long_name_{i:05}"), 1, 1))
        .collect();
    collector.set_tables(tables).await;
    let config = HttpConfig {
        client_send_timeout: Duration::from_millis(500),
        ..HttpConfig::default()
    };
    let server = Server::start(collector.clone(), config).await;
    let (_stuck, _) = tokio_tungstenite::connect_async(server.ws(""))
        .await
        .unwrap();
    let (mut reader, _) = tokio_tungstenite::connect_async(server.ws(""))
        .await
        .unwrap();
    next_snapshot(&mut reader).await;
    let started = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut last = Instant::now();
    let mut frames = 0;
    while started.elapsed() < Duration::from_secs(3) {
        next_snapshot(&mut reader).await;
        longest_gap = longest_gap.max(last.elapsed());
        last = Instant::now();
        frames += 1;
    }
    // One frame per 50 ms tick (60 in 3 s). A hub that wrote to clients one
    // after another would wait out the stuck client's 500 ms send timeout on
    // every tick once its socket is full: about 6 frames. The gap bound only
    // catches a stall of seconds: the suite runs PostgreSQL clusters and a
    // browser beside this test on two cores, which alone has caused gaps
    // over a second.
    assert!(frames >= 30, "only {frames} frames in 3 s");
    assert!(
        longest_gap < Duration::from_secs(2),
        "a gap of {longest_gap:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_cap_answers_503() {
    let config = HttpConfig {
        max_clients: 2,
        ..HttpConfig::default()
    };
    let server = Server::start(Collector::new(), config).await;
    let (first, _) = tokio_tungstenite::connect_async(server.ws(""))
        .await
        .unwrap();
    let (_second, _) = tokio_tungstenite::connect_async(server.ws(""))
        .await
        .unwrap();
    match tokio_tungstenite::connect_async(server.ws("")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503, got {other:?}"),
    }
    // A freed slot is taken again.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio_tungstenite::connect_async(server.ws("")).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(err) => panic!("the slot was never freed: {err}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_unless_allowed() {
    let config = HttpConfig {
        allowed_origins: vec!["https://ops.example.com".into()],
        ..HttpConfig::default()
    };
    let server = Server::start(Collector::new(), config).await;
    let with_origin = |origin: &str| {
        let mut request = server.ws("").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    };
    match tokio_tungstenite::connect_async(with_origin("http://evil.example")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    assert!(
        tokio_tungstenite::connect_async(with_origin("https://ops.example.com"))
            .await
            .is_ok()
    );
    let own = format!("http://{}", server.addr);
    assert!(
        tokio_tungstenite::connect_async(with_origin(&own))
            .await
            .is_ok()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_enforced_everywhere_but_healthz() {
    let config = HttpConfig {
        token: Some("s3cret".into()),
        ..HttpConfig::default()
    };
    let server = Server::start(busy_collector().await, config).await;
    for path in [
        "/api/v1/status",
        "/api/v1/tables",
        "/api/v1/logs",
        "/metrics",
        "/",
    ] {
        assert_eq!(get(&server.url(path), &[]).await.0, 401, "{path}");
        assert_eq!(
            get(&server.url(path), &[("authorization", "Bearer wrong")])
                .await
                .0,
            401
        );
        assert_eq!(
            get(&server.url(path), &[("authorization", "Bearer s3cret")])
                .await
                .0,
            200
        );
    }
    assert_eq!(get(&server.url("/?token=s3cret"), &[]).await.0, 200);
    // The query string carries the token only where a browser cannot set
    // a header: the page and the WebSocket.
    for path in ["/api/v1/status", "/api/v1/logs", "/metrics"] {
        let url = server.url(&format!("{path}?token=s3cret"));
        assert_eq!(get(&url, &[]).await.0, 401, "{path}");
    }
    assert_eq!(get(&server.url("/healthz"), &[]).await.0, 200);
    match tokio_tungstenite::connect_async(server.ws("")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws("?token=s3cret"))
        .await
        .unwrap();
    next_snapshot(&mut ws).await;
    server.shutdown().await;
}

#[test]
fn a_non_loopback_address_needs_a_token() {
    let open = HttpConfig::default();
    let public: SocketAddr = "0.0.0.0:7654".parse().unwrap();
    let err = http::check_listen_address(public, &open).unwrap_err();
    assert!(err.to_string().contains("without a token"), "{err}");
    assert!(http::check_listen_address("127.0.0.1:7654".parse().unwrap(), &open).is_ok());
    assert!(http::check_listen_address("[::1]:7654".parse().unwrap(), &open).is_ok());
    let with_token = |token: &str| HttpConfig {
        token: Some(token.into()),
        ..HttpConfig::default()
    };
    assert!(http::check_listen_address(public, &with_token("0123456789abcdef")).is_ok());
    let short = http::check_listen_address(public, &with_token("t")).unwrap_err();
    assert!(short.to_string().contains("shorter than 16"), "{short}");
    // White space is refused everywhere: `?token=%20` must never pass.
    for token in [
        " ",
        "                    ",
        "0123456789abcdef ",
        "a\tbcdefghijklmnopq",
    ] {
        for addr in [public, "127.0.0.1:7654".parse().unwrap()] {
            let err = http::check_listen_address(addr, &with_token(token)).unwrap_err();
            assert!(err.to_string().contains("white space"), "{err}");
        }
    }
}

/// A raw TCP connection to `server`.
async fn connect(server: &Server) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(server.addr).await.unwrap()
}

/// Whether the server closes `stream` within `limit` (reads EOF or a
/// reset); whatever it sends first, such as a 408, is read and skipped.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

fn short_deadlines() -> HttpConfig {
    HttpConfig {
        header_read_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_the_header_deadline() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(Collector::new(), short_deadlines()).await;
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut stream = connect(&server).await;
        // Slowloris: a request line and one header, never the end.
        stream
            .write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let mut idle: Vec<_> = Vec::new();
    for _ in 0..100 {
        idle.push(connect(&server).await);
    }
    // Idle after one complete request on a kept-alive connection, too.
    let mut kept = connect(&server).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    for stream in slow.iter_mut().chain(idle.iter_mut()).chain([&mut kept]) {
        assert!(closed_within(stream, Duration::from_secs(3)).await);
    }
    assert_eq!(get(&server.url("/healthz"), &[]).await.0, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_the_cap_frees_up() {
    let config = HttpConfig {
        max_connections: 20,
        header_read_timeout: Duration::from_secs(2),
        ..HttpConfig::default()
    };
    let server = Server::start(Collector::new(), config).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect(&server).await);
    }
    // The server accepts in the order the connections were made, so the
    // twenty hold every place when the next one is accepted: it is closed
    // long before the header deadline would close it.
    let mut over = connect(&server).await;
    assert!(closed_within(&mut over, Duration::from_secs(1)).await);
    // The held ones time out, and their places serve requests again.
    for stream in &mut held {
        assert!(closed_within(stream, Duration::from_secs(5)).await);
    }
    assert_eq!(get(&server.url("/healthz"), &[]).await.0, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_count_against_the_connection_cap() {
    let config = HttpConfig {
        max_connections: 3,
        ..HttpConfig::default()
    };
    let server = Server::start(Collector::new(), config).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            tokio_tungstenite::connect_async(server.ws(""))
                .await
                .unwrap()
                .0,
        );
    }
    // Each handshake was answered, so the three hold their places.
    let mut over = connect(&server).await;
    assert!(closed_within(&mut over, Duration::from_millis(500)).await);
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio_tungstenite::connect_async(server.ws(""))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the places were never given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_half_sent_request_no_longer_than_the_grace_time() {
    use tokio::io::AsyncWriteExt;
    let config = HttpConfig {
        header_read_timeout: Duration::from_secs(60),
        shutdown_grace: Duration::from_millis(500),
        ..HttpConfig::default()
    };
    let server = Server::start(Collector::new(), config).await;
    let mut stream = connect(&server).await;
    // A whole request answered first: the server holds this connection.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        let mut buf = [0u8; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
            .await
            .unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    stream
        .write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    server.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(closed_within(&mut stream, Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_fragmented_client_message_closes_the_connection() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start(Collector::new(), HttpConfig::default()).await;
    let mut stream = connect(&server).await;
    stream
        .write_all(
            b"GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    // Fragments of 16 KiB, masked with a zero key, never finished: the
    // server must give up past its 64 KiB cap instead of buffering on.
    let payload = vec![b'x'; 16 * 1024];
    let mut sent = 0;
    let mut closed = false;
    for i in 0..4096 {
        let mut frame = vec![if i == 0 { 0x01 } else { 0x00 }, 0x80 | 126];
        frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(&payload);
        if stream.write_all(&frame).await.is_err() {
            closed = true;
            break;
        }
        sent += payload.len();
    }
    assert!(
        closed || closed_within(&mut stream, Duration::from_secs(2)).await,
        "still open after {sent} bytes"
    );
    assert!(sent < 8 * 1024 * 1024, "the server read {sent} bytes");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_messages_is_closed_with_a_policy_code() {
    let server = Server::start(Collector::new(), HttpConfig::default()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws(""))
        .await
        .unwrap();
    let mut close = None;
    for _ in 0..1000 {
        if ws.send(Message::Text("hi".into())).await.is_err() {
            break;
        }
    }
    // Snapshots keep coming every tick; the close must come within 5 s.
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, ws.next()).await {
        match message {
            Ok(Message::Close(frame)) => {
                close = frame;
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    let close = close.expect("a close frame");
    assert_eq!(u16::from(close.code), 1008);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebound_host_name_is_refused_for_the_api_and_the_websocket() {
    let server = Server::start(busy_collector().await, HttpConfig::default()).await;
    for path in ["/", "/api/v1/status", "/metrics"] {
        let (status, _, _) = get(&server.url(path), &[("host", "attacker.example")]).await;
        assert_eq!(status, 403, "{path}");
        let (status, _, _) = get(&server.url(path), &[("host", "localhost:7654")]).await;
        assert_eq!(status, 200, "{path}");
    }
    let mut request = server.ws("").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("host", "attacker.example".parse().unwrap());
    request
        .headers_mut()
        .insert("origin", "http://attacker.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_and_collector_close_send_clients_a_close_frame() {
    let collector = Collector::new();
    let server = Server::start(collector.clone(), HttpConfig::default()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws(""))
        .await
        .unwrap();
    next_snapshot(&mut ws).await;
    let closed = tokio::spawn(async move {
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    });
    server.shutdown().await;
    assert_eq!(
        timeout(Duration::from_secs(5), closed)
            .await
            .unwrap()
            .unwrap(),
        Some(1001)
    );

    // A collector that closes ends its clients too.
    let server = Server::start(collector.clone(), HttpConfig::default()).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws(""))
        .await
        .unwrap();
    next_snapshot(&mut ws).await;
    collector.close().await;
    let ended = timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = ws.next().await {
            if matches!(message, Message::Close(_)) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(ended);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_republishes_a_state_file_and_flags_it_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let written = Snapshot {
        phase: Phase::Streaming,
        total_rows: 42,
        timestamp: time::OffsetDateTime::now_utc(),
        ..Snapshot::default()
    };
    write_state_file(&path, &written).unwrap();
    let mirror = StateFileMirror::start(&path);
    let server = Server::start(mirror.clone(), HttpConfig::default()).await;
    let fresh = wait_for(&server, |s| s.total_rows == 42).await;
    assert!(!fresh.stale);

    // The pipeline writes again: the mirror follows within a second.
    write_state_file(
        &path,
        &Snapshot {
            total_rows: 43,
            ..written.clone()
        },
    )
    .unwrap();
    wait_for(&server, |s| s.total_rows == 43).await;

    // A file last modified a minute ago is stale.
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let stale = wait_for(&server, |s| s.stale).await;
    assert_eq!(stale.total_rows, 43);
    server.shutdown().await;
}

/// Polls `/api/v1/status` until `check` holds (at most 5 s).
async fn wait_for(server: &Server, check: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, _, body) = get(&server.url("/api/v1/status"), &[]).await;
        let snapshot: Snapshot = serde_json::from_str(&body).unwrap();
        if check(&snapshot) {
            return snapshot;
        }
        assert!(Instant::now() < deadline, "never happened; last: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_sees_two_writes_of_the_same_size_in_one_clock_tick() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let at = |rows| Snapshot {
        total_rows: rows,
        ..Snapshot::default()
    };
    write_state_file(&path, &at(10)).unwrap();
    let mirror = StateFileMirror::start(&path);
    assert_eq!(mirror.snapshots().snapshot().total_rows, 10);
    // Same length, and the same modification time.
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    write_state_file(&path, &at(11)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(modified)
        .unwrap();
    let mut watch = mirror.snapshots().watch();
    timeout(
        Duration::from_secs(5),
        watch.wait_for(|s| s.total_rows == 11),
    )
    .await
    .expect("the second write is seen")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_of_a_missing_or_invalid_file_says_so_and_keeps_trying() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mirror = StateFileMirror::start(&path);
    let server = Server::start(mirror.clone(), HttpConfig::default()).await;
    // A typo in --state-file must not look like a healthy, idle migration.
    let missing = wait_for(&server, |s| s.last_error.contains("no migration state")).await;
    assert!(missing.stale && !missing.caught_up && missing.error_count == 1);

    std::fs::write(&path, "{\"phase\": ").unwrap();
    let invalid = wait_for(&server, |s| s.last_error.contains("invalid JSON")).await;
    assert!(invalid.stale && !invalid.caught_up);

    let good = Snapshot {
        phase: Phase::Streaming,
        total_rows: 7,
        timestamp: time::OffsetDateTime::now_utc(),
        ..Snapshot::default()
    };
    write_state_file(&path, &good).unwrap();
    let read = wait_for(&server, |s| s.total_rows == 7).await;
    assert!(read.last_error.is_empty() && !read.stale && read.error_count == 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_republishes_an_unchanged_file_as_the_same_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    write_state_file(&path, &Snapshot::default()).unwrap();
    let mirror = StateFileMirror::start(&path);
    let mut ticks = mirror.snapshots().subscribe();
    let first = timeout(Duration::from_secs(2), ticks.recv())
        .await
        .unwrap()
        .unwrap();
    let second = timeout(Duration::from_secs(2), ticks.recv())
        .await
        .unwrap()
        .unwrap();
    // Neither copied nor serialized again while the file stays the same.
    assert!(std::sync::Arc::ptr_eq(&first, &second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cutover_verdict_is_served_and_measured() {
    use pgmigrator_metrics::{Cutover, CutoverItem, CutoverKind};
    let collector = busy_collector().await;
    let server = Server::start(collector.clone(), HttpConfig::default()).await;
    let (status, _, body) = get(&server.url("/api/v1/cutover"), &[]).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = get(&server.url("/api/v1/verify"), &[]).await;
    assert_eq!(
        (status, body.contains("--verify")),
        (404, true),
        "verifying is off: {body}"
    );
    assert!(
        !get(&server.url("/metrics"), &[])
            .await
            .2
            .contains("pgmigrator_cutover")
    );

    let blocker = CutoverItem {
        kind: CutoverKind::SequenceBehind,
        table: Some("public.orders_id_seq".into()),
        detail: "source 120045, destination 1".into(),
    };
    let mut verdict = Cutover::new(time::OffsetDateTime::now_utc(), vec![blocker], vec![]);
    // A writer that claims ready with a blocker is corrected.
    verdict.ready = true;
    collector.record_cutover(verdict).await;
    collector.flush().await;
    let (status, _, body) = get(&server.url("/api/v1/cutover"), &[]).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ready"], false);
    assert_eq!(json["blockers"][0]["kind"], "sequence_behind");
    assert_eq!(json["blockers"][0]["table"], "public.orders_id_seq");

    let (_, _, metrics) = get(&server.url("/metrics"), &[]).await;
    for line in [
        "pgmigrator_cutover_ready 0",
        "pgmigrator_cutover_blockers{kind=\"sequence_behind\"} 1",
        "pgmigrator_cutover_blockers{kind=\"lag\"} 0",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    crate::tools::promtool_check(&metrics);
    server.shutdown().await;
}

/// The next text frame as JSON.
async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> serde_json::Value {
    loop {
        let message = timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Applies a delta frame to `state` the way the dashboard does.
fn apply_delta(state: &mut serde_json::Value, delta: &serde_json::Value) {
    let object = state.as_object_mut().unwrap();
    for (key, value) in delta["fields"].as_object().unwrap() {
        object.insert(key.clone(), value.clone());
    }
    for key in delta["removed"].as_array().unwrap() {
        object.remove(key.as_str().unwrap());
    }
    for (index, row) in delta["tables"].as_object().unwrap() {
        object["tables"][index.parse::<usize>().unwrap()] = row.clone();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_mode_rebuilds_every_snapshot_from_a_full_frame_and_what_changed() {
    let collector = Collector::builder().tick(Duration::from_millis(50)).build();
    collector
        .set_tables(
            (0..200)
                .map(|i| TableProgress::new("public", &format!("t{i:03}"), 1000, 1 << 20))
                .collect(),
        )
        .await;
    collector
        .add_log(LogEntry::new(LogLevel::Info, "kept"))
        .await;
    collector.flush().await;
    let server = Server::start(collector.clone(), HttpConfig::default()).await;
    let (mut plain, _) = tokio_tungstenite::connect_async(server.ws(""))
        .await
        .unwrap();
    let (mut deltas, _) = tokio_tungstenite::connect_async(server.ws("?mode=delta"))
        .await
        .unwrap();
    let first = next_json(&mut deltas).await;
    assert_eq!(first["type"], "full");
    let mut state = first["snapshot"].clone();
    let logs = next_json(&mut deltas).await;
    assert_eq!(logs["type"], "logs");
    assert_eq!(logs["entries"][0]["message"], "kept");

    // Two tables move each tick.
    let writer = {
        let collector = collector.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                collector
                    .table_started("public", &format!("t{:03}", i % 200))
                    .await;
                collector
                    .update_table_progress("public", &format!("t{:03}", (i * 7) % 200), i, i * 100)
                    .await;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let (mut delta_bytes, mut full_bytes, mut seen_deltas, mut last_seq) = (0, 0, 0, 0);
    let mut fulls_again = 0;
    for _ in 0..20 {
        let frame = next_json(&mut deltas).await;
        if frame["type"] == "logs" {
            continue;
        }
        let seq = frame["seq"].as_u64().unwrap();
        match frame["type"].as_str().unwrap() {
            "full" => {
                fulls_again += 1;
                state = frame["snapshot"].clone();
            }
            "delta" => {
                assert_eq!(
                    frame["from"].as_u64(),
                    Some(last_seq),
                    "a delta follows its frame"
                );
                apply_delta(&mut state, &frame);
                seen_deltas += 1;
                delta_bytes += frame.to_string().len();
            }
            other => panic!("{other}"),
        }
        last_seq = seq;
    }
    writer.await.unwrap();
    assert_eq!(
        fulls_again, 0,
        "one full frame, then deltas (the table list never changed)"
    );
    assert!(seen_deltas >= 15, "{seen_deltas} deltas");
    // The plain client's frame of the same tick is the same snapshot.
    let target = state["timestamp"].clone();
    let mut plain_frames = 0;
    loop {
        let snapshot = next_json(&mut plain).await;
        full_bytes += snapshot.to_string().len();
        plain_frames += 1;
        if snapshot["timestamp"] == target {
            assert_eq!(snapshot, state);
            break;
        }
    }
    // Copying tables change every tick (their rates and ETAs); the other
    // rows are not sent again.
    let (per_delta, per_plain) = (delta_bytes / seen_deltas, full_bytes / plain_frames);
    assert!(
        per_delta * 3 < per_plain,
        "{per_delta} vs {per_plain} bytes a frame"
    );

    // A client that asks for a resync gets a full frame next.
    deltas
        .send(Message::text("{\"type\":\"resync\"}"))
        .await
        .unwrap();
    // (Frames sent while the test read the other client come first.)
    let mut resynced = false;
    for _ in 0..200 {
        if next_json(&mut deltas).await["type"] == "full" {
            resynced = true;
            break;
        }
    }
    assert!(resynced);
    server.shutdown().await;
}
