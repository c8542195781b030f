//! OpenTelemetry (OTLP/HTTP, protobuf) export of every metric family: the
//! same families as `GET /metrics`, pushed to a Collector, Mimir,
//! Prometheus's OTLP receiver or a vendor, under names and units that
//! Prometheus's translation turns into exactly the scraped names.
//!
//! The exporter is a reader of the published snapshots like every other
//! surface: it never slows the collector. It runs on the caller's Tokio
//! runtime and sends through this crate's own HTTP client (rustls), so no
//! second runtime or thread is started.
//!
//! ```no_run
//! # async fn example(collector: pgmigrator_metrics::Collector) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use pgmigrator_metrics::otlp::Otlp;
//!
//! // `--otlp-endpoint`, else OTEL_EXPORTER_OTLP_ENDPOINT and the other
//! // OTEL_* variables; `None` when no endpoint is set.
//! if let Some(otlp) = Otlp::from_env(Some("http://127.0.0.1:4318"), None)? {
//!     let snapshots = collector.snapshots();
//!     let export = otlp.spawn(Arc::new(move || vec![(None, snapshots.snapshot())]));
//!     // … run the migration …
//!     export.stop().await; // one last push of the final values
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

mod config;
mod encode;
mod export;
mod send;

use self::config::Config;
pub use self::export::Source;
use self::export::Stats;
use crate::metrics::ProcessCounter;

/// A resolved export: where to, and how to trust it.
pub struct Otlp {
    config: Config,
    tls: TlsConnector,
}

impl fmt::Debug for Otlp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Otlp")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why the export cannot start: names the setting, never a header's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpError(String);

impl fmt::Display for OtlpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OtlpError {}

impl Otlp {
    /// The export `endpoint` (`--otlp-endpoint`, a base URL to which
    /// `/v1/metrics` is added) or the `OTEL_*` variables ask for, trusting
    /// `ca_cert` (PEM) or the system's roots for HTTPS; `Ok(None)` when no
    /// endpoint is set.
    pub fn from_env(
        endpoint: Option<&str>,
        ca_cert: Option<&Path>,
    ) -> Result<Option<Otlp>, OtlpError> {
        let Some(mut config) = Config::resolve(endpoint, |name| std::env::var(name).ok())
            .map_err(|e| OtlpError(e.0))?
        else {
            return Ok(None);
        };
        config.resource = with_defaults(config.resource);
        let tls = crate::client::connector(ca_cert).map_err(|err| match err {
            crate::client::ConnectorError::CaCert(reason) => {
                OtlpError(format!("--otlp-ca-cert: {reason}"))
            }
            crate::client::ConnectorError::Config(reason) => OtlpError(format!("TLS: {reason}")),
        })?;
        Ok(Some(Otlp { config, tls }))
    }

    /// Where the metrics go, to show: scheme, host and port only (a path
    /// or a query may hold a key).
    pub fn endpoint(&self) -> String {
        let scheme = if self.config.url.is_https() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.config.url.authority())
    }

    /// Per-table series for at most `tables` tables of each migration, the
    /// most interesting ones, as `/metrics` with
    /// [`HttpConfig::metrics_tables`](crate::http::HttpConfig::metrics_tables);
    /// every table when `None` (the default). Migration-level series are
    /// exact either way.
    pub fn metrics_tables(mut self, tables: Option<usize>) -> Otlp {
        self.config.tables = tables;
        self
    }

    /// Starts pushing what `source` gives, on the current Tokio runtime.
    pub fn spawn(self, source: Source) -> Export {
        let stats = Arc::new(Stats::new());
        let stop = CancellationToken::new();
        let task = tokio::spawn(export::run(
            self.config,
            self.tls,
            source,
            Arc::clone(&stats),
            stop.clone().cancelled_owned(),
        ));
        Export { stats, stop, task }
    }
}

/// A running export.
#[derive(Debug)]
pub struct Export {
    stats: Arc<Stats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Export {
    /// Pushes given up so far (`pgmigrator_otlp_export_failures_total`).
    pub fn failures(&self) -> u64 {
        self.stats.failures.get()
    }

    /// The count of pushes given up, as a counter for `/metrics`
    /// ([`HttpConfig::counters`](crate::http::HttpConfig::counters)).
    pub fn failure_counter(&self) -> ProcessCounter {
        self.stats.failures.clone()
    }

    /// Pushes delivered so far.
    pub fn delivered(&self) -> u64 {
        self.stats.delivered.load(Ordering::Relaxed)
    }

    /// Stops after one last push (within the export's timeout).
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// `given` (the user's attributes win), then `service.name`,
/// `service.version`, `service.instance.id` and `host.name` where not
/// given.
fn with_defaults(mut given: Vec<(String, String)>) -> Vec<(String, String)> {
    let defaults = [
        ("service.name", Some("pgmigrator".to_owned())),
        (
            "service.version",
            Some(env!("CARGO_PKG_VERSION").to_owned()),
        ),
        ("service.instance.id", Some(instance_id())),
        ("host.name", host_name()),
    ];
    for (key, value) in defaults {
        if let Some(value) = value
            && !given.iter().any(|(k, _)| k == key)
        {
            given.push((key.to_owned(), value));
        }
    }
    given
}

/// A random version-4 UUID for this process.
fn instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = |salt: u64| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt ^ u64::from(std::process::id()));
        hasher.finish()
    };
    let (high, low) = (random(1), random(2));
    let high = (high & !0xF000) | 0x4000;
    let low = (low & !(0xC000 << 48)) | (0x8000 << 48);
    let hex = format!("{high:016x}{low:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// This machine's name, when it has a printable one.
fn host_name() -> Option<String> {
    #[cfg(unix)]
    {
        let mut buffer = [0u8; 256];
        // SAFETY: the buffer is writable for its whole length, which is
        // what gethostname is given; it NUL-terminates within it or the
        // name is cut, and the bytes are read up to the first NUL only.
        let done = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
        let end = buffer.iter().position(|&b| b == 0)?;
        let name = std::str::from_utf8(&buffer[..end]).ok()?;
        (done == 0 && !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic()))
            .then(|| name.to_owned())
    }
    #[cfg(not(unix))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_gets_the_services_defaults_unless_given() {
        let resource = with_defaults(vec![("service.name".into(), "shop-move".into())]);
        let get = |key: &str| {
            resource
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("service.name").as_deref(), Some("shop-move"));
        assert_eq!(
            get("service.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        let id = get("service.instance.id").unwrap();
        assert_eq!((id.len(), &id[14..15]), (36, "4"), "{id}");
        assert_ne!(id, instance_id(), "one per process start");
        assert_eq!(
            resource.iter().filter(|(k, _)| k == "service.name").count(),
            1
        );
    }
}
