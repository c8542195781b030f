//! One HTTP(S) POST of a JSON body, for webhooks: a connection of its own,
//! the system's trusted roots for HTTPS, a deadline on the whole exchange.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The largest response body read (and thrown away).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Where a URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    https: bool,
    /// `host:port`, to connect to.
    address: String,
    /// The host, for TLS and the `Host` header.
    host: String,
    port: u16,
    /// Path and query.
    path: String,
}

impl Target {
    /// `http(s)://[user@]host[:port][/path][?query]`; the error never
    /// quotes the URL, whose path is often its secret.
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("the url does not start with http:// or https://".to_owned());
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = authority.rsplit('@').next().unwrap_or(authority);
        let path = tail.split('#').next().unwrap_or("");
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        let (host, port) = match authority.strip_prefix('[').and_then(|a| a.find(']')) {
            // `[::1]:9000`: the brackets are part of the host.
            Some(end) => (
                &authority[..end + 2],
                authority[end + 2..].strip_prefix(':'),
            ),
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(port) => port
                .parse::<u16>()
                .map_err(|_| "the url's port is not a number".to_owned())?,
        };
        if host.is_empty() || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err("the url has no host, or characters a URL cannot hold".to_owned());
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Target {
            https,
            address: format!("{host}:{port}"),
            host: bare.to_owned(),
            port,
            path,
        })
    }

    /// The `Host` header: the host, and its port unless it is the
    /// scheme's default (RFC 9110, 7.2).
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `hooks.example.com:443`, for messages.
    pub(crate) fn shown(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// POSTs `body` as JSON to `target` within `deadline`; `Ok` for a 2xx
/// answer.
pub(crate) async fn post_json(
    target: &Target,
    body: Vec<u8>,
    tls: &TlsConnector,
    deadline: Duration,
) -> Result<(), String> {
    tokio::time::timeout(deadline, exchange(target, body, tls))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", deadline.as_secs())))
}

async fn exchange(target: &Target, body: Vec<u8>, tls: &TlsConnector) -> Result<(), String> {
    let tcp = TcpStream::connect(&target.address)
        .await
        .map_err(|err| format!("connecting: {err}"))?;
    let request = hyper::Request::post(&target.path)
        .header(hyper::header::HOST, target.host_header())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, "pgmigrator")
        .body(Full::new(Bytes::from(body)))
        .map_err(|err| err.to_string())?;
    let status = if target.https {
        let name = ServerName::try_from(target.host.clone()).map_err(|err| err.to_string())?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|err| format!("TLS: {err}"))?;
        send(TokioIo::new(stream), request).await?
    } else {
        send(TokioIo::new(tcp), request).await?
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

async fn send<T>(
    io: TokioIo<T>,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::StatusCode, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|err| err.to_string())?;
    let connection = tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status();
    // Read (a bounded part of) the answer, so the receiver sees it taken.
    let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await;
    connection.abort();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_keeps_a_port_that_is_not_the_default() {
        let host = |url: &str| Target::parse(url).unwrap().host_header();
        assert_eq!(host("http://127.0.0.1:8080/hook"), "127.0.0.1:8080");
        assert_eq!(host("https://hooks.example.com/x"), "hooks.example.com");
        assert_eq!(host("https://hooks.example.com:443/x"), "hooks.example.com");
        assert_eq!(
            host("http://hooks.example.com:443/x"),
            "hooks.example.com:443"
        );
        assert_eq!(host("http://[::1]/x"), "[::1]");
    }

    #[test]
    fn urls_give_host_port_and_path() {
        let t = Target::parse("https://hooks.example.com/services/T/B/X?a=1").unwrap();
        assert_eq!(
            (
                t.https,
                t.address.as_str(),
                t.host.as_str(),
                t.path.as_str()
            ),
            (
                true,
                "hooks.example.com:443",
                "hooks.example.com",
                "/services/T/B/X?a=1"
            )
        );
        let t = Target::parse("http://user:pw@127.0.0.1:8080").unwrap();
        assert_eq!(
            (t.address.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/")
        );
        let t = Target::parse("http://[::1]:9000/hook").unwrap();
        assert_eq!((t.address.as_str(), t.host.as_str()), ("[::1]:9000", "::1"));
        assert_eq!(t.host_header(), "[::1]:9000");
        for bad in ["ftp://x", "https://", "http://h/a b", "http://h/\x1b"] {
            let err = Target::parse(bad).unwrap_err();
            assert!(!err.contains(bad), "{err}");
        }
    }
}
