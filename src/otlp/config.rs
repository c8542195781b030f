//! Where and how to export: `--otlp-endpoint` and the variables of the
//! OpenTelemetry specification (`OTEL_EXPORTER_OTLP_*`,
//! `OTEL_METRIC_EXPORT_*`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_SERVICE_NAME`), read once, with errors that never quote a header's
//! value.

use std::fmt;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::client::Url;

/// How often the metrics are pushed unless `OTEL_METRIC_EXPORT_INTERVAL`
/// says otherwise (the specification's default).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// How long one push may take unless `OTEL_EXPORTER_OTLP_TIMEOUT` (or its
/// `_METRICS_` form) says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The path a base endpoint gets for metrics.
const METRICS_PATH: &str = "v1/metrics";

/// What the exporter needs, resolved.
#[derive(Clone, PartialEq)]
pub(crate) struct Config {
    /// The full URL metrics are POSTed to.
    pub(crate) url: Url,
    /// Extra request headers (an API key, a tenant): never printed.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    /// `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME` as
    /// `service.name`, in the order given.
    pub(crate) resource: Vec<(String, String)>,
    /// Per-table series for at most this many tables of each migration
    /// (the most interesting); every table when `None`.
    pub(crate) tables: Option<usize>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("headers", &header_names)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("resource", &self.resource)
            .field("tables", &self.tables)
            .finish()
    }
}

/// Why the export cannot be configured; says which setting, never its
/// value where that may be a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError(pub(crate) String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The configuration from `flag` (`--otlp-endpoint`, a base URL like
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`) and the variables `var` gives;
    /// `Ok(None)` when no endpoint is set at all (no export). A metrics
    /// endpoint variable is the full URL; a base one gets `/v1/metrics`.
    /// The flag wins over the variables.
    pub(crate) fn resolve(
        flag: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Config>, ConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let signal = |name: &str| {
            var(&format!("OTEL_EXPORTER_OTLP_METRICS_{name}"))
                .or_else(|| var(&format!("OTEL_EXPORTER_OTLP_{name}")))
        };
        let url = match (flag, var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")) {
            (Some(base), _) => with_metrics_path(base),
            (None, Some(full)) => full,
            (None, None) => match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => with_metrics_path(&base),
                None => return Ok(None),
            },
        };
        let url = Url::parse(url.trim())
            .map_err(|reason| ConfigError(format!("the OTLP endpoint: {reason}")))?;
        match signal("PROTOCOL").as_deref().map(str::trim) {
            None | Some("http/protobuf") => {}
            Some(other) => {
                return Err(ConfigError(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL {other:?} is not supported: \
                     only http/protobuf is"
                )));
            }
        }
        let mut headers = Vec::new();
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        ] {
            if let Some(list) = var(name) {
                for (key, value) in pairs(&list, name)? {
                    headers.retain(|(k, _): &(String, String)| !k.eq_ignore_ascii_case(&key));
                    headers.push((key, value));
                }
            }
        }
        let millis = |name: &str, value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                _ => Err(ConfigError(format!(
                    "{name} is not a positive number of milliseconds"
                ))),
            },
        };
        let interval = millis(
            "OTEL_METRIC_EXPORT_INTERVAL",
            var("OTEL_METRIC_EXPORT_INTERVAL"),
            DEFAULT_INTERVAL,
        )?;
        let timeout = millis(
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            signal("TIMEOUT"),
            DEFAULT_TIMEOUT,
        )?;
        let mut resource = match var("OTEL_RESOURCE_ATTRIBUTES") {
            Some(list) => pairs(&list, "OTEL_RESOURCE_ATTRIBUTES")?,
            None => Vec::new(),
        };
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            resource.retain(|(k, _)| k != "service.name");
            resource.push(("service.name".to_owned(), name.trim().to_owned()));
        }
        Ok(Some(Config {
            url,
            headers,
            interval,
            timeout,
            resource,
            tables: None,
        }))
    }
}

/// `base` with the metrics path appended (once, whatever its slashes).
fn with_metrics_path(base: &str) -> String {
    format!("{}/{METRICS_PATH}", base.trim().trim_end_matches('/'))
}

/// `key=value,key=value`, each side percent-decoded and trimmed, as the
/// specification writes headers and resource attributes. An error names
/// the variable and the pair's position, never its text.
fn pairs(list: &str, variable: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let decode = |s: &str| {
        percent_decode_str(s.trim())
            .decode_utf8()
            .map(|s| s.into_owned())
    };
    list.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .enumerate()
        .map(|(i, pair)| {
            let bad = || ConfigError(format!("{variable}: entry {} is not key=value", i + 1));
            let (key, value) = pair.split_once('=').ok_or_else(bad)?;
            let (key, value) = (
                decode(key).map_err(|_| bad())?,
                decode(value).map_err(|_| bad())?,
            );
            let header_safe = |s: &str| !s.chars().any(|c| c.is_control());
            if key.is_empty() || !header_safe(&key) || !header_safe(&value) {
                return Err(bad());
            }
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(flag: Option<&str>, vars: &[(&str, &str)]) -> Result<Option<Config>, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::resolve(flag, |name| vars.get(name).cloned())
    }

    #[test]
    fn no_endpoint_is_no_export_and_each_endpoint_form_gives_its_url() {
        assert_eq!(resolve(None, &[]), Ok(None));
        let path = |flag, vars: &[(&str, &str)]| {
            let config = resolve(flag, vars).unwrap().unwrap();
            (config.url.authority(), config.url.path().to_owned())
        };
        assert_eq!(
            path(
                None,
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]
            ),
            ("collector:4318".to_owned(), "/v1/metrics".to_owned())
        );
        assert_eq!(
            path(
                None,
                &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:1"),
                    (
                        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                        "https://m.example/otlp/push"
                    ),
                ]
            ),
            ("m.example:443".to_owned(), "/otlp/push".to_owned())
        );
        assert_eq!(
            path(
                Some("http://127.0.0.1:9090/api/v1/otlp"),
                &[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://ignored:1/x")]
            ),
            (
                "127.0.0.1:9090".to_owned(),
                "/api/v1/otlp/v1/metrics".to_owned()
            )
        );
    }

    #[test]
    fn headers_intervals_and_resource_come_from_the_variables() {
        let config = resolve(
            Some("http://c:4318"),
            &[
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%3Dcret, x-tenant=a"),
                ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "X-Tenant=b"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
                ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2500"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=x,deployment.environment=prod",
                ),
                ("OTEL_SERVICE_NAME", "shop-move"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            config.headers,
            [("api-key", "s=cret"), ("X-Tenant", "b")].map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(config.interval, Duration::from_secs(5));
        assert_eq!(config.timeout, Duration::from_millis(2500));
        assert_eq!(
            config.resource,
            [
                ("deployment.environment", "prod"),
                ("service.name", "shop-move")
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert!(!format!("{config:?}").contains("s=cret"), "{config:?}");
        let defaults = resolve(Some("http://c:4318"), &[]).unwrap().unwrap();
        assert_eq!(
            (defaults.interval, defaults.timeout),
            (DEFAULT_INTERVAL, DEFAULT_TIMEOUT)
        );
    }

    #[test]
    fn bad_settings_are_refused_without_quoting_a_secret() {
        let refused = |vars: &[(&str, &str)]| resolve(Some("http://c:4318"), vars).unwrap_err().0;
        let err = refused(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=fine,sekrit-no-equals",
        )]);
        assert!(err.contains("entry 2") && !err.contains("sekrit"), "{err}");
        let err = refused(&[("OTEL_EXPORTER_OTLP_HEADERS", "k=line%0Abreak")]);
        assert!(!err.contains("break"), "{err}");
        assert!(refused(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).contains("http/protobuf"));
        assert!(refused(&[("OTEL_METRIC_EXPORT_INTERVAL", "0")]).contains("INTERVAL"));
        assert!(refused(&[("OTEL_METRIC_EXPORT_INTERVAL", "NaN")]).contains("INTERVAL"));
        let err = resolve(Some("ftp://user:pw@host/"), &[]).unwrap_err().0;
        assert!(!err.contains("pw"), "{err}");
    }
}
