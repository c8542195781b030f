//! Alerts that reach people: rules on a live collector, notifications to
//! a local webhook, Slack-format and command receivers, retries, a dead
//! receiver, restarts, and a bad alerts file.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use pgmigrator_metrics::alerts::{self, AlertsConfig, Dispatcher, RetryPolicy};
use pgmigrator_metrics::http::metrics::render_text;
use pgmigrator_metrics::{AlertState, Collector, Lsn};
use serde_json::Value;
use tokio::time::{Instant, sleep};

/// A webhook receiver on loopback: it answers 500 to the first `failing`
/// requests, then keeps the bodies and answers 200.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
    requests: Arc<AtomicUsize>,
}

async fn receiver(failing: usize) -> Receiver {
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let requests: Arc<AtomicUsize> = Arc::default();
    let (kept, seen) = (Arc::clone(&bodies), Arc::clone(&requests));
    let app = Router::new().route(
        "/hook/s3cret",
        post(move |body: String| {
            let (kept, seen) = (Arc::clone(&kept), Arc::clone(&seen));
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) < failing {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap());
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook/s3cret", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url,
        bodies,
        requests,
    }
}

impl Receiver {
    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits until `count` bodies arrived (10 s at most).
    async fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let bodies = self.bodies();
            if bodies.len() >= count {
                return bodies;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} notifications: {bodies:?}",
                bodies.len()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        waits: vec![Duration::from_millis(100); 4],
        attempt_timeout: Duration::from_millis(500),
    }
}

fn config(rules: &str, notifier_url: &str) -> AlertsConfig {
    let text = format!(
        "migration = \"shop\"\ndashboard_url = \"http://127.0.0.1:7654/\"\n{rules}\n\
         [[notifier]]\nkind = \"webhook\"\nurl = \"{notifier_url}\"\n"
    );
    AlertsConfig::parse(&text, "alerts.toml").unwrap()
}

/// A collector `lag` bytes behind, having applied up to `applied` (which
/// only moves forward).
async fn lagging(collector: &Collector, applied: u64, lag: u64) {
    collector.record_applied(Lsn(applied), 0, 0).await;
    collector.record_latest_lsn(Lsn(applied + lag)).await;
}

async fn start(
    config: AlertsConfig,
    saved: &std::path::Path,
    retry: RetryPolicy,
) -> (Collector, Dispatcher) {
    let collector = Collector::builder().tick(Duration::from_millis(50)).build();
    let dispatcher = Dispatcher::start(&config, retry).unwrap();
    tokio::spawn(alerts::run(
        collector.snapshots(),
        Some(collector.clone()),
        config,
        dispatcher.clone(),
        Some(saved.to_owned()),
    ));
    (collector, dispatcher)
}

const LAG_RULE: &str = "[[rule]]\nname = \"lag\"\nwhen = \"lag_bytes > 1MB\"\nfor = \"1s\"\n\
                        severity = \"critical\"\nsummary = \"lag is {value} (over {threshold})\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_fires_once_reminds_resolves_once_and_a_restart_does_not_tell_again() {
    let hook = receiver(0).await;
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("state.alerts.json");
    let rules = format!("{LAG_RULE}repeat = \"2s\"\n");
    let (collector, _) = start(config(&rules, &hook.url), &saved, quick_retries()).await;

    lagging(&collector, 10_000_000, 2_000_000).await;
    let started = Instant::now();
    let fired = hook.wait_for(1).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "fired before its for"
    );
    let firing = &fired[0];
    assert_eq!(firing["alert"], "lag");
    assert_eq!(firing["state"], "firing");
    assert_eq!(firing["reminder"], false);
    assert_eq!(firing["severity"], "critical");
    assert_eq!(firing["value"], "1.91 MiB");
    assert_eq!(firing["threshold"], "1MB");
    assert_eq!(firing["summary"], "lag is 1.91 MiB (over 1MB)");
    assert_eq!(firing["migration"], "shop");
    assert_eq!(firing["dashboard_url"], "http://127.0.0.1:7654/");
    assert!(firing["since"].as_str().unwrap().ends_with('Z'));
    // Every surface reads it from the snapshot.
    let deadline = Instant::now() + Duration::from_secs(5);
    while collector.snapshot().alerts.first().map(|a| a.state) != Some(AlertState::Firing) {
        assert!(Instant::now() < deadline, "never in the snapshot");
        sleep(Duration::from_millis(20)).await;
    }
    let metrics = render_text(collector.snapshot());
    assert!(
        metrics.contains("pgmigrator_alerts_firing{severity=\"critical\"} 1"),
        "{metrics}"
    );

    let reminded = hook.wait_for(2).await;
    assert_eq!(reminded[1]["reminder"], true, "{reminded:?}");
    assert_eq!(reminded[1]["since"], firing["since"]);

    lagging(&collector, 12_000_000, 0).await;
    let resolved = hook.wait_for(3).await;
    assert_eq!(resolved[2]["state"], "resolved");

    // Firing again: the next notification, so "resolved" was sent once.
    lagging(&collector, 20_000_000, 2_000_000).await;
    let again = hook.wait_for(4).await;
    assert_eq!(again[3]["state"], "firing", "resolved once: {again:?}");
    collector.close().await;
    let kept = Instant::now() + Duration::from_secs(5);
    while !saved.exists() {
        assert!(
            Instant::now() < kept,
            "the firing alert is kept beside the state"
        );
        sleep(Duration::from_millis(20)).await;
    }
    // A restart on the same saved state: shown as firing, not re-sent.
    let (restarted, _) = start(config(LAG_RULE, &hook.url), &saved, quick_retries()).await;
    lagging(&restarted, 20_000_000, 2_000_000).await;
    // Lagging for longer than the rule's `for` (1 s), as the snapshots'
    // own clock shows: a restart that forgot would fire again by then.
    let from = restarted.snapshot().timestamp + Duration::from_millis(1500);
    let shown = Instant::now() + Duration::from_secs(10);
    loop {
        let snapshot = restarted.snapshot();
        let firing = snapshot.alerts.first().map(|a| a.state) == Some(AlertState::Firing);
        if firing && snapshot.timestamp >= from {
            break;
        }
        assert!(
            Instant::now() < shown,
            "still shown as firing: {:?}",
            snapshot.alerts
        );
        sleep(Duration::from_millis(20)).await;
    }
    // The next notification is the resolution: nothing came between.
    lagging(&restarted, 22_000_000, 0).await;
    let after = hook.wait_for(5).await;
    assert_eq!(after[4]["state"], "resolved", "not re-sent: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_it_after_retries_and_a_dead_one_is_counted() {
    let flaky = receiver(3).await;
    let dir = tempfile::tempdir().unwrap();
    let rule = "[[rule]]\nname = \"lag\"\nwhen = \"lag_bytes > 1MB\"\n";
    let (collector, _) = start(
        config(rule, &flaky.url),
        &dir.path().join("a.json"),
        quick_retries(),
    )
    .await;
    lagging(&collector, 10_000_000, 2_000_000).await;
    flaky.wait_for(1).await;
    assert_eq!(flaky.requests.load(Ordering::SeqCst), 4, "after three 500s");
    // The next notification is the resolution: the firing one was
    // delivered once, and nothing was sent again after it.
    lagging(&collector, 12_000_000, 0).await;
    let both = flaky.wait_for(2).await;
    assert_eq!(both[1]["state"], "resolved", "delivered once: {both:?}");
    assert_eq!(flaky.requests.load(Ordering::SeqCst), 5);
    assert_eq!(collector.snapshot().notifications_failed, 0);

    // Accepts connections, never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let (collector, dispatcher) = start(
        config(rule, &url),
        &dir.path().join("b.json"),
        quick_retries(),
    )
    .await;
    lagging(&collector, 10_000_000, 2_000_000).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while collector.snapshot().notifications_failed == 0 {
        assert!(Instant::now() < deadline, "never given up on");
        // Each tick is a snapshot; the collector keeps publishing.
        collector.record_latest_lsn(Lsn(12_000_000)).await;
        sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dispatcher.failed(), 1);
    let metrics = render_text(collector.snapshot());
    assert!(
        metrics.contains("pgmigrator_notifications_failed_total 1"),
        "{metrics}"
    );
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_gets_a_readable_message_and_a_command_gets_the_json() {
    let slack = receiver(0).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("notification.json");
    let text = format!(
        "migration = \"shop\"\n{LAG_RULE}\n[[notifier]]\nkind = \"slack\"\nurl = \"{}\"\n\
         [[notifier]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"cat > '{}'\"]\n",
        slack.url,
        out.display()
    );
    let config = AlertsConfig::parse(&text, "alerts.toml").unwrap();
    let (collector, _) = start(config, &dir.path().join("s.json"), quick_retries()).await;
    lagging(&collector, 10_000_000, 2_000_000).await;
    let message = slack.wait_for(1).await;
    assert_eq!(
        message[0]["text"],
        "[FIRING] critical · shop · lag: lag is 1.91 MiB (over 1MB) (value 1.91 MiB, threshold 1MB)"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let written = loop {
        if let Ok(text) = std::fs::read_to_string(&out)
            && !text.is_empty()
        {
            break text;
        }
        assert!(Instant::now() < deadline, "the command never ran");
        sleep(Duration::from_millis(50)).await;
    };
    let json: Value = serde_json::from_str(&written).unwrap();
    assert_eq!(json["alert"], "lag");
    assert_eq!(json["state"], "firing");
}

#[cfg(feature = "cli")]
#[test]
fn a_bad_alerts_file_stops_the_command_with_one_line_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, says) in [
        (
            "[[rule]]\nname = \"x\"\nwhen = \"lag > 1MB\"\n",
            "alerts.toml:3: unknown quantity \"lag\"",
        ),
        (
            "[[rule]]\nname = \"x\"\nwhen = \"lag_bytes > 1XB\"\n",
            "alerts.toml:3: unknown size unit \"XB\"",
        ),
        (
            "[[rule]]\nname = \"x\"\n",
            "alerts.toml:1: missing field `when`",
        ),
    ] {
        let file = dir.path().join("alerts.toml");
        std::fs::write(&file, text).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
            .args(["demo", "--listen", "127.0.0.1:0", "--alerts"])
            .arg(&file)
            .env("PGMIGRATOR_HOME", dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_notifies_once_and_a_restart_on_the_same_state_does_not_notify_again() {
    let hook = receiver(0).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.toml");
    std::fs::write(
        &file,
        format!(
            "[[rule]]\nname = \"running\"\nwhen = \"rows_per_sec >= 0\"\nseverity = \"info\"\n\
             [[notifier]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url
        ),
    )
    .unwrap();
    let run_demo = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--speed",
                "10",
                "--alerts",
            ])
            .arg(&file)
            .env("PGMIGRATOR_HOME", dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let stop = |child: std::process::Child| {
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let mut child = child;
        assert!(child.wait().unwrap().success());
    };
    let first = run_demo();
    let fired = hook.wait_for(1).await;
    assert_eq!(fired[0]["alert"], "running");
    assert_eq!(fired[0]["migration"], "pgmigrator");
    // The firing alert is kept beside the state before the stop.
    let kept = Instant::now() + Duration::from_secs(10);
    while !dir.path().join("state.alerts.json").exists() {
        assert!(Instant::now() < kept, "the alert state was never kept");
        sleep(Duration::from_millis(20)).await;
    }
    stop(first);
    assert_eq!(hook.bodies().len(), 1, "once: {:?}", hook.bodies());

    // The second run has evaluated the rule (its state file shows the
    // alert firing, written after it started) before it is stopped.
    let started = time::OffsetDateTime::now_utc();
    let second = run_demo();
    let evaluated = Instant::now() + Duration::from_secs(10);
    loop {
        let state = pgmigrator_metrics::read_state_file(&dir.path().join("state.json"));
        if state.is_ok_and(|s| {
            s.timestamp > started && s.alerts.iter().any(|a| a.state == AlertState::Firing)
        }) {
            break;
        }
        assert!(
            Instant::now() < evaluated,
            "the second run never evaluated the rule"
        );
        sleep(Duration::from_millis(50)).await;
    }
    stop(second);
    assert_eq!(hook.bodies().len(), 1, "not again: {:?}", hook.bodies());
}

#[cfg(all(feature = "postgres", feature = "cli"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_subscription_fires_the_lag_and_slot_rules_and_enabling_it_resolves_them() {
    use crate::cluster::{self, Cluster};
    use pgmigrator_metrics::pg::{self, Monitor, MonitorConfig};
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = (Cluster::start(true), Cluster::start(false));
    for cluster in [&source, &dest] {
        cluster.sql("CREATE TABLE t (id bigint PRIMARY KEY)");
    }
    source.sql("CREATE PUBLICATION pub FOR ALL TABLES");
    dest.sql(&format!(
        "CREATE SUBSCRIPTION sub CONNECTION '{}' PUBLICATION pub",
        source.conninfo()
    ));
    let hook = receiver(0).await;
    let rules = "[[rule]]\nname = \"lag\"\nwhen = \"lag_bytes > 0\"\nfor = \"1s\"\n\
                 [[rule]]\nname = \"slot_inactive\"\nwhen = \"slot.active == false\"\nfor = \"1s\"\n";
    let config = AlertsConfig::parse(
        &format!(
            "{rules}[[notifier]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url
        ),
        "alerts.toml",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (collector, _) = start(config, &dir.path().join("a.json"), quick_retries()).await;
    let monitor = Monitor::connect(MonitorConfig {
        interval: Duration::from_millis(200),
        ..MonitorConfig::new(
            source.monitor_uri().parse().unwrap(),
            dest.monitor_uri().parse().unwrap(),
        )
    })
    .await
    .unwrap();
    tokio::spawn(pg::run(collector.clone(), monitor, std::future::pending()));
    let caught_up = Instant::now() + Duration::from_secs(60);
    while !(collector.snapshot().caught_up
        && collector.snapshot().slot.as_ref().is_some_and(|s| s.active))
    {
        assert!(Instant::now() < caught_up, "never streaming");
        sleep(Duration::from_millis(100)).await;
    }
    sleep(Duration::from_millis(1500)).await;
    assert!(hook.bodies().is_empty(), "{:?}", hook.bodies());

    dest.sql("ALTER SUBSCRIPTION sub DISABLE");
    source.sql("INSERT INTO t SELECT generate_series(1, 100)");
    let fired = hook.wait_for(2).await;
    let mut names: Vec<&str> = fired.iter().map(|b| b["alert"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["lag", "slot_inactive"]);
    assert!(fired.iter().all(|b| b["state"] == "firing"));

    dest.sql("ALTER SUBSCRIPTION sub ENABLE");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let bodies = hook.bodies();
        let resolved: Vec<&str> = bodies
            .iter()
            .filter(|b| b["state"] == "resolved")
            .map(|b| b["alert"].as_str().unwrap())
            .collect();
        if resolved.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "never resolved: {bodies:?}");
        sleep(Duration::from_millis(100)).await;
    }
    collector.close().await;
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_test_sends_one_notification_to_each_notifier_and_reports_each() {
    let hook = receiver(0).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.toml");
    std::fs::write(
        &file,
        format!(
            "[[notifier]]\nkind = \"webhook\"\nurl = \"{}\"\n\
             [[notifier]]\nkind = \"slack\"\nurl = \"http://{closed}/services/s3cret\"\n",
            hook.url
        ),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["alerts", "test", "--alerts"])
        .arg(&file)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let port = hook
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert!(
        stdout.contains(&format!("webhook 127.0.0.1:{port}: delivered")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("slack {closed}: failed: connecting:")),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"), "{stdout}");
    let sent = hook.wait_for(1).await;
    assert_eq!(sent[0]["alert"], "test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhooks_verify_the_receiver_against_the_system_roots_or_a_given_ca() {
    use hyper_util::rt::TokioIo;

    let ca = crate::pki::Ca::new("webhook CA");
    let leaf = ca.issue(&["localhost"], "localhost");
    let tls = leaf.server_config();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = Arc::clone(&bodies);
    let app = Router::new().route(
        "/hook",
        post(move |body: String| {
            let kept = Arc::clone(&kept);
            async move {
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap());
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path(), "ca.pem");
    let text = format!(
        "[[notifier]]\nkind = \"webhook\"\nurl = \"https://127.0.0.1:{port}/hook\"\nca_cert = \"{}\"\n\
         [[notifier]]\nkind = \"webhook\"\nurl = \"https://localhost:{port}/hook\"\nca_cert = \"{}\"\n\
         [[notifier]]\nkind = \"webhook\"\nurl = \"https://localhost:{port}/hook\"\n",
        ca_file.display(),
        ca_file.display()
    );
    let config = AlertsConfig::parse(&text, "alerts.toml").unwrap();
    let outcomes = Dispatcher::test_each(&config, &alerts::Message::test(&config)).await;
    assert!(
        outcomes[0].1.as_ref().is_err_and(|e| e.contains("TLS")),
        "the certificate does not name 127.0.0.1: {outcomes:?}"
    );
    assert_eq!(outcomes[1].1, Ok(()), "{outcomes:?}");
    assert!(
        outcomes[2].1.as_ref().is_err_and(|e| e.contains("TLS")),
        "the system does not trust the test CA: {outcomes:?}"
    );
    let received = bodies.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["alert"], "test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    // Accepts connections and never answers: every delivery waits its
    // whole attempt.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let config = config("", &url);
    let dispatcher = Dispatcher::start(
        &config,
        RetryPolicy {
            waits: vec![],
            attempt_timeout: Duration::from_secs(30),
        },
    )
    .unwrap();
    let sent = alerts::QUEUE_CAPACITY + 100;
    let started = Instant::now();
    for _ in 0..sent {
        dispatcher.send(alerts::Message::test(&config));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "send never waits"
    );
    // At most the queue, the deliveries in flight and the one waiting for
    // a place are kept; the rest are dropped and counted at once.
    let kept = alerts::QUEUE_CAPACITY + 16 + 1;
    let dropped = dispatcher.failed() as usize;
    assert!(
        dropped >= sent - kept && dropped <= 100,
        "{dropped} dropped"
    );
    drop(silent);
}

#[test]
fn an_alerts_file_over_one_mebibyte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.toml");
    std::fs::write(&path, format!("# {}\n", "x".repeat(1024 * 1024))).unwrap();
    let err = AlertsConfig::load(&path).unwrap_err().to_string();
    assert!(err.contains("larger than"), "{err}");
    assert!(err.starts_with(&path.display().to_string()), "{err}");
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_of_several_migrations_names_each_in_its_notifications() {
    use pgmigrator_metrics::{Phase, Snapshot, write_state_file};
    let hook = receiver(0).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.toml");
    std::fs::write(
        &file,
        format!(
            "[[rule]]\nname = \"running\"\nwhen = \"rows_per_sec >= 0\"\nseverity = \"info\"\n\
             [[notifier]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url
        ),
    )
    .unwrap();
    let mut args: Vec<std::ffi::OsString> = vec!["serve".into(), "--alerts".into(), file.into()];
    for name in ["shop", "billing"] {
        let path = dir.path().join(format!("{name}.json"));
        let snapshot = Snapshot {
            phase: Phase::Streaming,
            timestamp: time::OffsetDateTime::now_utc(),
            ..Snapshot::default()
        };
        write_state_file(&path, &snapshot).unwrap();
        args.extend(["--state-file".into(), path.into_os_string()]);
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (_serve, _url) = crate::start_pgmigrator(&args);
    let fired = hook.wait_for(2).await;
    let mut named: Vec<&str> = fired
        .iter()
        .map(|body| body["migration"].as_str().unwrap())
        .collect();
    named.sort();
    assert_eq!(named, ["pgmigrator/billing", "pgmigrator/shop"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_state_file_hours_old_still_dates_notifications_by_the_clock() {
    let hook = receiver(0).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let hour_ago = time::OffsetDateTime::now_utc() - Duration::from_secs(3600);
    let snapshot = pgmigrator_metrics::Snapshot {
        timestamp: hour_ago,
        applied_lsn: Lsn(1),
        latest_lsn: Lsn(10_000_000),
        lag_bytes: 9_999_999,
        ..pgmigrator_metrics::Snapshot::default()
    };
    pgmigrator_metrics::write_state_file(&state, &snapshot).unwrap();
    let mirror = pgmigrator_metrics::StateFileMirror::start(&state);
    let saved = dir.path().join("state.serve.json");
    let config = config(
        "[[rule]]\nname = \"lag\"\nwhen = \"lag_bytes > 1MB\"\nrepeat = \"30m\"\n",
        &hook.url,
    );
    let dispatcher = Dispatcher::start(&config, quick_retries()).unwrap();
    let running = tokio::spawn(alerts::run(
        mirror.snapshots(),
        None,
        config,
        dispatcher,
        Some(saved.clone()),
    ));
    hook.wait_for(1).await;
    let sent = time::OffsetDateTime::now_utc();
    let deadline = Instant::now() + Duration::from_secs(10);
    let last_sent = loop {
        let kept: Option<Value> = std::fs::read(&saved)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        if let Some(at) = kept
            .as_ref()
            .and_then(|k| k["firing"]["lag"]["last_sent"].as_str())
        {
            break time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .unwrap();
        }
        assert!(Instant::now() < deadline, "the alert state was never saved");
        sleep(Duration::from_millis(20)).await;
    };
    running.abort();
    // Within the test's few seconds, not the file's hour: a restart would
    // otherwise remind at once.
    assert!(
        (sent - last_sent).abs() < time::Duration::seconds(30),
        "last_sent {last_sent}, sent about {sent}"
    );
}

#[cfg(feature = "cli")]
#[test]
fn a_command_notifier_gets_a_clean_environment_and_only_the_variables_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env.txt");
    let file = dir.path().join("alerts.toml");
    std::fs::write(
        &file,
        format!(
            "[[notifier]]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"env > '{}'\"]\n\
             env = [\"EXTRA_VAR\"]\n",
            out.display()
        ),
    )
    .unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["alerts", "test", "--alerts"])
        .arg(&file)
        .env("PGMIGRATOR_TOKEN", "token-secret")
        .env("PGPASSWORD", "password-secret")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret")
        .env("EXTRA_VAR", "wanted")
        .env("LANG", "C.UTF-8")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let env = std::fs::read_to_string(&out).unwrap();
    assert!(!env.contains("secret"), "{env}");
    assert!(env.lines().any(|l| l == "EXTRA_VAR=wanted"), "{env}");
    assert!(env.lines().any(|l| l == "LANG=C.UTF-8"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
}
