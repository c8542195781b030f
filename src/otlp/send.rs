//! One push of an encoded request, and what to do about its answer: the
//! OTLP/HTTP specification's rules (retry 429, 502, 503 and 504, and a
//! connection that failed or timed out, after the `Retry-After` the
//! server asked for; give the others up).

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, StatusCode};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use tokio_rustls::TlsConnector;

use super::config::Config;
use crate::client;

/// The largest answer body read (a partial-success message is small).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The longest `Retry-After` honoured: a server cannot park the exporter
/// for longer.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How a push went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Delivered,
    /// Worth trying again, after `after` if the server said so.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Refused for good (400, 401, 413, 500…): the same request would be
    /// refused again.
    Refused(String),
}

/// POSTs `body` (an encoded `ExportMetricsServiceRequest`) as
/// `config` says, within its timeout.
pub(crate) async fn push(config: &Config, tls: &TlsConnector, body: Bytes) -> Outcome {
    let url = &config.url;
    let mut request = Request::post(url.path())
        .header(header::HOST, url.host_header())
        .header(header::CONTENT_TYPE, "application/x-protobuf")
        .header(
            header::USER_AGENT,
            concat!("pgmigrator/", env!("CARGO_PKG_VERSION")),
        );
    for (key, value) in &config.headers {
        // Checked when the configuration was read; a header that still does
        // not parse is left out rather than quoted.
        if let (Ok(key), Ok(value)) = (
            HeaderName::try_from(key.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            request = request.header(key, value);
        }
    }
    let request = match request.body(Full::new(body)) {
        Ok(request) => request,
        Err(err) => return Outcome::Refused(err.to_string()),
    };
    let exchange = client::send(url, Some(tls), request, MAX_RESPONSE_BYTES);
    match tokio::time::timeout(config.timeout, exchange).await {
        Err(_) => Outcome::Retry {
            reason: format!("no answer within {:?}", config.timeout),
            after: None,
        },
        Ok(Err(reason)) => Outcome::Retry {
            reason,
            after: None,
        },
        Ok(Ok(answer)) => {
            let retry_after = answer.headers.get(header::RETRY_AFTER);
            let retry_after = retry_after.and_then(|value| value.to_str().ok());
            outcome(answer.status, retry_after, OffsetDateTime::now_utc())
        }
    }
}

/// What an answer of `status` with `retry_after` means at `now`.
fn outcome(status: StatusCode, retry_after: Option<&str>, now: OffsetDateTime) -> Outcome {
    if status.is_success() {
        return Outcome::Delivered;
    }
    let reason = format!("HTTP {}", status.as_u16());
    match status.as_u16() {
        429 | 502 | 503 | 504 => Outcome::Retry {
            reason,
            after: retry_after.and_then(|value| retry_after_delay(value, now)),
        },
        _ => Outcome::Refused(reason),
    }
}

/// A `Retry-After` value (seconds, or an HTTP date) as a delay from `now`,
/// at most [`MAX_RETRY_AFTER`]; `None` when it is neither.
pub(crate) fn retry_after_delay(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
            Duration::try_from(at - now).unwrap_or(Duration::ZERO)
        }
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn only_the_specifications_statuses_are_retried_after_what_the_server_asked() {
        let now = datetime!(2026-12-05 12:00:00 UTC);
        let retry = |status: u16, after: Option<&str>| {
            outcome(StatusCode::from_u16(status).unwrap(), after, now)
        };
        assert_eq!(retry(200, None), Outcome::Delivered);
        assert_eq!(
            retry(429, Some("7")),
            Outcome::Retry {
                reason: "HTTP 429".into(),
                after: Some(Duration::from_secs(7))
            }
        );
        for status in [502, 503, 504] {
            assert!(matches!(
                retry(status, None),
                Outcome::Retry { after: None, .. }
            ));
        }
        for status in [400, 401, 404, 413, 500] {
            assert_eq!(
                retry(status, Some("1")),
                Outcome::Refused(format!("HTTP {status}"))
            );
        }
    }

    #[test]
    fn retry_after_is_seconds_or_a_date_and_is_capped() {
        let now = datetime!(2026-12-05 12:00:00 UTC);
        assert_eq!(
            retry_after_delay(" 30 ", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after_delay("Sat, 05 Dec 2026 12:00:42 GMT", now),
            Some(Duration::from_secs(42))
        );
        assert_eq!(
            retry_after_delay("Sat, 05 Dec 2026 11:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date gone by"
        );
        assert_eq!(retry_after_delay("99999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after_delay("soon", now), None);
        assert_eq!(retry_after_delay("-5", now), None);
    }
}
