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
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    (base, received)
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
