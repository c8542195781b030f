//! The HTTP surfaces over HTTPS: real handshakes against a throw-away CA,
//! and certificates rotated on disk while the server runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use pgmigrator_metrics::Collector;
use pgmigrator_metrics::http::{self, HttpConfig, TlsFiles};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::pki::{Ca, Leaf};

/// A TLS connection to `addr` as `localhost`, trusting only `ca`.
async fn tls_connect(addr: std::net::SocketAddr, ca: &Ca) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The certificate the server presented on `stream`.
fn peer(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(leaf: &Leaf) -> Vec<u8> {
    CertificateDer::from_pem_slice(leaf.cert.as_bytes())
        .unwrap()
        .to_vec()
}

fn write_pair(dir: &Path, leaf: &Leaf) -> TlsFiles {
    // Written aside and renamed into place, as cert-manager and certbot do.
    let (cert, key) = leaf.write(dir, "next", 0o600);
    std::fs::rename(&cert, dir.join("server.crt")).unwrap();
    std::fs::rename(&key, dir.join("server.key")).unwrap();
    TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_serve_verified_clients_and_plain_http_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let files = write_pair(dir.path(), &ca.issue(&["localhost"], "localhost"));
    let (addr, stop, server) = serve_tls(files).await;

    // REST over HTTPS.
    let stream = tls_connect(addr, &ca).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::get("/api/v1/status")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"{\"timestamp\""));

    // The WebSocket over wss://.
    let stream = tls_connect(addr, &ca).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/api/v1/ws", stream)
        .await
        .unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(frame.to_text().unwrap().starts_with("{\"timestamp\""));

    // Plain HTTP to the same port gets no answer.
    let plain = crate::http::try_get(&format!("http://{addr}/healthz")).await;
    assert!(plain.is_none(), "{plain:?}");

    // A client that does not trust the CA fails the handshake.
    assert!(tls_connect(addr, &Ca::new("other")).await.is_err());

    drop(stop);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_reaches_new_connections_and_spares_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let first = ca.issue(&["localhost"], "first");
    let (addr, _stop, _server) = serve_tls(write_pair(dir.path(), &first)).await;

    let open = tls_connect(addr, &ca).await.unwrap();
    assert_eq!(peer(&open), der(&first));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(open))
        .await
        .unwrap();
    tokio::spawn(connection);

    let second = ca.issue(&["localhost"], "second");
    write_pair(dir.path(), &second);
    serves_within(addr, &ca, &[der(&first)], &der(&second)).await;

    // A half-written pair (a key that does not match) keeps the last good
    // certificate in service until the next good pair.
    std::fs::write(dir.path().join("server.key"), first.key.as_bytes()).unwrap();
    for _ in 0..5 {
        let during = tls_connect(addr, &ca).await.unwrap();
        assert_eq!(peer(&during), der(&second));
    }
    let third = ca.issue(&["localhost"], "third");
    write_pair(dir.path(), &third);
    serves_within(addr, &ca, &[der(&second)], &der(&third)).await;

    // The connection opened before the rotation still serves requests.
    let request = hyper::Request::get("/healthz")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_starts_the_handshake_is_closed_at_the_header_deadline() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let files = write_pair(dir.path(), &ca.issue(&["localhost"], "localhost"));
    let config = HttpConfig {
        tls: Some(files),
        header_read_timeout: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = tokio::spawn(http::serve(
        listener,
        Collector::new(),
        config,
        std::future::pending(),
    ));
    // Connected, silent: no ClientHello ever comes.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "still open after 3 s: {closed:?}"
    );
}

/// A server on loopback speaking only HTTPS with `files`, until `stop`
/// is sent (or dropped).
async fn serve_tls(
    files: TlsFiles,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let config = HttpConfig {
        tls: Some(files),
        ..HttpConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, Collector::new(), config, async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

/// New connections get `wanted` within 10 s, and every handshake until
/// then succeeds with one of `before`: a reload never leaves a gap.
async fn serves_within(addr: std::net::SocketAddr, ca: &Ca, before: &[Vec<u8>], wanted: &[u8]) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stream = tls_connect(addr, ca)
            .await
            .expect("every handshake succeeds");
        let served = peer(&stream);
        if served == wanted {
            return;
        }
        assert!(before.contains(&served), "an unexpected certificate");
        assert!(
            tokio::time::Instant::now() < deadline,
            "never served the new certificate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_swapped_for_a_fifo_or_a_device_never_hangs_or_fills_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let first = ca.issue(&["localhost"], "first");
    let files = write_pair(dir.path(), &first);
    let (addr, stop, server) = serve_tls(files.clone()).await;
    assert_eq!(peer(&tls_connect(addr, &ca).await.unwrap()), der(&first));

    // A FIFO nobody writes, then a link to an endless device: each is
    // refused, and handshakes go on with the certificate already read.
    let fifo = dir.path().join("fifo");
    crate::make_fifo(&fifo);
    for target in [fifo.as_path(), Path::new("/dev/zero")] {
        std::fs::remove_file(&files.cert).unwrap();
        std::os::unix::fs::symlink(target, &files.cert).unwrap();
        for _ in 0..5 {
            let stream =
                tokio::time::timeout(std::time::Duration::from_secs(5), tls_connect(addr, &ca))
                    .await
                    .expect("a handshake never waits on what the certificate became")
                    .unwrap();
            assert_eq!(peer(&stream), der(&first), "{}", target.display());
        }
    }
    // A good pair again is served, and the server stops when told.
    std::fs::remove_file(&files.cert).unwrap();
    let second = ca.issue(&["localhost"], "second");
    write_pair(dir.path(), &second);
    serves_within(addr, &ca, &[der(&first)], &der(&second)).await;
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}
