//! Following a server over its WebSocket, with backoff, and its log lines
//! over HTTP.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::{Feed, Link};
use crate::backoff::Backoff;
use crate::model::{LogEntry, Snapshot};

/// An API address that is not `http://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiAddrError {
    addr: String,
}

impl fmt::Display for ApiAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an API address: expected http://HOST:PORT",
            self.addr
        )
    }
}

impl std::error::Error for ApiAddrError {}

/// `http://host:port` → `host:port`.
fn authority(api: &str) -> Result<String, ApiAddrError> {
    let invalid = || ApiAddrError {
        addr: api.chars().take(200).collect(),
    };
    let authority = api
        .strip_prefix("http://")
        .ok_or_else(invalid)?
        .trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(invalid());
    }
    Ok(authority.to_owned())
}

pub(super) fn connect(api: &str, token: Option<String>) -> Result<Feed, ApiAddrError> {
    let authority = authority(api)?;
    let query = token
        .as_deref()
        .map(|t| format!("?token={}", percent_encode(t)))
        .unwrap_or_default();
    let url = format!("ws://{authority}/api/v1/ws{query}");
    let (snapshots_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let (link_tx, link) = watch::channel(Link::Connecting);
    let (logs_tx, logs) = watch::channel(Arc::new(Vec::new()));
    tokio::spawn(stream_snapshots(url, snapshots_tx, link_tx));
    tokio::spawn(poll_logs(authority, token, logs_tx));
    Ok(Feed {
        snapshots,
        link,
        logs,
    })
}

/// Connects, forwards every snapshot, and reconnects with backoff; ends
/// when nobody follows any more.
async fn stream_snapshots(
    url: String,
    snapshots: watch::Sender<Arc<Snapshot>>,
    link: watch::Sender<Link>,
) {
    let mut backoff = Backoff::default();
    while !snapshots.is_closed() {
        let reason = match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((mut ws, _)) => {
                link.send_replace(Link::Live);
                backoff.reset();
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                            Ok(snapshot) => {
                                snapshots.send_replace(Arc::new(snapshot));
                            }
                            Err(err) => break format!("bad snapshot: {err}"),
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
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                format!("HTTP {}", response.status())
            }
            Err(err) => err.to_string(),
        };
        let retry_in = backoff.next_wait();
        link.send_replace(Link::Reconnecting { retry_in, reason });
        tokio::time::sleep(retry_in).await;
    }
}

/// Fetches `/api/v1/logs` every 2 s while anyone follows.
async fn poll_logs(
    authority: String,
    token: Option<String>,
    logs: watch::Sender<Arc<Vec<LogEntry>>>,
) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut ticks = tokio::time::interval(Duration::from_secs(2));
    while !logs.is_closed() {
        ticks.tick().await;
        let fetch = get_logs(&client, &authority, token.as_deref());
        if let Ok(Ok(entries)) = tokio::time::timeout(Duration::from_secs(5), fetch).await {
            logs.send_replace(Arc::new(entries));
        }
    }
}

/// Largest log response read.
const MAX_LOGS_BYTES: usize = 16 * 1024 * 1024;

/// One GET of the server's log ring.
async fn get_logs(
    client: &Client<HttpConnector, Empty<Bytes>>,
    authority: &str,
    token: Option<&str>,
) -> Result<Vec<LogEntry>, String> {
    let mut request = hyper::Request::get(format!("http://{authority}/api/v1/logs"));
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    if response.status() != hyper::StatusCode::OK {
        return Err(format!("HTTP {}", response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_LOGS_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| e.to_string())
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
    fn api_addresses_must_be_plain_http_host_and_port() {
        assert_eq!(
            authority("http://127.0.0.1:7654/").unwrap(),
            "127.0.0.1:7654"
        );
        assert!(
            authority("https://x:1")
                .unwrap_err()
                .to_string()
                .contains("http://HOST:PORT")
        );
        assert!(authority("http://x:1/api").is_err());
        assert!(authority("127.0.0.1:7654").is_err());
    }

    #[test]
    fn tokens_are_percent_encoded_in_the_query() {
        assert_eq!(percent_encode("a b&c=d"), "a%20b%26c%3Dd");
        assert_eq!(percent_encode("Az09-_.~"), "Az09-_.~");
    }
}
