//! `--otlp-endpoint` end to end: the binary pushes a demo run to a
//! receiver that decodes the official OTLP protobuf.

use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use tokio::net::TcpListener;

type Received = Arc<Mutex<Vec<(hyper::HeaderMap, ExportMetricsServiceRequest)>>>;

/// A receiver on loopback that keeps what it is sent and answers 200.
async fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (base, serve_receiver(listener, None))
}

/// The same over HTTPS, with `leaf`'s certificate, at `https://localhost:PORT`.
async fn tls_receiver(leaf: &crate::pki::Leaf) -> (String, Received) {
    let tls = leaf.server_config();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    (base, serve_receiver(listener, Some(acceptor)))
}

fn serve_receiver(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> Received {
    let received: Received = Arc::default();
    let kept = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = Arc::clone(&kept);
            let service = service_fn(move |request: Request<Incoming>| {
                let kept = Arc::clone(&kept);
                async move {
                    assert_eq!(request.uri().path(), "/v1/metrics");
                    let headers = request.headers().clone();
                    let body = request.into_body().collect().await?.to_bytes();
                    let decoded = ExportMetricsServiceRequest::decode(body).unwrap();
                    kept.lock().unwrap().push((headers, decoded));
                    Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                }
            });
            let tls = tls.clone();
            tokio::spawn(async move {
                let http = http1::Builder::new();
                match tls {
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
            });
        }
    });
    received
}

fn text(kv: &KeyValue) -> &str {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_pushes_every_family_with_its_resource_and_headers_and_never_prints_the_key() {
    let (base, received) = receiver().await;
    let home = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "20",
            "--duration",
            "3s",
        ])
        .args(["--otlp-endpoint", &base])
        .env("PGMIGRATOR_HOME", home.path())
        .env("OTEL_METRIC_EXPORT_INTERVAL", "500")
        .env("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret%21")
        .env("OTEL_SERVICE_NAME", "shop-move")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("OTLP export: {base}")), "{stdout}");
    assert!(
        !format!("{stdout}{stderr}").contains("s3cret"),
        "{stdout}{stderr}"
    );
    let received = received.lock().unwrap();
    // Every 500 ms for 3 s, and a last one at the stop.
    assert!(received.len() >= 4, "{}", received.len());
    let (headers, last) = received.last().unwrap();
    assert_eq!(headers["api-key"], "s3cret!");
    let resource = &last.resource_metrics[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    let attribute = |key: &str| resource.iter().find(|kv| kv.key == key).map(text);
    assert_eq!(attribute("service.name"), Some("shop-move"));
    assert_eq!(
        attribute("service.version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(attribute("deployment.environment"), Some("test"));
    assert!(attribute("service.instance.id").is_some_and(|id| id.len() == 36));
    assert!(attribute("host.name").is_some());
    let metrics = &last.resource_metrics[0].scope_metrics[0].metrics;
    let find = |name: &str| {
        metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    // The demo's copy is done and it streams: rows applied count up, each
    // table has its rows, the slot its headroom.
    let applied = find("pgmigrator_rows_applied");
    let Some(Data::Sum(sum)) = &applied.data else {
        panic!("{applied:?}");
    };
    assert!(sum.is_monotonic && applied.unit == "{row}");
    let copied = find("pgmigrator_table_rows_copied");
    let Some(Data::Gauge(gauge)) = &copied.data else {
        panic!("{copied:?}");
    };
    // The demo's 24 tables, 20 of them with series of their own
    // (`--metrics-tables`' default); the rest are counted.
    let bound = pgmigrator_metrics::http::metrics::DEFAULT_METRICS_TABLES;
    assert_eq!(gauge.data_points.len(), bound, "one per table kept");
    let omitted = find("pgmigrator_scrape_tables_omitted");
    let Some(Data::Gauge(omitted)) = &omitted.data else {
        panic!("{omitted:?}");
    };
    assert_eq!(point_value(&omitted.data_points[0]), (24 - bound) as f64);
    let table = &gauge.data_points[0].attributes;
    assert_eq!(
        table.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["schema", "table"]
    );
    assert_eq!(find("pgmigrator_slot_retained_wal_bytes").unit, "By");
    assert_eq!(find("pgmigrator_bytes").unit, "By/s");
    assert_eq!(find("pgmigrator_rows").unit, "{row}/s");
    find("pgmigrator_otlp_export_failures");
}

/// The value of a gauge's point.
fn point_value(point: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    match point.value {
        Some(Value::AsDouble(v)) => v,
        Some(Value::AsInt(v)) => v as f64,
        None => panic!("{point:?}"),
    }
}

/// Each point of the gauge `name` in `request`: its attributes' values
/// joined with `/`, and its value.
fn gauge_points(request: &ExportMetricsServiceRequest, name: &str) -> Vec<(String, f64)> {
    let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
    let Some(metric) = metrics.iter().find(|m| m.name == name) else {
        return Vec::new();
    };
    let Some(Data::Gauge(gauge)) = &metric.data else {
        panic!("{metric:?}");
    };
    let mut points: Vec<(String, f64)> = gauge
        .data_points
        .iter()
        .map(|p| {
            let labels: Vec<&str> = p.attributes.iter().map(text).collect();
            (labels.join("/"), point_value(p))
        })
        .collect();
    points.sort_by(|a, b| a.0.cmp(&b.0));
    points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_behind_a_token_pushes_each_migration_under_its_id_with_the_same_table_bound_as_its_scrape()
 {
    use pgmigrator_metrics::{Snapshot, TableProgress, TableStatus, write_state_file};
    let (base, received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let files = [("shop", 4096), ("billing", 8192)].map(|(id, lag_bytes)| {
        let path = dir.path().join(format!("{id}.json"));
        let mut copying = TableProgress::new("public", "copying", 10, 1 << 20);
        copying.status = TableStatus::Copying;
        let snapshot = Snapshot {
            lag_bytes,
            timestamp: time::OffsetDateTime::now_utc(),
            tables: vec![
                TableProgress::new("public", "waiting", 10, 1 << 10),
                copying,
                TableProgress::new("public", "small", 10, 1),
            ],
            ..Snapshot::default()
        };
        write_state_file(&path, &snapshot).unwrap();
        path
    });
    let args = [
        "serve".as_ref(),
        "--token".as_ref(),
        "t0ken".as_ref(),
        "--metrics-tables".as_ref(),
        "1".as_ref(),
        "--state-file".as_ref(),
        files[0].as_os_str(),
        "--state-file".as_ref(),
        files[1].as_os_str(),
        "--otlp-endpoint".as_ref(),
        base.as_ref(),
    ];
    let (_serve, url) =
        crate::start_pgmigrator_with(&args, &[("OTEL_METRIC_EXPORT_INTERVAL", "200")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let last = loop {
        let last = received.lock().unwrap().last().map(|(_, r)| r.clone());
        if let Some(last) =
            last.filter(|r| gauge_points(r, "pgmigrator_replication_lag_bytes").len() == 2)
        {
            break last;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no push with both migrations"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    // The token guards the HTTP surfaces, not what is pushed; each
    // migration's series carries its id, as on a fleet's /metrics.
    assert_eq!(
        gauge_points(&last, "pgmigrator_replication_lag_bytes"),
        [("billing".to_owned(), 8192.0), ("shop".to_owned(), 4096.0)]
    );
    // One table of each: the one copying.
    assert_eq!(
        gauge_points(&last, "pgmigrator_table_rows_estimated"),
        [
            ("billing/public/copying".to_owned(), 10.0),
            ("shop/public/copying".to_owned(), 10.0)
        ]
    );
    assert_eq!(
        gauge_points(&last, "pgmigrator_scrape_tables_omitted"),
        [("billing".to_owned(), 2.0), ("shop".to_owned(), 2.0)]
    );
    let metrics = format!("{}metrics", url.trim_end_matches('/'));
    let metrics = metrics.replace("/?token=…", "/");
    let (status, _, text) = crate::http::get(&metrics, &[("authorization", "Bearer t0ken")]).await;
    assert_eq!(status, 200, "{text}");
    let per_table: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("pgmigrator_table_rows_estimated{"))
        .collect();
    assert_eq!(per_table.len(), 2, "{text}");
    assert!(
        per_table.iter().all(|l| l.contains("table=\"copying\"")),
        "{text}"
    );
    assert!(
        text.contains("\npgmigrator_otlp_export_failures_total 0\n"),
        "the export's own counter, without a migration: {text}"
    );
}

/// `demo` pushing to `base` for 2 s, every 200 ms, with `extra` flags:
/// what it printed, and its `/metrics` near the end.
async fn demo_pushing_to(base: &str, extra: &[&str]) -> (String, String, String) {
    let home = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["demo", "--listen", "127.0.0.1:0", "--duration", "2s"])
        .args(["--otlp-endpoint", base])
        .args(extra)
        .env("PGMIGRATOR_HOME", home.path())
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let url = loop {
        let line = stdout.next_line().await.unwrap().expect("an address");
        printed.push_str(&line);
        printed.push('\n');
        if let Some(url) = line.strip_prefix("Dashboard: ") {
            break url.to_owned();
        }
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (status, _, metrics) = crate::http::get(&format!("{url}metrics"), &[]).await;
    assert_eq!(status, 200);
    let output = child.wait_with_output().await.unwrap();
    while let Ok(Some(line)) = stdout.next_line().await {
        printed.push_str(&line);
        printed.push('\n');
    }
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (printed, stderr, metrics)
}

/// The value of the process's `pgmigrator_otlp_export_failures_total`.
fn failures_scraped(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("pgmigrator_otlp_export_failures_total "))
        .unwrap_or_else(|| panic!("no failure counter in {metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_is_trusted_through_the_given_ca_and_refused_without_it() {
    let ca = crate::pki::Ca::new("collector CA");
    let leaf = ca.issue(&["localhost"], "localhost");
    let (base, received) = tls_receiver(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (stdout, stderr, metrics) =
        demo_pushing_to(&base, &["--otlp-ca-cert", ca_file.to_str().unwrap()]).await;
    assert!(stdout.contains(&format!("OTLP export: {base}")), "{stdout}");
    let delivered = received.lock().unwrap().len();
    assert!(delivered >= 3, "{delivered} pushes: {stderr}");
    assert_eq!(failures_scraped(&metrics), 0.0, "{stderr}");

    // The system's roots do not know the test CA: every push is refused by
    // our side of the handshake, counted on /metrics, and warned about once.
    let (_, stderr, metrics) = demo_pushing_to(&base, &[]).await;
    assert_eq!(
        received.lock().unwrap().len(),
        delivered,
        "nothing more arrives"
    );
    assert!(failures_scraped(&metrics) >= 2.0, "{metrics}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("OTLP export failed"))
        .collect();
    assert_eq!(warnings.len(), 1, "once a minute: {stderr}");
    assert!(warnings[0].contains("certificate"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_pushes_the_real_slot_and_tables_and_never_the_password() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !crate::cluster::available()
    {
        return;
    }
    let (source, dest) = crate::postgres::replication_pair();
    dest.sql("ALTER SUBSCRIPTION sub ENABLE");
    let (base, received) = receiver().await;
    let home = tempfile::tempdir().unwrap();
    let _monitor = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["monitor", "--interval", "200ms", "--listen", "127.0.0.1:0"])
        .args(["--source", &source.monitor_keywords()])
        .args(["--dest", &dest.monitor_uri()])
        .args(["--otlp-endpoint", &base])
        .env("PGMIGRATOR_HOME", home.path())
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let last = loop {
        let last = received.lock().unwrap().last().map(|(_, r)| r.clone());
        let ready = last.filter(|r| {
            gauge_points(r, "pgmigrator_tables")
                .iter()
                .map(|p| p.1)
                .sum::<f64>()
                == 3.0
                && !gauge_points(r, "pgmigrator_slot_retained_wal_bytes").is_empty()
        });
        if let Some(last) = ready {
            break last;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no push with the subscription's tables and slot"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // One migration: no migration attribute; the three tables each have
    // their series.
    let estimated = gauge_points(&last, "pgmigrator_table_rows_estimated");
    let names: Vec<&str> = estimated.iter().map(|p| p.0.as_str()).collect();
    assert!(names.iter().all(|n| n.starts_with("public/")), "{names:?}");
    let copied = gauge_points(&last, "pgmigrator_table_rows_copied");
    assert_eq!(copied.len(), 3, "{copied:?}");
    let everything = received
        .lock()
        .unwrap()
        .iter()
        .map(|(headers, request)| format!("{headers:?}{request:?}"))
        .collect::<String>();
    assert!(!everything.contains(crate::cluster::MONITOR_PASSWORD));
    assert!(!everything.contains("pw9f3"), "not even a part of it");
}
