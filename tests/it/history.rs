//! The history of the headline series: kept beside the state file,
//! resumed by the next run, served by `serve` and drawn by the dashboard
//! the moment it opens.

use std::time::Duration;

use pgmigrator_metrics::{
    Collector, History, Snapshot, StatePersister, companion_path, read_history_file,
    read_logs_file, write_history_file, write_state_file,
};
use time::OffsetDateTime;

/// Three hours up to now, one snapshot every 5 s, lag rising a byte a
/// second.
fn three_hours() -> History {
    let now = OffsetDateTime::now_utc();
    let mut history = History::new();
    for s in (0..3 * 3600u64).step_by(5) {
        let at = now - Duration::from_secs(3 * 3600 - s);
        history.record(&Snapshot {
            timestamp: at,
            lag_bytes: s,
            rows_per_sec: 100.0,
            ..Snapshot::default()
        });
    }
    history
}

#[tokio::test]
async fn the_history_is_kept_beside_the_state_file_and_resumed_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let history = three_hours();
    assert!(history.len() > 500, "{}", history.len());
    let collector = Collector::builder().resume_history(history.clone()).build();
    let persister = StatePersister::start(collector.clone(), &path).unwrap();
    persister.stop().await.unwrap();
    let kept = companion_path(&path, "history");
    assert_eq!(kept, dir.path().join("state.history.json"));
    let read = read_history_file(&kept).unwrap();
    assert_eq!(read, history);
    let next = Collector::builder().resume_history(read).build();
    assert_eq!(*next.history(), history);
    collector.close().await;
    next.close().await;
}

#[tokio::test]
async fn a_hostile_history_file_is_refused_or_cut_to_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.json");
    std::fs::write(&path, "{\"tiers\": 7}").unwrap();
    assert!(read_history_file(&path).is_err());
    let fifo = dir.path().join("fifo");
    crate::make_fifo(&fifo);
    let err = read_history_file(&fifo).unwrap_err();
    assert!(err.to_string().contains("FIFO"), "{err}");
    // Ten times too many points, out of order: cut to the newest.
    let point = |s: u64| {
        format!(
            "{{\"timestamp\":\"{}\",\"lag_bytes\":{s},\"lag_seconds\":0,\"rows_per_sec\":0,\
             \"bytes_per_sec\":0,\"copy_bytes_per_sec\":0,\"tables_copied\":0}}",
            (OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s * 10))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        )
    };
    let points: Vec<String> = (0..3600).rev().map(point).collect();
    std::fs::write(
        &path,
        format!("{{\"tiers\":[[{}],[],[]]}}", points.join(",")),
    )
    .unwrap();
    let history = read_history_file(&path).unwrap();
    assert_eq!(history.len(), 360);
    let kept = history.points(OffsetDateTime::UNIX_EPOCH, Duration::ZERO);
    assert_eq!(kept.first().unwrap().lag_bytes, 3240.0, "the newest kept");
    assert!(kept.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_serves_the_history_of_the_state_file_by_range_and_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    write_state_file(&path, &Snapshot::default()).unwrap();
    write_history_file(&companion_path(&path, "history"), &three_hours()).unwrap();
    let (_serve, url) =
        crate::start_pgmigrator(&["serve".as_ref(), "--state-file".as_ref(), path.as_os_str()]);
    let get = |query: &str| {
        let url = format!("{url}api/v1/history{query}");
        async move { crate::http::get(&url, &[]).await }
    };
    let (status, _, body) = get("?since=30m&step=1m").await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let points = json["points"].as_array().unwrap();
    assert!((28..=31).contains(&points.len()), "{}", points.len());
    let times: Vec<OffsetDateTime> = points
        .iter()
        .map(|p| {
            OffsetDateTime::parse(
                p["timestamp"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        })
        .collect();
    assert!(
        times
            .windows(2)
            .all(|w| w[1] - w[0] >= time::Duration::minutes(1))
    );
    let oldest = OffsetDateTime::now_utc() - times[0];
    assert!(oldest <= time::Duration::minutes(31), "{oldest}");
    for field in [
        "lag_bytes",
        "lag_seconds",
        "rows_per_sec",
        "bytes_per_sec",
        "copy_bytes_per_sec",
        "tables_copied",
    ] {
        assert!(points[0].get(field).is_some(), "{field} in {}", points[0]);
    }
    let (_, _, all) = get("").await;
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert!(all["points"].as_array().unwrap().len() > 300);
    for bad in ["?step=soon", "?since=yesterday"] {
        let (status, _, body) = get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_kept_beside_the_state_for_status_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "50",
            "--duration",
            "3s",
        ])
        .env("PGMIGRATOR_HOME", dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(demo.wait().unwrap().success());
    let logs_file = dir.path().join("state.logs.json");
    let kept = pgmigrator_metrics::read_logs_file(&logs_file).unwrap();
    assert!(kept.len() >= 3, "{} entries", kept.len());

    let status = std::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["status", "--logs", "3"])
        .env("PGMIGRATOR_HOME", dir.path())
        .output()
        .unwrap();
    assert!(status.status.success());
    let text = String::from_utf8(status.stdout).unwrap();
    let log = text
        .split("\nLog:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(log.lines().count(), 3, "{text}");
    let newest = kept.last().unwrap();
    assert!(log.contains(&newest.message), "{log}");

    let path = dir.path().join("state.json");
    let (_serve, url) =
        crate::start_pgmigrator(&["serve".as_ref(), "--state-file".as_ref(), path.as_os_str()]);
    let (status, _, body) = crate::http::get(&format!("{url}api/v1/logs"), &[]).await;
    assert_eq!(status, 200);
    let served: Vec<pgmigrator_metrics::LogEntry> = serde_json::from_str(&body).unwrap();
    assert_eq!(served, kept, "serve shows the kept log");
}

#[test]
fn a_log_file_is_read_up_to_its_newest_ten_thousand_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.logs.json");
    let entries: Vec<pgmigrator_metrics::LogEntry> = (0..10_050)
        .map(|i| {
            pgmigrator_metrics::LogEntry::new(
                pgmigrator_metrics::LogLevel::Info,
                format!("line {i}"),
            )
        })
        .collect();
    std::fs::write(&path, serde_json::to_vec(&entries).unwrap()).unwrap();
    let read = read_logs_file(&path).unwrap();
    assert_eq!(read.len(), 10_000);
    assert_eq!(read[0].message, "line 50");
    std::fs::write(&path, "[{\"nonsense\": true}]").unwrap();
    assert!(read_logs_file(&path).is_err());
}

#[test]
fn an_oversized_history_file_is_refused_before_it_is_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.history.json");
    let over = pgmigrator_metrics::persist::MAX_HISTORY_FILE_BYTES as usize + 1;
    std::fs::write(&path, vec![b' '; over]).unwrap();
    let err = read_history_file(&path).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}
