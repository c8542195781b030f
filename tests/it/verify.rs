//! Data verification on real clusters: `monitor --verify` in the
//! background through a lost connection, and `check --verify` across
//! PostgreSQL 14 → 18 on every kind of key and column, each difference made
//! on the destination alone found and named by its key, nothing else.

use std::time::Duration;

use pgmigrator_metrics::http::metrics::render_text;
use pgmigrator_metrics::pg::{self, Monitor, MonitorConfig, VerifyOptions};
use pgmigrator_metrics::{Collector, CutoverKind, Snapshot, TableVerification, VerifyStatus};
use serde_json::Value;
use tokio::time::sleep;

use crate::cluster::{self, Cluster};
use crate::cutover::{check, streaming_pair};
use crate::postgres::wait_for;

/// Waits (60 s at most) until the destination holds as many rows of
/// `table` as the source.
async fn caught_up(source: &Cluster, dest: &Cluster, table: &str) {
    let count = format!("SELECT count(*) FROM {table}");
    for _ in 0..600 {
        if source.sql(&count) == dest.sql(&count) {
            return;
        }
        sleep(Duration::from_millis(100)).await;
    }
    panic!("{table} never caught up");
}

fn orders(snapshot: &Snapshot) -> Option<&TableVerification> {
    snapshot
        .verify
        .as_ref()?
        .tables
        .iter()
        .find(|t| t.name == "orders")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_verifies_in_the_background_resumes_after_a_lost_connection_and_finds_a_change() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = streaming_pair();
    source.sql(
        "INSERT INTO orders (item) SELECT repeat('x', 100) || g FROM generate_series(1, 20000) g",
    );
    source.sql("ANALYZE orders");
    caught_up(&source, &dest, "orders").await;
    let collector = Collector::builder()
        .tick(Duration::from_millis(100))
        .build();
    let config = MonitorConfig {
        interval: Duration::from_millis(100),
        verify: Some(VerifyOptions {
            chunk_rows: Some(500),
            // About 3 MB at 400 kB/s: long enough to lose a connection.
            max_rate: Some(400_000),
            interval: Duration::from_secs(1),
            ..VerifyOptions::default()
        }),
        ..MonitorConfig::new(
            source.monitor_uri().parse().unwrap(),
            dest.monitor_uri().parse().unwrap(),
        )
    };
    let monitor = Monitor::connect(config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(pg::run(collector.clone(), monitor, async {
        let _ = stopped.await;
    }));

    let midway = wait_for(
        &collector,
        "verifying under way",
        Duration::from_secs(60),
        |s| orders(s).is_some_and(|t| t.status == VerifyStatus::Verifying && t.chunks_done >= 3),
    )
    .await;
    let before = orders(&midway).unwrap().chunks_done;
    assert!(
        midway
            .cutover
            .as_ref()
            .is_some_and(|c| c.warnings.iter().any(|w| w.kind == CutoverKind::Unverified)),
        "not verified yet is a warning: {:?}",
        midway.cutover
    );
    for cluster in [&source, &dest] {
        cluster.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'pgmigrator verify'",
        );
    }
    let done = wait_for(
        &collector,
        "orders verified",
        Duration::from_secs(90),
        |s| orders(s).is_some_and(|t| t.status == VerifyStatus::Verified),
    )
    .await;
    let table = orders(&done).unwrap();
    // Taken up from the last verified key: each row and chunk once.
    assert_eq!((table.rows, table.chunks_done), (20_100, 41), "{table:?}");
    assert!(before < 41);
    assert_eq!(table.bytes_verified, table.bytes_total);
    assert!(table.verified_at.is_some());

    // Changed on the destination alone: the next round names the row.
    dest.sql("UPDATE orders SET item = 'changed' WHERE id = 77");
    let found = wait_for(
        &collector,
        "a data_mismatch",
        Duration::from_secs(90),
        |s| {
            s.cutover.as_ref().is_some_and(|c| {
                c.blockers.iter().any(|b| {
                    b.kind == CutoverKind::DataMismatch
                        && b.table.as_deref() == Some("public.orders")
                        && b.detail == "1 row(s) differ: (77) (different)"
                })
            })
        },
    )
    .await;
    let metrics = render_text(found.clone());
    for line in [
        "pgmigrator_verify_mismatched_rows{schema=\"public\",table=\"orders\"} 1",
        "pgmigrator_verify_tables{status=\"mismatch\"} 1",
        "# TYPE pgmigrator_verify_bytes_total counter",
        "# TYPE pgmigrator_verify_chunks_retried_total counter",
    ] {
        assert!(metrics.contains(line), "{line:?} in\n{metrics}");
    }
    stop.send(()).unwrap();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_hundreds_of_writes_a_second_a_verification_finds_no_mismatch() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = streaming_pair();
    source.sql("INSERT INTO orders (item) SELECT 'more ' || g FROM generate_series(1, 19900) g");
    source.sql("ANALYZE orders");
    caught_up(&source, &dest, "orders").await;
    // Small transactions updating random rows of the table verified, from
    // a client of their own, until the verification is done (and 60 s at
    // most).
    let (writer, connection) = tokio_postgres::connect(&source.conninfo(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = tokio::spawn({
        let writing = writing.clone();
        async move {
            let started = std::time::Instant::now();
            let mut n: i64 = 0;
            while writing.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(60)
            {
                let id = 1 + (n * 7919) % 20_000;
                writer
                    .execute(
                        "UPDATE orders SET item = 'live ' || $1::bigint WHERE id = $1",
                        &[&id],
                    )
                    .await
                    .unwrap();
                n += 1;
            }
            n as f64 / started.elapsed().as_secs_f64()
        }
    });
    let flags = [
        "--verify",
        "--verify-chunk-rows",
        "1000",
        "--verify-max-rate",
        "0",
        "--json",
    ];
    let checked = check(&source, &dest, &flags).await;
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let per_second = load.await.unwrap();
    let found: Value = serde_json::from_str(&checked.stdout).unwrap();
    let retried = &found["verify"]["chunks_retried"];
    println!("{per_second:.0} updates/s during the verification; {retried} chunks read twice");
    assert!(per_second > 100.0, "{per_second:.0} updates/s");
    assert_eq!(
        found["verify"]["tables"][0]["status"], "verified",
        "{found:#}"
    );
    assert!(
        !found["blockers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["kind"] == "data_mismatch"),
        "{found:#}"
    );
}

/// Rows only the destination holds, more of them than are read row by
/// row: those read are counted and named, re-read in batches, and the
/// rest are said to be uncounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_with_more_extra_rows_than_are_compared_says_the_rest_are_not_counted() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = streaming_pair();
    caught_up(&source, &dest, "orders").await;
    dest.sql(
        "INSERT INTO orders (id, item) SELECT g, 'only here' FROM generate_series(1001, 31000) g",
    );
    let checked = check(&source, &dest, &["--verify", "--json"]).await;
    assert_eq!(checked.code, 3, "{}", checked.stderr);
    let found: Value = serde_json::from_str(&checked.stdout).unwrap();
    let table = &found["verify"]["tables"][0];
    assert_eq!(table["status"], "mismatch", "{table:#}");
    // 20,000 rows read on the destination, the source's 100 among them.
    assert_eq!(table["mismatched_rows"], 19_900, "{table:#}");
    let named = table["differences"].as_array().unwrap();
    assert_eq!(named.len(), 100, "--verify-max-rows");
    assert_eq!(named[0]["key"], "(1001)");
    assert!(named.iter().all(|d| d["kind"] == "extra"), "{named:?}");
    let detail = table["detail"].as_str().unwrap();
    assert!(
        detail.contains("(20000)") && detail.contains("not counted"),
        "{detail}"
    );
    let blocker = found["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["kind"] == "data_mismatch")
        .unwrap_or_else(|| panic!("{found:#}"));
    assert!(
        blocker["detail"]
            .as_str()
            .unwrap()
            .starts_with("19900 row(s) differ: (1001) (extra)"),
        "{blocker:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_monitor_goes_on_from_the_verification_in_its_state_file() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = streaming_pair();
    caught_up(&source, &dest, "orders").await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let (source_uri, dest_uri) = (source.monitor_uri(), dest.monitor_uri());
    let args: Vec<&std::ffi::OsStr> = vec![
        "monitor".as_ref(),
        "--source".as_ref(),
        source_uri.as_ref(),
        "--dest".as_ref(),
        dest_uri.as_ref(),
        "--verify".as_ref(),
        "--verify-interval".as_ref(),
        "1h".as_ref(),
        "--state-file".as_ref(),
        state.as_os_str(),
    ];
    let verified_at = |snapshot: &Snapshot| orders(snapshot).and_then(|t| t.verified_at);
    let read = || pgmigrator_metrics::read_state_file(&state).ok();
    let (first, _) = crate::start_pgmigrator(&args);
    let mut found = None;
    for _ in 0..600 {
        found = read().as_ref().and_then(verified_at);
        if found.is_some() {
            break;
        }
        sleep(Duration::from_millis(100)).await;
    }
    let found = found.expect("orders verified by the first run");
    drop(first);
    let (_second, _) = crate::start_pgmigrator(&args);
    // Past the second run's first look for tables due (every 10 s): the
    // table verified an hour ago or less is not verified again.
    sleep(Duration::from_secs(13)).await;
    let snapshot = read().expect("the second run's state file");
    let table = orders(&snapshot).expect("orders in the verification");
    assert_eq!(table.status, VerifyStatus::Verified, "{table:?}");
    assert_eq!(verified_at(&snapshot), Some(found), "not verified again");
}

/// Every key and column kind the issue names, created on `cluster`; on
/// the destination (`shuffled`), `every_type`'s columns come in another
/// order with a dropped one between them.
fn create_tables(cluster: &Cluster, shuffled: bool) {
    if shuffled {
        cluster.sql(
            "CREATE TABLE every_type (t text, gone int, arr int[], b bytea, jb jsonb, j json, \
             iv interval, ts timestamptz, n numeric, f8 float8, f4 float4, id int PRIMARY KEY)",
        );
        cluster.sql("ALTER TABLE every_type DROP COLUMN gone");
    } else {
        cluster.sql(
            "CREATE TABLE every_type (id int PRIMARY KEY, f4 float4, f8 float8, n numeric, \
             ts timestamptz, iv interval, j json, jb jsonb, b bytea, arr int[], t text)",
        );
    }
    cluster.sql("CREATE TABLE wide (id bigint PRIMARY KEY, note text)");
    cluster.sql("CREATE TABLE composite (name text, n int, v text, PRIMARY KEY (name, n))");
    cluster.sql("CREATE TABLE texts (k text PRIMARY KEY, v text)");
    cluster.sql("CREATE TABLE uuids (id uuid PRIMARY KEY, v text)");
    cluster.sql("CREATE TABLE keyless (v text)");
    cluster.sql("ALTER TABLE keyless REPLICA IDENTITY FULL");
    cluster.sql("GRANT pg_read_all_data TO monitor");
}

async fn every_type_scenario(source_major: u32, dest_major: u32) {
    if !crate::majors::installed(&[source_major, dest_major]) {
        return;
    }
    let source = Cluster::start_major(source_major, true);
    let dest = Cluster::start_major(dest_major, false);
    create_tables(&source, false);
    create_tables(&dest, true);
    // Each server shows time in its own zone; verifying pins UTC.
    source.sql("ALTER DATABASE postgres SET TimeZone = 'America/New_York'");
    dest.sql("ALTER DATABASE postgres SET TimeZone = 'Asia/Tokyo'");
    source.sql(
        "INSERT INTO every_type SELECT g, g / 7.0, g / 3.0, g * 1.000001, \
         '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', g * interval '1 hour', \
         json_build_object('g', g), jsonb_build_object('g', g, 'ü', 'é'), \
         decode(md5(g::text), 'hex'), ARRAY[g, g + 1, NULL], md5(g::text) \
         FROM generate_series(1, 3000) g",
    );
    source.sql(
        "UPDATE every_type SET f4 = 'NaN', f8 = 'Infinity', n = 'NaN' WHERE id = 2; \
         UPDATE every_type SET f4 = '-Infinity', f8 = '-0' WHERE id = 3; \
         UPDATE every_type SET f8 = 0.3, t = NULL WHERE id = 30; \
         UPDATE every_type SET t = NULL WHERE id = 40; \
         UPDATE every_type SET t = '' WHERE id = 41; \
         UPDATE every_type SET t = repeat(md5('toast'), 32768) WHERE id = 50",
    );
    source.sql("INSERT INTO wide SELECT g, 'note ' || g FROM generate_series(1, 5000) g");
    source.sql(
        "INSERT INTO composite VALUES ('é', 1, 'a'), ('é', 2, 'b'), ('ß', 1, 'c'), \
         ('😀', 1, 'd'), ('Z', 1, 'e'), ('a', 1, 'f'), ('a b', 1, NULL), ('a,b', 2, '')",
    );
    source.sql(
        "INSERT INTO texts SELECT 'k' || g, md5(g::text) FROM generate_series(1, 1000) g; \
         INSERT INTO texts VALUES ('é', 'x'), ('ß', 'y'), ('😀', 'z'), ('Z', 'w'), ('', 'empty')",
    );
    source.sql(
        "INSERT INTO uuids SELECT gen_random_uuid(), md5(g::text) FROM generate_series(1, 500) g",
    );
    source.sql("INSERT INTO keyless SELECT md5(g::text) FROM generate_series(1, 200) g");
    source.sql("CREATE PUBLICATION pub FOR ALL TABLES");
    dest.sql(&format!(
        "CREATE SUBSCRIPTION sub CONNECTION '{}' PUBLICATION pub",
        source.conninfo()
    ));
    for table in [
        "every_type",
        "wide",
        "composite",
        "texts",
        "uuids",
        "keyless",
    ] {
        caught_up(&source, &dest, table).await;
    }
    let flags = [
        "--verify",
        "--verify-chunk-rows",
        "500",
        "--verify-max-rate",
        "0",
        "--json",
    ];
    let verified = |json: &Value, name: &str| -> Value {
        json["verify"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {json}"))
            .clone()
    };
    // The copy's tables may still be syncing: retry until all verified
    // and all streaming (a table verified once copied may not have reached
    // `streaming` yet, which holds the verdict back).
    let mut clean = Value::Null;
    for _ in 0..30 {
        let checked = check(&source, &dest, &flags).await;
        clean = serde_json::from_str(&checked.stdout).unwrap_or(Value::Null);
        if clean["verify"]["tables_verified"] == 6 && clean["ready"] == true {
            break;
        }
        sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(clean["verify"]["tables_verified"], 6, "{clean:#}");
    assert_eq!(clean["ready"], true, "{clean:#}");
    assert!(
        verified(&clean, "keyless")["detail"]
            .as_str()
            .unwrap()
            .contains("whole-table digest")
    );
    assert!(
        verified(&clean, "every_type")["chunks_done"]
            .as_u64()
            .unwrap()
            >= 6
    );

    // Made on the destination alone.
    dest.sql(
        "UPDATE every_type SET t = 'changed' WHERE id = 10; \
         DELETE FROM every_type WHERE id = 20; \
         UPDATE every_type SET f8 = 0.30000000000000004 WHERE id = 30; \
         UPDATE every_type SET t = '' WHERE id = 40; \
         DELETE FROM wide WHERE id = 1; \
         UPDATE wide SET note = 'last' WHERE id = 5000; \
         INSERT INTO wide VALUES (999999, 'beyond'), (-5, 'before'); \
         UPDATE composite SET v = 'changed' WHERE name = 'ß'; \
         UPDATE texts SET v = 'changed' WHERE k = '😀'",
    );
    let checked = check(&source, &dest, &flags).await;
    assert_eq!(checked.code, 3, "{}{}", checked.stdout, checked.stderr);
    let found: Value = serde_json::from_str(&checked.stdout).unwrap();
    let differences = |name: &str| -> Vec<(String, String)> {
        verified(&found, name)["differences"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|d| {
                        (
                            d["kind"].as_str().unwrap().to_owned(),
                            d["key"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(kind, key)| ((*kind).to_owned(), (*key).to_owned()))
            .collect()
    };
    assert_eq!(
        differences("every_type"),
        pairs(&[
            ("different", "(10)"),
            ("missing", "(20)"),
            ("different", "(30)"),
            ("different", "(40)"),
        ]),
        "{found:#}"
    );
    assert_eq!(
        differences("wide"),
        // In key order, not the text's.
        pairs(&[
            ("extra", "(-5)"),
            ("missing", "(1)"),
            ("different", "(5000)"),
            ("extra", "(999999)"),
        ]),
        "{found:#}"
    );
    assert_eq!(differences("composite"), pairs(&[("different", "(ß,1)")]));
    assert_eq!(differences("texts"), pairs(&[("different", "(😀)")]));
    for name in ["uuids", "keyless"] {
        assert_eq!(verified(&found, name)["status"], "verified", "{found:#}");
    }
    let blockers = found["blockers"].as_array().unwrap();
    let mismatches: Vec<&Value> = blockers
        .iter()
        .filter(|b| b["kind"] == "data_mismatch")
        .collect();
    assert_eq!(mismatches.len(), 4, "{found:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_and_column_kind_verifies_on_postgresql_15() {
    every_type_scenario(15, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_and_column_kind_verifies_from_postgresql_14_to_18() {
    every_type_scenario(14, 18).await;
}
