//! The one HTTP/1.1 client of this crate, shared by the alert notifiers
//! (webhook POSTs) and the remote terminal dashboard (GETs and its
//! WebSocket): URLs parsed by `http::Uri` (through hyper), a connection per
//! exchange, plain or TLS (rustls with ring, trusting a CA file or the
//! system's roots), and a bounded answer.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Bytes};
use hyper::{HeaderMap, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where an `http://` or `https://` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    https: bool,
    /// The host as written in a URL: an IPv6 address keeps its brackets.
    host: String,
    port: u16,
    /// Path and query (`/` when there is none); never a fragment.
    path: String,
}

impl Url {
    /// `http(s)://[user@]host[:port][/path][?query][#fragment]`; the error
    /// never quotes the URL, whose path or user part is often its secret.
    pub(crate) fn parse(url: &str) -> Result<Url, String> {
        // `http::Uri` has no fragment; a URL may.
        let url = url.split('#').next().unwrap_or_default();
        let uri: Uri = url
            .parse()
            .map_err(|_| "the url is not a valid URL (characters a URL cannot hold?)".to_owned())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the url does not start with http:// or https://".to_owned()),
        };
        let host = match uri.host() {
            Some(host) if !host.is_empty() => host.to_owned(),
            _ => return Err("the url has no host".to_owned()),
        };
        let port = match uri
            .authority()
            .map(|a| a.as_str().rsplit_once(']').map_or(a.as_str(), |(_, p)| p))
        {
            // `Uri` reads a port that is not a number as none at all.
            Some(after)
                if after
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_err()) =>
            {
                return Err("the url's port is not a number".to_owned());
            }
            _ => uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        Ok(Url {
            https,
            host,
            port,
            path,
        })
    }

    /// Whether the URL is `https://`.
    #[cfg(any(feature = "tui", feature = "otlp"))]
    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    /// Path and query.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// `host:port`, to connect to (and for messages).
    pub(crate) fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The `Host` header: the host, and its port unless it is the
    /// scheme's default (RFC 9110, 7.2).
    pub(crate) fn host_header(&self) -> String {
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            self.authority()
        }
    }

    /// The name TLS verifies: the host without an IPv6 address's brackets.
    fn server_name(&self) -> io::Result<ServerName<'static>> {
        let bare = self.host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(bare.to_owned())
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))
    }
}

/// A byte stream to a server, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to `url`'s server: TLS through `tls` for `https://`.
pub(crate) async fn connect(url: &Url, tls: Option<&TlsConnector>) -> io::Result<Pin<Box<dyn Io>>> {
    let tcp = TcpStream::connect(url.authority()).await?;
    match (url.https, tls) {
        (false, _) => Ok(Box::pin(tcp)),
        (true, Some(tls)) => match tls.connect(url.server_name()?, tcp).await {
            Ok(stream) => Ok(Box::pin(stream)),
            Err(err) => Err(io::Error::new(err.kind(), format!("TLS: {err}"))),
        },
        (true, None) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "https:// without a TLS configuration",
        )),
    }
}

/// What a server answered.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    /// Read by the OTLP exporter (`Retry-After`).
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) headers: HeaderMap,
    /// The body when it fits in the bytes allowed (what does not is not
    /// read); read by the remote dashboard.
    #[cfg_attr(not(feature = "tui"), allow(dead_code))]
    pub(crate) body: Result<Bytes, String>,
}

/// Sends `request` over a connection of its own to `url`'s server, reading
/// at most `max_body` bytes of the answer's body.
pub(crate) async fn send<B>(
    url: &Url,
    tls: Option<&TlsConnector>,
    request: Request<B>,
    max_body: usize,
) -> Result<Answer, String>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = connect(url, tls)
        .await
        .map_err(|err| format!("connecting: {err}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| err.to_string())?;
    let connection = tokio::spawn(connection);
    let answer = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| err.to_string())?;
        let (status, headers) = (response.status(), response.headers().clone());
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|err| err.to_string());
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
    .await;
    connection.abort();
    answer
}

/// Why a connector cannot be built.
#[derive(Debug)]
pub(crate) enum ConnectorError {
    /// The CA file cannot be used.
    CaCert(String),
    /// rustls refused the configuration.
    Config(String),
}

/// A TLS connector trusting `ca_cert`, or the system's roots.
pub(crate) fn connector(ca_cert: Option<&Path>) -> Result<TlsConnector, ConnectorError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            let bad = |reason: String| ConnectorError::CaCert(reason);
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| bad(err.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no certificate in the file".to_owned()));
            }
            for cert in certs {
                roots.add(cert).map_err(|err| bad(err.to_string()))?;
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| ConnectorError::Config(err.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_keeps_a_port_that_is_not_the_default() {
        let host = |url: &str| Url::parse(url).unwrap().host_header();
        assert_eq!(host("http://127.0.0.1:8080/hook"), "127.0.0.1:8080");
        assert_eq!(host("https://hooks.example.com/x"), "hooks.example.com");
        assert_eq!(host("https://hooks.example.com:443/x"), "hooks.example.com");
        assert_eq!(
            host("http://hooks.example.com:443/x"),
            "hooks.example.com:443"
        );
        assert_eq!(host("http://[::1]/x"), "[::1]");
        assert_eq!(host("http://[::1]:9000/x"), "[::1]:9000");
    }

    #[test]
    fn urls_give_host_port_and_path_without_user_or_fragment() {
        let url = Url::parse("https://hooks.example.com/services/T/B/X?a=1#top").unwrap();
        assert!(url.https);
        assert_eq!(url.authority(), "hooks.example.com:443");
        assert_eq!(url.path(), "/services/T/B/X?a=1");
        let url = Url::parse("http://user:pw@127.0.0.1:8080").unwrap();
        assert_eq!(
            (url.authority().as_str(), url.path()),
            ("127.0.0.1:8080", "/")
        );
        let url = Url::parse("http://[::1]:9000/hook").unwrap();
        assert_eq!(url.authority(), "[::1]:9000");
        assert_eq!(url.server_name().unwrap().to_str(), "::1");
    }

    #[test]
    fn a_bad_url_is_refused_without_being_quoted() {
        for bad in [
            "ftp://x",
            "https://",
            "http://h/a b",
            "http://h/\x1b",
            "http://h:port/x",
            "http://h:99999/x",
            "hooks.example.com/x",
            "",
        ] {
            let err = Url::parse(bad).unwrap_err();
            assert!(bad.is_empty() || !err.contains(bad), "{bad:?}: {err}");
        }
    }
}
