//! The exporter: a reader of the published snapshots like every other
//! surface, off the collector's path. Every interval it encodes what each
//! migration last published and pushes it; a push that fails is retried
//! (after the server's `Retry-After`, else with a doubling backoff) until
//! the next one is due, and then given up: the next push carries every
//! value again (gauges, and sums counted from the start), so nothing is
//! queued and a dead endpoint costs one request at a time. Failures are
//! counted and warned about at most once a minute.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::body::Bytes;
use prost::Message;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::config::Config;
use super::encode::{Times, request};
use super::send::{Outcome, push};
use crate::metrics::{ProcessCounter, members};
use crate::model::Snapshot;

/// The first wait before a push is tried again; it doubles each time.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// How often a failing export is warned about at most.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What each push exports: every migration's id (`None` for a process
/// with one migration) and its latest snapshot, read when the push is made.
pub type Source = Arc<dyn Fn() -> Vec<(Option<String>, Arc<Snapshot>)> + Send + Sync>;

/// How the export has gone, shared with whoever shows it.
#[derive(Debug)]
pub(crate) struct Stats {
    /// Pushes given up (refused, or not delivered before the next was due).
    pub(crate) failures: ProcessCounter,
    /// Pushes delivered.
    pub(crate) delivered: AtomicU64,
}

impl Stats {
    pub(crate) fn new() -> Stats {
        Stats {
            failures: ProcessCounter::new(
                "otlp_export_failures",
                "OTLP pushes given up: refused, or not delivered before the next was due",
                "{push}",
            ),
            delivered: AtomicU64::new(0),
        }
    }
}

/// Pushes `source` as `config` says until `stop` completes, then once more
/// (within the timeout) so the last values reach the receiver.
pub(crate) async fn run(
    config: Config,
    tls: TlsConnector,
    source: Source,
    stats: Arc<Stats>,
    stop: impl std::future::Future<Output = ()>,
) {
    let start = unix_nanos();
    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warnings = Warnings::default();
    tokio::pin!(stop);
    loop {
        // The stop first: a push outlasting its interval leaves the next
        // tick ready as well, and the stop must not wait behind it.
        let last = tokio::select! {
            biased;
            () = &mut stop => true,
            _ = ticks.tick() => false,
        };
        let times = Times {
            start,
            now: unix_nanos(),
        };
        let members = members(source(), config.tables);
        let counters = std::slice::from_ref(&stats.failures);
        let request = request(&members, counters, &config.resource, times);
        let body = Bytes::from(request.encode_to_vec());
        // The last push is one attempt within the timeout: a dead endpoint
        // must not hold up the process's stop with retries.
        let delivered = match last {
            true => deliver(&config, &tls, body, Instant::now() + config.timeout, false),
            false => deliver(&config, &tls, body, Instant::now() + config.interval, true),
        };
        match delivered.await {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err(reason) => {
                stats.failures.increment();
                if warnings.due(Instant::now()) {
                    let failures = stats.failures.get();
                    tracing::warn!(
                        endpoint = %config.url.authority(),
                        failures,
                        "OTLP export failed: {reason}"
                    );
                }
            }
        }
        if last {
            return;
        }
    }
}

/// When a failing export was last warned about: at most once a minute, so
/// a dead endpoint does not flood the log.
#[derive(Debug, Default)]
struct Warnings {
    last: Option<Instant>,
}

impl Warnings {
    /// Whether a failure at `now` is to be warned about.
    fn due(&mut self, now: Instant) -> bool {
        let due = self.last.is_none_or(|at| now - at >= WARN_EVERY);
        if due {
            self.last = Some(now);
        }
        due
    }
}

/// Pushes `body` until it is delivered, refused, or `due` comes; tries
/// once only unless `retry`.
async fn deliver(
    config: &Config,
    tls: &TlsConnector,
    body: Bytes,
    due: Instant,
    retry: bool,
) -> Result<(), String> {
    let mut backoff = FIRST_RETRY;
    loop {
        let attempt = tokio::time::timeout_at(due, push(config, tls, body.clone()));
        let (reason, after) = match attempt.await {
            Err(_) => return Err("not delivered before the next push was due".to_owned()),
            Ok(Outcome::Delivered) => return Ok(()),
            Ok(Outcome::Refused(reason)) => return Err(reason),
            Ok(Outcome::Retry { reason, .. }) if !retry => return Err(reason),
            Ok(Outcome::Retry { reason, after }) => (reason, after),
        };
        let wait = after.unwrap_or(backoff);
        backoff = (backoff * 2).min(config.interval);
        if Instant::now() + wait >= due {
            return Err(format!(
                "{reason}; not delivered before the next push was due"
            ));
        }
        tokio::time::sleep(wait).await;
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use tokio::net::TcpListener;

    use super::*;
    use crate::client::{self, Url};

    /// What a receiver was sent: each request's headers and decoded body.
    type Received = Arc<Mutex<Vec<(hyper::HeaderMap, ExportMetricsServiceRequest)>>>;

    /// A receiver on loopback answering each request with the next of
    /// `script` (status, `Retry-After`), then 200.
    async fn receiver(script: Vec<(u16, Option<&'static str>)>) -> (Url, Received) {
        slow_receiver(script, Duration::ZERO).await
    }

    /// [`receiver`], taking `delay` to answer each request.
    async fn slow_receiver(
        script: Vec<(u16, Option<&'static str>)>,
        delay: Duration,
    ) -> (Url, Received) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/v1/metrics",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        let received: Received = Arc::default();
        let script = Arc::new(Mutex::new(script.into_iter()));
        let kept = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, script) = (Arc::clone(&kept), Arc::clone(&script));
                let service = service_fn(move |request: Request<Incoming>| {
                    let (kept, script) = (Arc::clone(&kept), Arc::clone(&script));
                    async move {
                        let headers = request.headers().clone();
                        let body = request.into_body().collect().await?.to_bytes();
                        let decoded = ExportMetricsServiceRequest::decode(body).unwrap();
                        kept.lock().unwrap().push((headers, decoded));
                        tokio::time::sleep(delay).await;
                        let (status, after) = script.lock().unwrap().next().unwrap_or((200, None));
                        let mut response =
                            Response::builder().status(StatusCode::from_u16(status).unwrap());
                        if let Some(after) = after {
                            response = response.header("retry-after", after);
                        }
                        Ok::<_, hyper::Error>(response.body(Full::new(Bytes::new())).unwrap())
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        (url, received)
    }

    fn config(url: Url, interval: Duration) -> Config {
        Config {
            url,
            headers: vec![("api-key".to_owned(), "s3cret".to_owned())],
            interval,
            timeout: Duration::from_secs(2),
            resource: vec![("service.name".to_owned(), "pgmigrator".to_owned())],
            tables: None,
        }
    }

    fn source() -> Source {
        let snapshot = Arc::new(Snapshot {
            lag_bytes: 42,
            ..Snapshot::default()
        });
        Arc::new(move || vec![(Some("shop".to_owned()), Arc::clone(&snapshot))])
    }

    fn tls() -> TlsConnector {
        client::connector(None).unwrap()
    }

    /// The exporter pushing to `url` every 100 ms, stopped after `stop`.
    async fn run_for(url: Url, stop: Duration) -> Arc<Stats> {
        let stats = Arc::new(Stats::new());
        let config = config(url, Duration::from_millis(100));
        let stop = tokio::time::sleep(stop);
        run(config, tls(), source(), Arc::clone(&stats), stop).await;
        stats
    }

    #[tokio::test]
    async fn each_push_carries_the_families_headers_and_resource_and_a_last_one_at_stop() {
        let (url, received) = receiver(Vec::new()).await;
        let stats = run_for(url, Duration::from_millis(250)).await;
        let received = received.lock().unwrap();
        // At 0, 100 and 200 ms (fewer when the machine is busy), and the
        // last at the stop.
        assert!((2..=5).contains(&received.len()), "{}", received.len());
        assert_eq!(
            stats.delivered.load(Ordering::Relaxed),
            received.len() as u64
        );
        assert_eq!(stats.failures.get(), 0);
        let (headers, request) = &received[0];
        assert_eq!(headers["api-key"], "s3cret");
        assert_eq!(headers["content-type"], "application/x-protobuf");
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        assert!(
            metrics
                .iter()
                .any(|m| m.name == "pgmigrator_replication_lag_bytes")
        );
    }

    #[tokio::test]
    async fn a_throttled_push_waits_as_asked_and_a_refused_one_is_not_retried() {
        let (url, received) = receiver(vec![(429, Some("0")), (503, Some("0"))]).await;
        let config = config(url, Duration::from_secs(30));
        let body = Bytes::from_static(&[]);
        let due = Instant::now() + Duration::from_secs(10);
        assert_eq!(
            deliver(&config, &tls(), body.clone(), due, true).await,
            Ok(())
        );
        assert_eq!(
            received.lock().unwrap().len(),
            3,
            "429, 503, then delivered"
        );
        let (url, received) = receiver(vec![(500, None)]).await;
        let config = Config { url, ..config };
        let refused = deliver(&config, &tls(), body.clone(), due, true).await;
        assert_eq!(refused, Err("HTTP 500".to_owned()));
        assert_eq!(received.lock().unwrap().len(), 1, "500 is not retried");
        // The last push, at the stop, is one attempt whatever the answer.
        let (url, received) = receiver(vec![(503, Some("0"))]).await;
        let config = Config { url, ..config };
        let once = deliver(&config, &tls(), body, due, false).await;
        assert_eq!(once, Err("HTTP 503".to_owned()));
        assert_eq!(received.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_dead_endpoint_costs_one_push_at_a_time_and_counts_each_given_up() {
        // Nothing listens there any more.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!(
            "http://{}/v1/metrics",
            listener.local_addr().unwrap()
        ))
        .unwrap();
        drop(listener);
        let started = Instant::now();
        let stats = run_for(url, Duration::from_millis(350)).await;
        // Each push retried until the next was due, then given up; the
        // last one within its timeout.
        let failures = stats.failures.get();
        assert!((2..=6).contains(&failures), "{failures}");
        assert_eq!(stats.delivered.load(Ordering::Relaxed), 0);
        // The last push is not retried (it would wait a second at least).
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_receiver_slower_than_the_interval_costs_one_push_at_a_time_given_up_when_the_next_is_due()
     {
        let (url, received) = slow_receiver(Vec::new(), Duration::from_millis(300)).await;
        let started = Instant::now();
        let stats = run_for(url, Duration::from_millis(450)).await;
        // Pushes at 0, 100, 200, 300 and 400 ms, each given up when the
        // next was due (fewer on a busy machine); the last one, at the
        // stop, has the whole timeout and is delivered.
        let failures = stats.failures.get();
        assert!((2..=5).contains(&failures), "{failures}");
        assert_eq!(stats.delivered.load(Ordering::Relaxed), 1);
        let received = received.lock().unwrap().len() as u64;
        assert_eq!(received, failures + 1, "one request per push, none retried");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_export_is_warned_about_once_a_minute() {
        let mut warnings = Warnings::default();
        let start = Instant::now();
        assert!(warnings.due(start), "the first failure");
        for seconds in [1, 30, 59] {
            assert!(!warnings.due(start + Duration::from_secs(seconds)));
        }
        assert!(warnings.due(start + Duration::from_secs(60)));
        assert!(!warnings.due(start + Duration::from_secs(90)));
        assert!(warnings.due(start + Duration::from_secs(121)));
    }
}
