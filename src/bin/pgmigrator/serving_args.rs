//! The flags of the commands that serve (`demo`, `serve`, `monitor`): the
//! HTTP surfaces, the OTLP export and alerting, and the server
//! configuration they make.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use pgmigrator_metrics::http::metrics::DEFAULT_METRICS_TABLES;
use pgmigrator_metrics::http::{DEFAULT_LISTEN, HttpConfig, TOKEN_ENV, TlsFiles};

#[derive(Debug, Args)]
pub(crate) struct HttpArgs {
    /// Address to listen on; a non-loopback address needs a token.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub(crate) listen: SocketAddr,
    /// Token required by the API, the dashboard and the metrics (16
    /// characters at least on a non-loopback address).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Read the token from this file instead, so it is not in the process
    /// list (a trailing newline is ignored).
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    pub(crate) token_file: Option<PathBuf>,
    /// Another origin allowed to open the WebSocket (repeatable); its host
    /// name is also allowed in the Host header.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub(crate) allow_origins: Vec<String>,
    /// A host name the server may be reached under besides IP addresses
    /// and localhost (repeatable), e.g. its DNS name behind a proxy.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub(crate) allow_hosts: Vec<String>,
    /// Serve HTTPS only, with this certificate chain (PEM); it is read again
    /// when it changes on disk.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Per-table series in /metrics and over OTLP for at most N tables of
    /// each migration, the most interesting: stalled, differing, copying,
    /// most left to copy, busiest (migration totals stay exact)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_METRICS_TABLES)]
    pub(crate) metrics_tables: usize,
}

/// OpenTelemetry export, for the commands that serve.
#[derive(Debug, Args)]
pub(crate) struct OtlpArgs {
    /// Push every metric over OTLP/HTTP (protobuf) to this base URL
    /// (`/v1/metrics` is added); OTEL_EXPORTER_OTLP_ENDPOINT and the other
    /// OTEL_* variables are honoured too
    #[arg(long = "otlp-endpoint", value_name = "URL")]
    pub(crate) endpoint: Option<String>,
    /// Trust this CA (PEM) for an https:// OTLP endpoint instead of the
    /// system's roots
    #[arg(long = "otlp-ca-cert", value_name = "PATH")]
    pub(crate) ca_cert: Option<PathBuf>,
}

/// Alerting, for the commands that serve.
#[derive(Debug, Args)]
pub(crate) struct AlertArgs {
    /// Alert rules and notifiers (TOML); evaluated on every snapshot.
    #[arg(long = "alerts", value_name = "PATH", env = "PGMIGRATOR_ALERTS")]
    pub(crate) file: Option<PathBuf>,
}

impl HttpArgs {
    /// The server's settings from these flags, its connection caps fitted
    /// to the open-file limit.
    pub(crate) fn config(&self) -> Result<HttpConfig, String> {
        let token = match &self.token_file {
            Some(path) => Some(read_token_file(path)?),
            None => self.token.clone().filter(|t| !t.is_empty()),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        };
        Ok(HttpConfig {
            token,
            allowed_origins: self.allow_origins.clone(),
            allowed_hosts: self.allow_hosts.clone(),
            tls,
            metrics_tables: Some(self.metrics_tables),
            ..HttpConfig::default()
        }
        .within_fd_limit())
    }
}

/// The token in `path`: a regular file of at most 4 KiB, trailing white
/// space ignored.
fn read_token_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|err| format!("--token-file {shown}: {err}"))?;
    let is_file = file.metadata().is_ok_and(|m| m.is_file());
    if !is_file {
        return Err(format!("--token-file {shown}: not a regular file"));
    }
    let mut text = String::new();
    file.take(4097)
        .read_to_string(&mut text)
        .map_err(|err| format!("--token-file {shown}: {err}"))?;
    if text.len() > 4096 {
        return Err(format!("--token-file {shown}: larger than 4 KiB"));
    }
    let token = text.trim_end();
    if token.is_empty() {
        return Err(format!("--token-file {shown}: the file is empty"));
    }
    Ok(token.to_owned())
}
