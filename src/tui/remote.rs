//! Following a server over its WebSocket, with backoff, and its log lines
//! over HTTP.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper::body::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;

use super::{Feed, Fleet, Link};
use crate::backoff::Backoff;
use crate::client::{self, ConnectorError, Io, Url};
use crate::history::HistoryPoint;
use crate::model::{LogEntry, MigrationSummary, Snapshot};

/// Why a server cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteError {
    /// The API address is not `http://HOST:PORT` or `https://HOST:PORT`.
    Address(String),
    /// The CA certificate to trust cannot be used.
    CaCert {
        /// Its path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Address(addr) => write!(
                f,
                "{addr:?} is not an API address: expected http://HOST:PORT or https://HOST:PORT"
            ),
            RemoteError::CaCert { path, reason } => {
                write!(f, "--ca-cert {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for RemoteError {}

/// Where the server is and how to reach it.
#[derive(Clone)]
struct Endpoint {
    url: Url,
    /// For `https://`: trusting the CA file, or the system's roots.
    tls: Option<TlsConnector>,
}

impl Endpoint {
    /// `http://host:port` or `https://host:port`, nothing after but a `/`;
    /// HTTPS verifies against `ca_cert`, else the system's trusted roots.
    fn parse(api: &str, ca_cert: Option<&Path>) -> Result<Endpoint, RemoteError> {
        let invalid = || RemoteError::Address(api.chars().take(200).collect());
        let url = Url::parse(api).map_err(|_| invalid())?;
        if url.path() != "/" || api.contains(['@', '?', '#']) {
            return Err(invalid());
        }
        let tls = if url.is_https() {
            Some(connector(ca_cert)?)
        } else {
            None
        };
        Ok(Endpoint { url, tls })
    }

    /// The WebSocket under `base` (`/api/v1/`, or a migration's).
    fn ws_url(&self, base: &str, query: &str) -> String {
        let scheme = if self.url.is_https() { "wss" } else { "ws" };
        format!("{scheme}://{}{base}ws{query}", self.url.authority())
    }

    async fn connect(&self) -> io::Result<Pin<Box<dyn Io>>> {
        client::connect(&self.url, self.tls.as_ref()).await
    }
}

/// A TLS connector trusting `ca_cert`, or the system's roots.
fn connector(ca_cert: Option<&Path>) -> Result<TlsConnector, RemoteError> {
    crate::client::connector(ca_cert).map_err(|err| match err {
        ConnectorError::CaCert(reason) => RemoteError::CaCert {
            path: ca_cert.map(Path::to_owned).unwrap_or_default(),
            reason,
        },
        ConnectorError::Config(reason) => RemoteError::Address(reason),
    })
}

pub(super) fn connect(
    api: &str,
    token: Option<String>,
    ca_cert: Option<&Path>,
) -> Result<Feed, RemoteError> {
    Ok(follow(
        Endpoint::parse(api, ca_cert)?,
        token,
        "/api/v1/".to_owned(),
    ))
}

/// The migrations of a server, listed every 2 s; each opened under
/// `/api/v1/migrations/{id}/`.
pub(super) fn fleet(
    api: &str,
    token: Option<String>,
    ca_cert: Option<&Path>,
) -> Result<Fleet, RemoteError> {
    let endpoint = Endpoint::parse(api, ca_cert)?;
    let (tx, migrations) = watch::channel(Arc::new(Vec::new()));
    tokio::spawn(list_migrations(endpoint.clone(), token.clone(), tx));
    Ok(Fleet {
        migrations,
        open: Box::new(move |id| {
            let base = format!("/api/v1/migrations/{}/", percent_encode(id));
            Some(follow(endpoint.clone(), token.clone(), base))
        }),
    })
}

async fn list_migrations(
    endpoint: Endpoint,
    token: Option<String>,
    migrations: watch::Sender<Arc<Vec<MigrationSummary>>>,
) {
    while !migrations.is_closed() {
        let fetch =
            get_json::<Vec<MigrationSummary>>(&endpoint, token.as_deref(), "/api/v1/migrations");
        if let Ok(Ok(list)) = tokio::time::timeout(Duration::from_secs(5), fetch).await {
            migrations.send_replace(Arc::new(list));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// One migration's snapshots (the WebSocket under `base`, in delta mode)
/// and its history.
fn follow(endpoint: Endpoint, token: Option<String>, base: String) -> Feed {
    let (snapshots_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let (link_tx, link) = watch::channel(Link::Connecting);
    let (logs_tx, logs) = watch::channel(Arc::new(Vec::new()));
    let (history_tx, history) = watch::channel(Arc::new(Vec::new()));
    let url = endpoint.ws_url(&base, "?mode=delta");
    tokio::spawn(load_history(
        endpoint.clone(),
        token.clone(),
        base,
        history_tx,
    ));
    tokio::spawn(stream_snapshots(
        endpoint,
        ws_request(&url, token.as_deref()),
        Outputs {
            snapshots: snapshots_tx,
            link: link_tx,
            logs: logs_tx,
        },
    ));
    Feed {
        snapshots,
        link,
        logs,
        history,
    }
}

/// Where a remote feed's frames go.
struct Outputs {
    snapshots: watch::Sender<Arc<Snapshot>>,
    link: watch::Sender<Link>,
    logs: watch::Sender<Arc<Vec<LogEntry>>>,
}

/// The WebSocket request to `url`, with the token in an `Authorization`
/// header: the address carries none, so it is in no server's log.
fn ws_request(url: &str, token: Option<&str>) -> Result<Request, String> {
    let mut request = url.into_client_request().map_err(|err| err.to_string())?;
    if let Some(token) = token {
        let value = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| "the token is not a valid header value".to_owned())?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    Ok(request)
}

/// Connects in delta mode, rebuilds every snapshot from the frames,
/// forwards it and the log, and reconnects with backoff; ends when nobody
/// follows any more.
async fn stream_snapshots(endpoint: Endpoint, request: Result<Request, String>, out: Outputs) {
    let Outputs {
        snapshots,
        link,
        logs,
    } = out;
    let mut backoff = Backoff::default();
    while !snapshots.is_closed() {
        let connected = match endpoint.connect().await {
            // A certificate that does not verify shows here, by name.
            Err(err) => Err(err.to_string()),
            Ok(stream) => match &request {
                Ok(request) => tokio_tungstenite::client_async(request.clone(), stream)
                    .await
                    .map_err(|err| match err {
                        tokio_tungstenite::tungstenite::Error::Http(response) => {
                            format!("HTTP {}", response.status())
                        }
                        err => err.to_string(),
                    }),
                Err(err) => Err(err.clone()),
            },
        };
        let reason = match connected {
            Ok((mut ws, _)) => {
                link.send_replace(Link::Live);
                backoff.reset();
                let mut frames = FrameState::default();
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(text))) => match frames.apply(&text) {
                            Ok(Applied::Snapshot(snapshot)) => {
                                snapshots.send_replace(snapshot);
                            }
                            Ok(Applied::Logs(entries)) => {
                                logs.send_replace(Arc::new(entries));
                            }
                            Ok(Applied::Resync) => {
                                let resync = Message::text("{\"type\":\"resync\"}");
                                if ws.send(resync).await.is_err() {
                                    break "server closed".to_owned();
                                }
                            }
                            Err(err) => break format!("bad frame: {err}"),
                        },
                        Some(Ok(Message::Close(_))) | None => break "server closed".to_owned(),
                        Some(Ok(_)) => {}
                        Some(Err(err)) => break err.to_string(),
                    }
                    if snapshots.is_closed() {
                        return;
                    }
                }
            }
            Err(reason) => reason,
        };
        let retry_in = backoff.next_wait();
        link.send_replace(Link::Reconnecting { retry_in, reason });
        tokio::time::sleep(retry_in).await;
    }
}

/// What a frame brought.
enum Applied {
    Snapshot(Arc<Snapshot>),
    Logs(Vec<LogEntry>),
    /// A delta that does not follow the last frame: ask for a full one.
    Resync,
}

/// The snapshot being rebuilt from delta-mode frames.
#[derive(Default)]
struct FrameState {
    /// The last frame applied, and the snapshot's top-level fields but
    /// its tables, as JSON.
    last: Option<(
        u64,
        serde_json::Map<String, serde_json::Value>,
        Arc<Snapshot>,
    )>,
}

impl FrameState {
    fn apply(&mut self, text: &str) -> Result<Applied, String> {
        use serde_json::Value;
        #[derive(serde::Deserialize)]
        #[serde(tag = "type", rename_all = "lowercase")]
        enum Frame {
            Full {
                seq: u64,
                snapshot: serde_json::Map<String, Value>,
            },
            Delta {
                seq: u64,
                from: u64,
                fields: serde_json::Map<String, Value>,
                removed: Vec<String>,
                tables: serde_json::Map<String, Value>,
            },
            Logs {
                entries: Vec<LogEntry>,
            },
        }
        let frame: Frame = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let (seq, head, snapshot) = match frame {
            Frame::Logs { entries } => return Ok(Applied::Logs(entries)),
            Frame::Full { seq, mut snapshot } => {
                let parsed: Snapshot = serde_json::from_value(Value::Object(snapshot.clone()))
                    .map_err(|e| e.to_string())?;
                snapshot.remove("tables");
                (seq, snapshot, parsed)
            }
            Frame::Delta {
                seq,
                from,
                fields,
                removed,
                tables,
            } => {
                let Some((last, mut head, previous)) = self.last.take() else {
                    return Ok(Applied::Resync);
                };
                if from != last {
                    return Ok(Applied::Resync);
                }
                head.extend(fields);
                for key in removed {
                    head.remove(&key);
                }
                let mut next: Snapshot = serde_json::from_value(Value::Object(head.clone()))
                    .map_err(|e| e.to_string())?;
                next.tables = previous.tables.clone();
                for (index, row) in tables {
                    let row = serde_json::from_value(row).map_err(|e| e.to_string())?;
                    let slot = index.parse::<usize>().ok();
                    match slot.and_then(|i| next.tables.get_mut(i)) {
                        Some(slot) => *slot = row,
                        None => return Ok(Applied::Resync),
                    }
                }
                (seq, head, next)
            }
        };
        let snapshot = Arc::new(snapshot);
        self.last = Some((seq, head, Arc::clone(&snapshot)));
        Ok(Applied::Snapshot(snapshot))
    }
}

/// Fetches the server's recent history once (trying every 2 s until it
/// answers), for sparklines that are full at once.
async fn load_history(
    endpoint: Endpoint,
    token: Option<String>,
    base: String,
    history: watch::Sender<Arc<Vec<HistoryPoint>>>,
) {
    #[derive(serde::Deserialize)]
    struct Points {
        points: Vec<HistoryPoint>,
    }
    let path = format!(
        "{base}history?since={}s&step={}s",
        super::SPARKLINE_STEP.as_secs() * super::HISTORY as u64,
        super::SPARKLINE_STEP.as_secs()
    );
    while !history.is_closed() {
        let fetch = get_json::<Points>(&endpoint, token.as_deref(), &path);
        if let Ok(Ok(loaded)) = tokio::time::timeout(Duration::from_secs(5), fetch).await {
            history.send_replace(Arc::new(loaded.points));
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Largest response read.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// One GET of `path` as JSON, on a connection of its own.
async fn get_json<T: serde::de::DeserializeOwned>(
    endpoint: &Endpoint,
    token: Option<&str>,
    path: &str,
) -> Result<T, String> {
    let mut request =
        hyper::Request::get(path).header(hyper::header::HOST, endpoint.url.host_header());
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let client::Answer { status, body, .. } = client::send(
        &endpoint.url,
        endpoint.tls.as_ref(),
        request,
        MAX_RESPONSE_BYTES,
    )
    .await?;
    if status != hyper::StatusCode::OK {
        return Err(format!("HTTP {status}"));
    }
    serde_json::from_slice(&body?).map_err(|e| e.to_string())
}

/// All but the unreserved characters of RFC 3986.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn percent_encode(text: &str) -> String {
    utf8_percent_encode(text, ESCAPED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_frames_rebuild_the_snapshot_and_a_gap_asks_for_a_full_one() {
        let mut table = crate::model::TableProgress::new("public", "orders", 10, 100);
        let snapshot = Snapshot {
            tables: vec![table.clone()],
            ..Snapshot::default()
        };
        let full = format!(
            "{{\"type\":\"full\",\"seq\":4,\"snapshot\":{}}}",
            serde_json::to_string(&snapshot).unwrap()
        );
        let mut frames = FrameState::default();
        assert!(matches!(frames.apply(&full), Ok(Applied::Snapshot(_))));
        table.rows_copied = 7;
        let delta = serde_json::json!({
            "type": "delta", "seq": 5, "from": 4, "fields": {"lag_bytes": 42}, "removed": [],
            "tables": {"0": table},
        });
        let applied = frames.apply(&delta.to_string());
        let Ok(Applied::Snapshot(next)) = applied else {
            panic!("a delta that follows applies: {:?}", applied.err());
        };
        assert_eq!((next.lag_bytes, next.tables[0].rows_copied), (42, 7));
        let gap = serde_json::json!({
            "type": "delta", "seq": 9, "from": 8, "fields": {}, "removed": [], "tables": {},
        });
        assert!(matches!(
            frames.apply(&gap.to_string()),
            Ok(Applied::Resync)
        ));
        assert!(frames.apply("{\"type\":\"nonsense\"}").is_err());
    }

    #[test]
    fn api_addresses_are_http_or_https_host_and_port() {
        let plain = Endpoint::parse("http://127.0.0.1:7654/", None).unwrap();
        assert_eq!(plain.url.authority(), "127.0.0.1:7654");
        assert_eq!(
            plain.ws_url("/api/v1/", "?token=x"),
            "ws://127.0.0.1:7654/api/v1/ws?token=x"
        );
        let secure = Endpoint::parse("https://metrics.internal:7654", None).unwrap();
        assert_eq!(
            secure.ws_url("/api/v1/", ""),
            "wss://metrics.internal:7654/api/v1/ws"
        );
        assert_eq!(
            secure.ws_url("/api/v1/migrations/shop/", ""),
            "wss://metrics.internal:7654/api/v1/migrations/shop/ws"
        );
        for bad in ["ftp://x:1", "http://x:1/api", "127.0.0.1:7654", "http://"] {
            let err = Endpoint::parse(bad, None).err().unwrap();
            assert!(
                err.to_string().contains("expected http://HOST:PORT"),
                "{bad}"
            );
        }
        let missing = Endpoint::parse("https://x:1", Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .unwrap();
        assert!(matches!(missing, RemoteError::CaCert { .. }), "{missing}");
    }

    #[test]
    fn ids_are_percent_encoded_in_the_path() {
        assert_eq!(percent_encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(percent_encode("Az09-_.~"), "Az09-_.~");
    }

    #[test]
    fn the_websocket_carries_the_token_in_a_header_not_the_address() {
        let request =
            ws_request("ws://127.0.0.1:7654/api/v1/ws?mode=delta", Some("s3cret")).unwrap();
        assert_eq!(request.uri().query(), Some("mode=delta"));
        assert_eq!(request.headers()[AUTHORIZATION], "Bearer s3cret");
        let err = ws_request("ws://127.0.0.1:7654/api/v1/ws", Some("bad\nline")).unwrap_err();
        assert!(err.contains("not a valid header"), "{err}");
        assert!(!err.contains("bad"), "{err}");
    }
}
