//! One HTTP(S) POST of a JSON body, for webhooks: a connection of its own,
//! the system's trusted roots for HTTPS, a deadline on the whole exchange.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use tokio_rustls::TlsConnector;

use crate::client::{self, Url};

/// The largest response body read (and thrown away).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// POSTs `body` as JSON to `target` within `deadline`; `Ok` for a 2xx
/// answer.
pub(crate) async fn post_json(
    target: &Url,
    body: Vec<u8>,
    tls: &TlsConnector,
    deadline: Duration,
) -> Result<(), String> {
    let request = hyper::Request::post(target.path())
        .header(hyper::header::HOST, target.host_header())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "pgmigrator")
        .body(Full::new(Bytes::from(body)))
        .map_err(|err| err.to_string())?;
    let exchange = client::send(target, Some(tls), request, MAX_RESPONSE_BYTES);
    let status = tokio::time::timeout(deadline, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", deadline.as_secs())))?
        .status;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}
