//! `app::run`: a job with its surfaces, and one stop for all of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pgmigrator_metrics::app::{self, AppError, Surfaces};
use pgmigrator_metrics::http::HttpConfig;
use pgmigrator_metrics::{Collector, Phase, read_state_file};
use tokio::net::TcpListener;

async fn surfaces(state_file: std::path::PathBuf) -> Surfaces {
    Surfaces {
        listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: HttpConfig::default(),
        state_file,
        tui: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ends_stops_everything_after_the_final_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let result = app::run(
        Collector::new(),
        surfaces(path.clone()).await,
        |collector, _stop| async move { collector.set_phase(Phase::Done).await },
        std::future::pending(),
    );
    tokio::time::timeout(Duration::from_secs(10), result)
        .await
        .expect("run returns once the job is over")
        .unwrap();
    assert_eq!(read_state_file(&path).unwrap().phase, Phase::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reaches_the_job_and_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let surfaces = surfaces(path.clone()).await;
    let addr = surfaces.listener.local_addr().unwrap();
    let (trigger, shutdown) = tokio::sync::oneshot::channel::<()>();
    let saw_stop = Arc::new(AtomicBool::new(false));
    let saw = Arc::clone(&saw_stop);
    let running = tokio::spawn(app::run(
        Collector::new(),
        surfaces,
        move |collector, stop| async move {
            collector.set_phase(Phase::Streaming).await;
            stop.await;
            saw.store(true, Ordering::SeqCst);
        },
        async {
            let _ = shutdown.await;
        },
    ));
    // Serving until then.
    let url = format!("http://{addr}/healthz");
    let (status, _, _) = crate::http::get(&url, &[]).await;
    assert_eq!(status, 200);
    trigger.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(saw_stop.load(Ordering::SeqCst));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert_eq!(read_state_file(&path).unwrap().phase, Phase::Streaming);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_is_an_error_and_the_state_is_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let result = app::run(
        Collector::new(),
        surfaces(path.clone()).await,
        |collector, _stop| async move {
            collector.set_phase(Phase::Copy).await;
            panic!("boom in the job");
        },
        std::future::pending(),
    );
    let err = tokio::time::timeout(Duration::from_secs(10), result)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, AppError::JobPanicked(m) if m == "boom in the job"),
        "{err}"
    );
    assert_eq!(read_state_file(&path).unwrap().phase, Phase::Copy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_state_file_fails_before_the_job_starts() {
    let dir = tempfile::tempdir().unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&started);
    let err = app::run(
        Collector::new(),
        // A directory where the file should be.
        surfaces(dir.path().to_owned()).await,
        move |_, _| async move { flag.store(true, Ordering::SeqCst) },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AppError::StateFile { .. }), "{err}");
    assert!(!started.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_write_that_fails_is_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let path = home.join("state.json");
    let moved = home.clone();
    let err = app::run(
        Collector::new(),
        surfaces(path).await,
        move |_, _| async move {
            // The directory turns into a file: no write can land.
            std::fs::remove_dir_all(&moved).unwrap();
            std::fs::write(&moved, "").unwrap();
        },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AppError::FinalWrite { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_migrations_run_each_to_its_state_file_behind_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = tokio::sync::oneshot::channel::<()>();
    let migration = |id: &str, phase: Phase| {
        app::Migration::new(
            id,
            Collector::new(),
            dir.path().join(id).join("state.json"),
            move |collector: Collector, stop| async move {
                collector.set_phase(phase).await;
                stop.await;
            },
        )
    };
    let running = tokio::spawn(app::run_migrations(
        vec![
            migration("shop", Phase::Copy),
            migration("crm", Phase::Streaming),
        ],
        listener,
        HttpConfig::default(),
        false,
        async {
            let _ = shutdown.await;
        },
    ));
    let url = format!("http://{addr}/api/v1/migrations/crm/status");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = crate::http::get(&url, &[]).await;
        if status == 200 && body.contains("\"phase\":\"streaming\"") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    trigger.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // Each final state in its own file.
    for (id, phase) in [("shop", Phase::Copy), ("crm", Phase::Streaming)] {
        let state = read_state_file(&dir.path().join(id).join("state.json")).unwrap();
        assert_eq!(state.phase, phase, "{id}");
    }

    // A repeated id fails before anything starts: no state file appears.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let twice = app::run_migrations(
        vec![migration("dup", Phase::Copy), migration("dup", Phase::Copy)],
        listener,
        HttpConfig::default(),
        false,
        std::future::pending(),
    )
    .await;
    assert!(matches!(twice, Err(AppError::Serve(_))), "{twice:?}");
    assert!(!dir.path().join("dup").exists());
}
