//! `pgmigrator monitor` against two real PostgreSQL 15 clusters: a
//! publication on the source, a subscription on the destination.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pgmigrator_metrics::pg::{self, Monitor, MonitorConfig};
use pgmigrator_metrics::{Collector, Phase, Snapshot, TableStatus};
use tokio::time::{Instant, sleep, timeout};

use crate::cluster::{self, Cluster, MONITOR_PASSWORD};

const TABLES: [(&str, i64); 3] = [("big", 200_000), ("mid", 50_000), ("fresh", 30_000)];

/// A source with three tables (two analysed, `fresh` never) published for
/// all tables, and a destination with a disabled subscription to it.
pub(crate) fn replication_pair() -> (Cluster, Cluster) {
    let (source, dest) = (Cluster::start(true), Cluster::start(false));
    for cluster in [&source, &dest] {
        cluster.sql("CREATE TABLE big (id bigint PRIMARY KEY, payload text)");
        cluster.sql("CREATE TABLE mid (id bigint PRIMARY KEY, payload text)");
        cluster.sql("CREATE TABLE fresh (id bigint, payload text)");
    }
    for (table, rows) in TABLES {
        source.sql(&format!(
            "INSERT INTO {table} SELECT g, md5(g::text) FROM generate_series(1, {rows}) g"
        ));
    }
    source.sql("ANALYZE big");
    source.sql("ANALYZE mid");
    source.sql("CREATE PUBLICATION pub FOR ALL TABLES");
    dest.sql(&format!(
        "CREATE SUBSCRIPTION sub CONNECTION '{}' PUBLICATION pub WITH (enabled = false)",
        source.conninfo()
    ));
    (source, dest)
}

fn config(source: &Cluster, dest: &Cluster) -> MonitorConfig {
    MonitorConfig {
        interval: Duration::from_millis(100),
        ..MonitorConfig::new(
            source.monitor_uri().parse().unwrap(),
            dest.monitor_uri().parse().unwrap(),
        )
    }
}

/// Waits until `check` holds for the collector's snapshot (at most `limit`).
pub(crate) async fn wait_for(
    collector: &Collector,
    what: &str,
    limit: Duration,
    check: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = Instant::now() + limit;
    loop {
        let snapshot = collector.snapshot();
        if check(&snapshot) {
            return snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}; last snapshot: {snapshot:#?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_follows_copy_streaming_lag_and_a_source_restart() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = replication_pair();
    let reltuples = source.sql("SELECT relname || '=' || reltuples FROM pg_class WHERE relname IN ('big','fresh') ORDER BY 1");
    assert_eq!(
        reltuples, "big=200000\nfresh=-1",
        "the fixture needs one table never analysed"
    );

    let collector = Collector::builder()
        .tick(Duration::from_millis(100))
        .build();
    let started = std::time::Instant::now();
    let monitor = Monitor::connect(config(&source, &dest)).await.unwrap();
    println!("plain connect (two connections): {:?}", started.elapsed());
    assert_eq!(monitor.subscription(), "sub");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(pg::run(collector.clone(), monitor, async {
        let _ = stopped.await;
    }));

    // Record every status each table is seen in.
    let seen: Arc<Mutex<HashMap<String, Vec<TableStatus>>>> = Arc::default();
    let mut watch = collector.watch();
    let log = Arc::clone(&seen);
    let observer = tokio::spawn(async move {
        while watch.changed().await.is_ok() {
            let snapshot = watch.borrow_and_update().clone();
            let mut seen = log.lock().unwrap();
            for t in &snapshot.tables {
                let statuses = seen.entry(t.name.clone()).or_default();
                if statuses.last() != Some(&t.status) {
                    statuses.push(t.status);
                }
            }
        }
    });

    // 1. Pending until the subscription is enabled, then the whole lifecycle.
    let listed = wait_for(
        &collector,
        "three pending tables",
        Duration::from_secs(10),
        |s| s.tables_total == 3 && s.tables.iter().all(|t| t.status == TableStatus::Pending),
    )
    .await;
    assert_eq!(listed.phase, Phase::Copy);
    // The destination's max_sync_workers_per_subscription, for the forecast.
    assert_eq!(listed.copy_workers, Some(2));
    let names: Vec<&str> = listed.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names[0], "big", "largest first: {names:?}");
    let big = listed.tables.iter().find(|t| t.name == "big").unwrap();
    assert_eq!(big.rows_total, 200_000);
    assert!(
        listed
            .tables
            .iter()
            .find(|t| t.name == "fresh")
            .unwrap()
            .rows_total
            <= 0
    );

    dest.sql("ALTER SUBSCRIPTION sub ENABLE");
    let done = wait_for(
        &collector,
        "every table streaming",
        Duration::from_secs(60),
        |s| {
            s.phase == Phase::Streaming
                && s.tables.iter().all(|t| t.status == TableStatus::Streaming)
        },
    )
    .await;
    for (table, rows) in TABLES {
        let t = done.tables.iter().find(|t| t.name == table).unwrap();
        assert_eq!(t.rows_copied, rows, "{table}");
        assert_eq!(t.percent, 100.0);
    }
    {
        let seen = seen.lock().unwrap();
        let order = [
            TableStatus::Pending,
            TableStatus::Copying,
            TableStatus::Copied,
            TableStatus::Streaming,
        ];
        for (table, statuses) in seen.iter() {
            let ranks: Vec<usize> = statuses
                .iter()
                .map(|s| order.iter().position(|o| o == s).unwrap())
                .collect();
            assert!(
                ranks.windows(2).all(|w| w[0] < w[1]),
                "{table}: {statuses:?}"
            );
            assert_eq!(statuses.last(), Some(&TableStatus::Streaming), "{table}");
        }
        assert!(
            seen.values().any(|s| s.contains(&TableStatus::Copying)),
            "no table was ever seen copying: {seen:?}"
        );
    }
    let phases: Vec<Phase> = done.phases.iter().map(|p| p.phase.clone()).collect();
    assert!(
        phases.ends_with(&[Phase::Copy, Phase::Streaming]),
        "{phases:?}"
    );

    // 2. Streaming: 10,000 new rows are applied; the lag rises and clears.
    let caught_up = wait_for(&collector, "caught up", Duration::from_secs(30), |s| {
        s.caught_up && s.lag_bytes == 0
    })
    .await;
    let before = caught_up.total_rows;
    let max_lag = Arc::new(Mutex::new(0u64));
    let mut watch = collector.watch();
    let lag_log = Arc::clone(&max_lag);
    let lag_watcher = tokio::spawn(async move {
        while watch.changed().await.is_ok() {
            let lag = watch.borrow_and_update().lag_bytes;
            let mut max = lag_log.lock().unwrap();
            *max = (*max).max(lag);
        }
    });
    source.sql("INSERT INTO fresh SELECT g, repeat('x', 2000) FROM generate_series(1, 10000) g");
    let applied = wait_for(
        &collector,
        "10,000 rows applied and caught up",
        Duration::from_secs(60),
        |s| s.total_rows >= before + 10_000 && s.lag_bytes == 0 && s.caught_up,
    )
    .await;
    assert_eq!(applied.total_rows, before + 10_000);
    lag_watcher.abort();
    assert!(
        *max_lag.lock().unwrap() > 0,
        "the lag never rose while 20 MB were applied"
    );

    // An idle source shows no lag, in bytes or in time, for 3 s of
    // snapshots (the window is proved by their timestamps).
    let idle_from = applied.timestamp;
    let idle = wait_for(
        &collector,
        "3 s of idle snapshots",
        Duration::from_secs(30),
        |s| s.timestamp >= idle_from + Duration::from_secs(3),
    )
    .await;
    assert_eq!(
        (idle.lag_bytes, idle.lag_seconds, idle.caught_up),
        (0, 0.0, true),
        "{idle:#?}"
    );

    // 3. Time lag: with the subscription disabled (its worker gone),
    // writes wait.
    dest.sql("ALTER SUBSCRIPTION sub DISABLE");
    let stopped = Instant::now() + Duration::from_secs(30);
    let workers =
        "SELECT count(*) FROM pg_stat_subscription WHERE subname = 'sub' AND pid IS NOT NULL";
    while dest.sql(workers) != "0" {
        assert!(Instant::now() < stopped, "the apply worker never stopped");
        sleep(Duration::from_millis(50)).await;
    }
    source.sql("INSERT INTO mid SELECT g, 'late' FROM generate_series(100001, 100100) g");
    let waiting = wait_for(
        &collector,
        "3 s of time lag",
        Duration::from_secs(30),
        |s| s.lag_seconds >= 3.0,
    )
    .await;
    assert!(waiting.lag_bytes > 0 && !waiting.caught_up, "{waiting:#?}");
    dest.sql("ALTER SUBSCRIPTION sub ENABLE");
    wait_for(
        &collector,
        "the lag to clear",
        Duration::from_secs(30),
        |s| s.lag_bytes == 0 && s.lag_seconds == 0.0 && s.caught_up,
    )
    .await;

    // 4. The source stops and comes back.
    let errors_before = collector.snapshot().error_count;
    source.stop();
    let lost = wait_for(
        &collector,
        "an error for the lost source",
        Duration::from_secs(20),
        |s| s.error_count > errors_before,
    )
    .await;
    assert!(lost.last_error.contains("source"), "{}", lost.last_error);
    assert!(
        lost.last_error.contains("postgres://monitor@127.0.0.1:"),
        "{}",
        lost.last_error
    );
    assert!(
        !serde_json::to_string(&*lost)
            .unwrap()
            .contains(MONITOR_PASSWORD)
    );
    source.restart();
    let rows_before = collector.snapshot().total_rows;
    source.sql("INSERT INTO mid VALUES (900001, 'after restart')");
    wait_for(
        &collector,
        "recovery after the restart",
        Duration::from_secs(60),
        |s| s.total_rows > rows_before && s.caught_up,
    )
    .await;

    stop.send(()).unwrap();
    running.await.unwrap();
    observer.abort();
}

/// The changes applied to `table` as `snapshot` shows them.
pub(crate) fn changes(snapshot: &Snapshot, table: &str) -> u64 {
    snapshot
        .tables
        .iter()
        .find(|t| t.name == table)
        .map_or(0, |t| t.changes_applied)
}

/// `pgmigrator monitor` with `args`; returns (exit code, stderr).
fn monitor_cli(args: &[String]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .arg("monitor")
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env("PGMIGRATOR_HOME", dir.path())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn bad_input_gets_one_line_exit_1_and_no_password() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = replication_pair();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--source".into(),
                format!("postgres://monitor:{MONITOR_PASSWORD}@127.0.0.1:{closed}/postgres"),
                "--dest".into(),
                dest.monitor_uri(),
            ],
            "cannot connect to the source",
        ),
        (
            vec![
                "--source".into(),
                source.monitor_uri().replace(MONITOR_PASSWORD, "wrong-pass"),
                "--dest".into(),
                dest.monitor_uri(),
            ],
            "password authentication failed",
        ),
        (
            vec![
                "--source".into(),
                source.monitor_uri(),
                "--dest".into(),
                dest.monitor_uri(),
                "--subscription".into(),
                "nope".into(),
            ],
            "no subscription named \"nope\"",
        ),
        (
            vec![
                "--source".into(),
                dest.monitor_uri(),
                "--dest".into(),
                dest.monitor_uri(),
            ],
            "wal_level=replica",
        ),
        (
            vec![
                "--source".into(),
                source.monitor_uri(),
                "--dest".into(),
                source.monitor_uri(),
            ],
            "no subscription in the destination database",
        ),
        (
            vec![
                "--source".into(),
                format!("{}?sslmode=require", source.monitor_uri()),
                "--dest".into(),
                dest.monitor_uri(),
            ],
            "the server does not support TLS, which sslmode=require requires",
        ),
    ];
    for (args, expected) in cases {
        let (code, stderr) = monitor_cli(&args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in {stderr}"
        );
        assert!(
            !stderr.contains(MONITOR_PASSWORD) && !stderr.contains("wrong-pass"),
            "{stderr}"
        );
    }
}

/// Every byte `pgmigrator monitor` shows anyone, through a start, a lost
/// source and its return: stderr, stdout, `state.json`, every API path,
/// the WebSocket frames and `status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_reaches_no_surface_through_a_source_restart() {
    use std::io::{BufRead, BufReader};

    use futures_util::StreamExt;

    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = replication_pair();
    dest.sql("ALTER SUBSCRIPTION sub ENABLE");
    let home = tempfile::tempdir().unwrap();
    let stderr_path = home.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["monitor", "--interval", "200ms", "--listen", "127.0.0.1:0"])
        // The cutover checks and row counts connect with the password too.
        .args(["--check-interval", "200ms", "--counts"])
        .args(["--source", &source.monitor_keywords()])
        .args(["--dest", &dest.monitor_uri()])
        .env("PGMIGRATOR_HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut shown = String::new();
    stdout.read_line(&mut shown).unwrap();
    let url = shown
        .trim()
        .strip_prefix("Dashboard: ")
        .unwrap_or_else(|| panic!("unexpected first line {shown:?}"))
        .trim_end_matches('/')
        .to_owned();
    let child = crate::Running(child);

    let ws_url = format!("{}/api/v1/ws", url.replacen("http://", "ws://", 1));
    let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    let frames = tokio::spawn(async move {
        ws.filter_map(|m| async move { m.ok().map(|m| m.to_string()) })
            .collect::<Vec<String>>()
            .await
    });
    let status = |path: &'static str| {
        let url = format!("{url}{path}");
        async move { crate::http::get(&url, &[]).await.2 }
    };
    let wait = |what: &'static str, check: fn(&Snapshot) -> bool| {
        let status = &status;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let snapshot: Snapshot =
                    serde_json::from_str(&status("/api/v1/status").await).unwrap();
                if check(&snapshot) {
                    return;
                }
                assert!(Instant::now() < deadline, "never saw {what}: {snapshot:#?}");
                sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait("the tables", |s| s.tables_total == 3).await;
    source.stop();
    wait("the lost source", |s| s.error_count > 0).await;
    source.restart();
    let logs_say_reconnected = || async { status("/api/v1/logs").await.contains("reconnected") };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !logs_say_reconnected().await {
        assert!(Instant::now() < deadline, "never reconnected");
        sleep(Duration::from_millis(100)).await;
    }

    wait("a cutover verdict", |s| s.cutover.is_some()).await;

    let mut everything = String::new();
    for path in [
        "/api/v1/cutover",
        "/api/v1/status",
        "/api/v1/tables",
        "/api/v1/logs",
        "/metrics",
        "/",
    ] {
        everything.push_str(&status(path).await);
    }
    // SIGTERM: the final write, then exit.
    let mut child = child;
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert!(child.0.wait().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    everything.push_str(&shown);
    everything.push_str(&rest);
    everything.push_str(&std::fs::read_to_string(&stderr_path).unwrap());
    let frames = timeout(Duration::from_secs(10), frames)
        .await
        .unwrap()
        .unwrap();
    assert!(frames.len() > 2, "{} frames", frames.len());
    everything.push_str(&frames.concat());
    let state = std::fs::read_to_string(home.path().join("state.json")).unwrap();
    assert!(state.contains("postgres://monitor@127.0.0.1:"), "{state}");
    everything.push_str(&state);
    for args in [&["status"][..], &["status", "--json"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
            .args(args)
            .env("PGMIGRATOR_HOME", home.path())
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(
            shown.contains("Cutover:") || shown.contains("\"cutover\""),
            "{shown}"
        );
        everything.push_str(&shown);
        everything.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    for secret in [MONITOR_PASSWORD, "pw9f3", "x7q", "pw9f3%2F"] {
        assert!(!everything.contains(secret), "{secret:?} leaked");
    }
}

/// `pgmigrator monitor` with `env` and `HOME` set: the running process once
/// it serves, or its exit code and stderr.
fn monitor_with_env(
    source: &str,
    dest: &str,
    env: &[(&str, &str)],
    home: &std::path::Path,
) -> Result<crate::Running, (Option<i32>, String)> {
    use std::io::{BufRead, BufReader, Read};
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgmigrator"));
    command
        .args([
            "monitor",
            "--listen",
            "127.0.0.1:0",
            "--source",
            source,
            "--dest",
            dest,
        ])
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env("HOME", home)
        .env("PGMIGRATOR_HOME", home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.starts_with("Dashboard: ") {
        return Ok(crate::Running(child));
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Err((status.code(), stderr))
}

#[test]
fn the_password_can_come_from_pgpassword_or_a_private_pgpass_and_never_from_argv() {
    use std::os::unix::fs::PermissionsExt;
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = replication_pair();
    // No password in the strings, so none in the process list.
    let without =
        |cluster: &Cluster| format!("postgres://monitor@127.0.0.1:{}/postgres", cluster.port);
    let (source_uri, dest_uri) = (without(&source), without(&dest));
    let home = tempfile::tempdir().unwrap();

    let running = monitor_with_env(
        &source_uri,
        &dest_uri,
        &[("PGPASSWORD", MONITOR_PASSWORD)],
        home.path(),
    )
    .unwrap_or_else(|(code, stderr)| panic!("PGPASSWORD: exit {code:?}: {stderr}"));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", running.0.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("pw9f3"));
    drop(running);

    let escaped = MONITOR_PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, format!("127.0.0.1:*:*:monitor:{escaped}\n")).unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let running = monitor_with_env(&source_uri, &dest_uri, &[], home.path())
        .unwrap_or_else(|(code, stderr)| panic!(".pgpass: exit {code:?}: {stderr}"));
    // Let it write its state, then look for the password everywhere.
    std::thread::sleep(Duration::from_millis(2500));
    drop(running);
    let state = std::fs::read_to_string(home.path().join("state.json")).unwrap();
    assert!(!state.contains("pw9f3"), "{state}");

    // A password file others can read is ignored, with libpq's warning.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stderr) = monitor_with_env(&source_uri, &dest_uri, &[], home.path())
        .err()
        .expect("no password: the monitor cannot connect");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("has group or world access"), "{stderr}");
    assert!(!stderr.contains("pw9f3"), "{stderr}");
}

/// Two subscriptions on one pair of clusters, each a migration of its own:
/// `monitor --all-subscriptions --verify` follows both, each with its
/// tables, its verification and its state file, and one scrape labels them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_follows_every_subscription_as_a_migration_of_its_own() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = (Cluster::start(true), Cluster::start(false));
    for cluster in [&source, &dest] {
        for table in ["orders", "users", "items"] {
            cluster.sql(&format!("CREATE TABLE {table} (id bigint PRIMARY KEY)"));
        }
        cluster.sql("GRANT pg_read_all_data TO monitor");
    }
    source.sql("INSERT INTO orders SELECT g FROM generate_series(1, 100) g");
    source.sql("CREATE PUBLICATION pub_shop FOR TABLE orders");
    source.sql("CREATE PUBLICATION pub_crm FOR TABLE users, items");
    for (sub, publication) in [("shop", "pub_shop"), ("crm", "pub_crm")] {
        dest.sql(&format!(
            "CREATE SUBSCRIPTION {sub} CONNECTION '{}' PUBLICATION {publication}",
            source.conninfo()
        ));
    }
    let state_dir = tempfile::tempdir().unwrap();
    let (_monitor, url) = crate::start_pgmigrator(&[
        "monitor".as_ref(),
        "--all-subscriptions".as_ref(),
        "--verify".as_ref(),
        "--interval".as_ref(),
        "200ms".as_ref(),
        "--source".as_ref(),
        source.monitor_uri().as_ref(),
        "--dest".as_ref(),
        dest.monitor_uri().as_ref(),
        "--state-dir".as_ref(),
        state_dir.path().as_os_str(),
    ]);
    let get = |path: String| async move { crate::http::get(&path, &[]).await.2 };
    let deadline = Instant::now() + Duration::from_secs(60);
    let tables = |list: &serde_json::Value, id: &str| {
        list.as_array()
            .and_then(|all| all.iter().find(|m| m["id"] == id))
            .map(|m| (m["tables_total"].clone(), m["tables_copied"].clone()))
    };
    loop {
        let list: serde_json::Value =
            serde_json::from_str(&get(format!("{url}api/v1/migrations")).await).unwrap();
        let copied = |id, total: u64| tables(&list, id) == Some((total.into(), total.into()));
        if copied("shop", 1) && copied("crm", 2) {
            break;
        }
        assert!(Instant::now() < deadline, "never saw both copied: {list}");
        sleep(Duration::from_millis(200)).await;
    }
    let names = |body: String| {
        let tables: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let mut names: Vec<String> = tables
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        names(get(format!("{url}api/v1/migrations/shop/tables")).await),
        ["orders"]
    );
    assert_eq!(
        names(get(format!("{url}api/v1/migrations/crm/tables")).await),
        ["items", "users"]
    );
    let shop: Snapshot =
        serde_json::from_str(&get(format!("{url}api/v1/migrations/shop/status")).await).unwrap();
    assert_eq!(shop.slot.as_ref().map(|s| s.name.as_str()), Some("shop"));
    let metrics = get(format!("{url}metrics")).await;
    for id in ["shop", "crm"] {
        let series = format!("pgmigrator_tables{{migration=\"{id}\",status=\"streaming\"}}");
        assert!(metrics.contains(&series), "{series}: {metrics}");
    }
    crate::tools::promtool_check(&metrics);
    // Each verifies its own tables, and only those.
    let verified = |body: String| {
        let verify: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let mut names: Vec<String> = verify["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["status"] == "verified")
            .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        names.sort();
        names
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    for (id, tables) in [("shop", &["orders"][..]), ("crm", &["items", "users"][..])] {
        loop {
            let found = verified(get(format!("{url}api/v1/migrations/{id}/verify")).await);
            if found == tables {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id} verified {found:?}: {}",
                get(format!("{url}api/v1/migrations/{id}/verify")).await
            );
            sleep(Duration::from_millis(200)).await;
        }
    }
    // Each in its own folder, where `serve --state-dir` finds them.
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in ["shop", "crm"] {
        let state = state_dir.path().join(id).join("state.json");
        while !state.exists() {
            assert!(Instant::now() < deadline, "no {}", state.display());
            sleep(Duration::from_millis(100)).await;
        }
    }
}
