//! The cutover verdict on two real PostgreSQL 15 clusters: from a pair that
//! is streaming and caught up, each blocker is caused, seen by `pgmigrator
//! check` (exit status and words), by the monitor's snapshot and by
//! `/metrics`, then undone.

use std::sync::Arc;
use std::time::Duration;

use pgmigrator_metrics::http::metrics::render_text;
use pgmigrator_metrics::pg::{self, CountOptions, Monitor, MonitorConfig};
use pgmigrator_metrics::{Collector, CutoverKind, Snapshot};
use tokio::time::{Instant, sleep};

use crate::cluster::{self, Cluster};

/// `orders` (100 rows, its sequence level on both sides) published for all
/// tables and subscribed; the monitor login may read data (for sequences
/// and counts).
pub(crate) fn streaming_pair() -> (Cluster, Cluster) {
    let (source, dest) = (Cluster::start(true), Cluster::start(false));
    for cluster in [&source, &dest] {
        cluster.sql("CREATE TABLE orders (id bigserial PRIMARY KEY, item text NOT NULL)");
        cluster.sql("GRANT pg_read_all_data TO monitor");
    }
    source.sql("INSERT INTO orders (item) SELECT 'item ' || g FROM generate_series(1, 100) g");
    dest.sql("SELECT setval('orders_id_seq', 100)");
    source.sql("CREATE PUBLICATION pub FOR ALL TABLES");
    dest.sql(&format!(
        "CREATE SUBSCRIPTION sub CONNECTION '{}' PUBLICATION pub",
        source.conninfo()
    ));
    (source, dest)
}

pub(crate) struct Checked {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// `pgmigrator check` on the pair with `extra` flags.
pub(crate) async fn check(source: &Cluster, dest: &Cluster, extra: &[&str]) -> Checked {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .arg("check")
        .args(["--source", &source.monitor_uri()])
        .args(["--dest", &dest.monitor_uri()])
        .args(extra)
        .output()
        .await
        .unwrap();
    Checked {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Runs `check` until it exits with `code` and prints every one of `lines`
/// (60 s at most: replication is asynchronous).
async fn check_until(
    source: &Cluster,
    dest: &Cluster,
    extra: &[&str],
    code: i32,
    lines: &[&str],
) -> Checked {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let checked = check(source, dest, extra).await;
        if checked.code == code && lines.iter().all(|l| checked.stdout.contains(l)) {
            return checked;
        }
        assert!(
            Instant::now() < deadline,
            "check never exited {code} with {lines:?}; last: {} {}{}",
            checked.code,
            checked.stdout,
            checked.stderr
        );
        sleep(Duration::from_millis(300)).await;
    }
}

/// Waits until the monitor's snapshot has a blocker of `kind` (on `table`,
/// when given), then returns the snapshot and its `/metrics`.
async fn monitor_shows(
    collector: &Collector,
    kind: CutoverKind,
    table: Option<&str>,
) -> (Arc<Snapshot>, String) {
    let snapshot = wait_for_verdict(collector, &format!("a {kind} blocker"), |s| {
        s.blockers
            .iter()
            .any(|b| b.kind == kind && (table.is_none() || b.table.as_deref() == table))
    })
    .await;
    let metrics = render_text(Arc::clone(&snapshot));
    assert!(metrics.contains("pgmigrator_cutover_ready 0"), "{metrics}");
    let series = format!("pgmigrator_cutover_blockers{{kind=\"{kind}\"}} ");
    let count = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in {metrics}"));
    assert_ne!(count, "0", "{metrics}");
    (snapshot, metrics)
}

async fn monitor_ready(collector: &Collector) {
    let snapshot = wait_for_verdict(collector, "a ready verdict", |c| c.ready).await;
    let metrics = render_text(snapshot);
    assert!(metrics.contains("pgmigrator_cutover_ready 1"), "{metrics}");
}

async fn wait_for_verdict(
    collector: &Collector,
    what: &str,
    check: impl Fn(&pgmigrator_metrics::Cutover) -> bool,
) -> Arc<Snapshot> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let snapshot = collector.snapshot();
        if snapshot.cutover.as_ref().is_some_and(&check) {
            return snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "the monitor never showed {what}; last verdict: {:#?}",
            snapshot.cutover
        );
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_blocker_is_named_by_check_the_snapshot_and_metrics_and_clears_when_undone() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = streaming_pair();
    let collector = Collector::builder()
        .tick(Duration::from_millis(100))
        .build();
    let config = MonitorConfig {
        interval: Duration::from_millis(200),
        check_interval: Duration::from_millis(200),
        counts: Some(CountOptions::default()),
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
    let ready = |c: &Checked| {
        assert!(c.stdout.starts_with("Subscription: sub\n"), "{}", c.stdout);
    };

    // Streaming and caught up: ready, exit 0.
    ready(&check_until(&source, &dest, &[], 0, &["Cutover:      READY"]).await);
    monitor_ready(&collector).await;

    // A table without a primary key joins the FOR ALL TABLES publication.
    source.sql("CREATE TABLE nokey (v int)");
    check_until(
        &source,
        &dest,
        &[],
        3,
        &["  blocker: no_replica_identity public.nokey: no primary key and REPLICA IDENTITY DEFAULT: \
         UPDATE and DELETE on it fail on the source"],
    )
    .await;
    monitor_shows(
        &collector,
        CutoverKind::NoReplicaIdentity,
        Some("public.nokey"),
    )
    .await;
    source.sql("DROP TABLE nokey");
    check_until(&source, &dest, &[], 0, &["Cutover:      READY"]).await;

    // A table created on both sides after the subscription, not refreshed.
    for cluster in [&source, &dest] {
        cluster.sql("CREATE TABLE late (id int PRIMARY KEY)");
    }
    source.sql("INSERT INTO late SELECT generate_series(1, 5)");
    check_until(
        &source,
        &dest,
        &[],
        3,
        &[
            "NOT READY — 1 blocker",
            "  blocker: not_subscribed public.late: in publication pub but not in subscription sub",
        ],
    )
    .await;
    monitor_shows(&collector, CutoverKind::NotSubscribed, Some("public.late")).await;
    dest.sql("ALTER SUBSCRIPTION sub REFRESH PUBLICATION");
    check_until(&source, &dest, &[], 0, &["Cutover:      READY"]).await;
    monitor_ready(&collector).await;
    assert_eq!(
        dest.sql("SELECT count(*) FROM late"),
        "5",
        "copied once refreshed"
    );

    // Sequences are not replicated.
    source.sql("SELECT nextval('orders_id_seq') FROM generate_series(1, 500)");
    check_until(
        &source,
        &dest,
        &[],
        3,
        &["  blocker: sequence_behind public.orders_id_seq: source 600, destination 100"],
    )
    .await;
    monitor_shows(
        &collector,
        CutoverKind::SequenceBehind,
        Some("public.orders_id_seq"),
    )
    .await;
    let fix = check(&source, &dest, &["--sequences-sql"]).await;
    assert_eq!(fix.code, 3, "{}", fix.stderr);
    assert!(
        fix.stderr.contains("NOT READY"),
        "the verdict goes to stderr: {}",
        fix.stderr
    );
    assert!(
        fix.stdout
            .contains("SELECT setval(E'\"public\".\"orders_id_seq\"', 1600, true);"),
        "{}",
        fix.stdout
    );
    dest.sql(&fix.stdout);
    check_until(&source, &dest, &[], 0, &["Cutover:      READY"]).await;
    monitor_ready(&collector).await;

    // A column added on the destination only.
    dest.sql("ALTER TABLE orders ADD COLUMN note text");
    check_until(
        &source,
        &dest,
        &[],
        3,
        &["  blocker: schema_mismatch public.orders: column note only on the destination"],
    )
    .await;
    monitor_shows(
        &collector,
        CutoverKind::SchemaMismatch,
        Some("public.orders"),
    )
    .await;
    dest.sql("ALTER TABLE orders DROP COLUMN note");
    check_until(&source, &dest, &[], 0, &["Cutover:      READY"]).await;

    // The subscription disabled while the source takes writes.
    dest.sql("ALTER SUBSCRIPTION sub DISABLE");
    source.sql("INSERT INTO orders (item) VALUES ('while disabled')");
    check_until(
        &source,
        &dest,
        &[],
        3,
        &[
            "  blocker: subscription_disabled: subscription sub is disabled",
            "  blocker: lag: ",
        ],
    )
    .await;
    monitor_shows(&collector, CutoverKind::SubscriptionDisabled, None).await;
    monitor_shows(&collector, CutoverKind::Lag, None).await;
    dest.sql("ALTER SUBSCRIPTION sub ENABLE");
    check_until(&source, &dest, &[], 0, &["Cutover:      READY"]).await;
    monitor_ready(&collector).await;

    // Rows deleted on the destination behind replication's back: only a
    // count sees it.
    dest.sql("DELETE FROM orders WHERE id <= 10");
    check_until(&source, &dest, &[], 0, &["Cutover:      READY"]).await;
    let counted = check_until(
        &source,
        &dest,
        &["--counts"],
        3,
        &[
            "  blocker: row_count_mismatch public.orders: source 101, destination 91 \
         (10 fewer on the destination)",
        ],
    )
    .await;
    assert!(
        counted
            .stderr
            .contains("counting rows: 2 of 2 tables counted on both servers"),
        "{}",
        counted.stderr
    );
    monitor_shows(
        &collector,
        CutoverKind::RowCountMismatch,
        Some("public.orders"),
    )
    .await;

    // The same verdict as JSON.
    let json = check(&source, &dest, &["--counts", "--json"]).await;
    assert_eq!(json.code, 3);
    let verdict: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(verdict["ready"], false);
    assert_eq!(verdict["blockers"][0]["kind"], "row_count_mismatch");
    assert_eq!(verdict["blockers"][0]["table"], "public.orders");

    stop.send(()).unwrap();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_1_when_it_cannot_check_and_2_on_bad_usage() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = (Cluster::start(true), Cluster::start(false));
    let no_subscription = check(&source, &dest, &[]).await;
    assert_eq!(no_subscription.code, 1, "{}", no_subscription.stderr);
    assert!(
        no_subscription.stderr.contains("no subscription"),
        "{}",
        no_subscription.stderr
    );
    assert!(
        !no_subscription.stderr.contains(cluster::MONITOR_PASSWORD),
        "{}",
        no_subscription.stderr
    );

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["check", "--source", "port=notaport", "--dest", "x"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args([
            "check",
            "--source",
            "x",
            "--dest",
            "y",
            "--cutover-max-lag",
            "lots",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "clap's usage errors");
}

/// 80 sequence names built to break out of a string literal when a
/// backslash escapes (standard_conforming_strings off), or to act on a
/// terminal.
fn hostile_sequence_names() -> Vec<String> {
    let attacks = [
        r"x\' , 1) WHERE false; DROP TABLE victim; --",
        r"x\', 1); DROP TABLE victim; --",
        "'); DROP TABLE victim; --",
        r"\\'); DROP TABLE victim; --",
        "$$); DROP TABLE victim; --",
        r#"a"b\'); DROP TABLE victim; --"#,
        "e\x1b[2J\\'); DROP TABLE victim; --",
        "nl\n); DROP TABLE victim; --",
        "\u{202e}\\'); DROP TABLE victim; --",
        r"\\\'); DROP TABLE victim; --",
    ];
    let prefixes = ["", "s", "S", "ü", " ", "x.y", "0", "E"];
    prefixes
        .iter()
        .flat_map(|p| attacks.iter().map(move |a| format!("{p}{a}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_sql_runs_nothing_but_setval_under_either_string_setting() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = streaming_pair();
    dest.sql("CREATE TABLE victim (id int)");
    let names = hostile_sequence_names();
    assert_eq!(names.len(), 80);
    for cluster in [&source, &dest] {
        for name in &names {
            cluster.sql(&format!(
                "CREATE SEQUENCE public.\"{}\"",
                name.replace('"', "\"\"")
            ));
        }
        cluster.sql("CREATE SEQUENCE public.bounded AS integer MAXVALUE 5500");
        cluster.sql("CREATE SEQUENCE public.near AS integer");
    }
    let ours = "c.relkind = 'S' AND c.relname <> 'orders_id_seq'";
    source.sql(&format!(
        "SELECT setval(c.oid, 100) FROM pg_class c WHERE {ours} \
         AND c.relname NOT IN ('bounded', 'near')"
    ));
    source.sql("SELECT setval('bounded', 5000)");
    source.sql("SELECT setval('near', 2147483000)");
    let script_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        script_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    for setting in ["off", "on"] {
        // Every destination sequence unused again, then the setting for
        // every new session (the check's and psql's).
        dest.sql(&format!(
            "DO $$ DECLARE s regclass; BEGIN \
             FOR s IN SELECT c.oid FROM pg_class c WHERE {ours} LOOP \
             EXECUTE format('ALTER SEQUENCE %s RESTART', s); END LOOP; END $$"
        ));
        dest.sql(&format!(
            "ALTER DATABASE postgres SET standard_conforming_strings = {setting}"
        ));
        let fix = check(&source, &dest, &["--sequences-sql"]).await;
        assert_eq!(fix.code, 3, "{setting}: {}", fix.stderr);
        for line in fix.stdout.lines() {
            assert!(
                line.starts_with("-- ") || line.starts_with("SELECT setval(E'"),
                "{setting}: one statement a line: {line:?}"
            );
            assert!(
                !line.contains('\x1b') && !line.contains('\u{202e}'),
                "{line:?}"
            );
        }
        assert!(
            fix.stdout.contains("stopped at the sequence's MAXVALUE"),
            "{}",
            fix.stdout
        );
        let script = script_dir.path().join(format!("fix-{setting}.sql"));
        std::fs::write(&script, &fix.stdout).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let ran = dest.run_script(&script);
        assert!(ran.is_ok(), "{setting}: {ran:?}");
        assert_eq!(
            dest.sql("SELECT count(*) FROM pg_class WHERE relname = 'victim'"),
            "1",
            "{setting}: the victim table survives"
        );
        assert_eq!(
            dest.sql(
                "SELECT count(*) FROM pg_sequences WHERE schemaname = 'public' \
                 AND last_value = 1100"
            ),
            "80",
            "{setting}: every hostile sequence set"
        );
        assert_eq!(
            dest.sql("SELECT last_value FROM pg_sequences WHERE sequencename IN ('bounded', 'near') ORDER BY 1"),
            "5500\n2147483647",
            "{setting}: within their bounds"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_each_differing_row_by_its_key_and_nothing_else() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let (source, dest) = streaming_pair();
    for cluster in [&source, &dest] {
        cluster.sql(
            "CREATE TABLE people (name text, n int, v float8, note text, PRIMARY KEY (name, n))",
        );
    }
    dest.sql("ALTER SUBSCRIPTION sub REFRESH PUBLICATION");
    source.sql("INSERT INTO orders (item) SELECT 'more ' || g FROM generate_series(1, 2000) g");
    dest.sql("SELECT setval('orders_id_seq', 200000)");
    source.sql(
        "INSERT INTO people VALUES ('é', 1, 0.3, NULL), ('ß', 1, 0.3, ''), ('😀', 2, 'NaN', 'x'), \
         ('a', 1, 'Infinity', 'y'), ('Z', 3, -0.0, 'z')",
    );
    // Columns in another order, and one dropped, on the destination; a
    // table without a key.
    source.sql("CREATE TABLE shuffled (id uuid PRIMARY KEY, a text, b interval, c jsonb)");
    dest.sql("CREATE TABLE shuffled (c jsonb, gone int, b interval, id uuid PRIMARY KEY, a text)");
    dest.sql("ALTER TABLE shuffled DROP COLUMN gone");
    for cluster in [&source, &dest] {
        cluster.sql("CREATE TABLE keyless (v text)");
        cluster.sql("ALTER TABLE keyless REPLICA IDENTITY FULL");
    }
    dest.sql("ALTER SUBSCRIPTION sub REFRESH PUBLICATION");
    source.sql(
        "INSERT INTO shuffled SELECT gen_random_uuid(), repeat('t', g), g * interval '1 day', \
         jsonb_build_object('g', g) FROM generate_series(1, 300) g",
    );
    source.sql("INSERT INTO keyless VALUES ('one')");
    let verified = &["--verify", "--verify-chunk-rows", "500"];
    let clean = check_until(&source, &dest, verified, 0, &["Cutover:      READY"]).await;
    assert!(
        clean
            .stdout
            .contains("Verify:       4 of 4 tables verified"),
        "{}",
        clean.stdout
    );
    assert!(
        clean.stdout.contains(
            "warning: unverified public.keyless: verified: no primary key or replica identity \
             index: compared as one whole-table digest"
        ),
        "{}",
        clean.stdout
    );

    // Under a steady write load on the source, a verification finds no
    // difference: chunks that raced the writes are read again.
    let writing = std::sync::atomic::AtomicBool::new(true);
    let (under_load, updates) = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let mut n = 0u64;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                source.sql(&format!(
                    "UPDATE orders SET item = 'live {n}' WHERE id = 1 + ({n} * 7919) % 2100"
                ));
                n += 1;
            }
            n
        });
        let under_load = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(check(&source, &dest, verified))
        });
        writing.store(false, std::sync::atomic::Ordering::Relaxed);
        (under_load, load.join().unwrap())
    });
    assert!(updates > 10, "{updates} updates during the verification");
    let summary = under_load.stdout.lines().find(|l| l.starts_with("Verify:"));
    println!("under {updates} updates: {summary:?}");
    assert!(
        !under_load.stdout.contains("blocker: data_mismatch"),
        "{}",
        under_load.stdout
    );
    assert!(
        under_load.stdout.contains("4 of 4 tables verified"),
        "{}",
        under_load.stdout
    );

    // Everything back in step before the destination alone is changed.
    check_until(&source, &dest, verified, 0, &["Cutover:      READY"]).await;

    // Made on the destination alone: the first key missing, an updated
    // row, a row past the source's last key, a float's last digit, a
    // NULL turned into ''.
    dest.sql("DELETE FROM orders WHERE id = 1");
    dest.sql("UPDATE orders SET item = 'changed' WHERE id = 5");
    dest.sql("INSERT INTO orders (id, item) VALUES (100000, 'extra')");
    dest.sql("UPDATE people SET v = 0.30000000000000004 WHERE name = 'ß'");
    dest.sql("UPDATE people SET note = '' WHERE name = 'é'");
    let found = check(&source, &dest, verified).await;
    assert_eq!(found.code, 3, "{}{}", found.stdout, found.stderr);
    for line in [
        "mismatch public.orders",
        "    missing (1)",
        "    different (5)",
        "    extra (100000)",
        "mismatch public.people",
        "    different (ß,1)",
        "    different (é,1)",
        "blocker: data_mismatch public.orders: 3 row(s) differ",
    ] {
        assert!(found.stdout.contains(line), "{line:?} in {}", found.stdout);
    }
    let differences = found
        .stdout
        .lines()
        .filter(|l| l.starts_with("    "))
        .count();
    assert_eq!(differences, 5, "no false report: {}", found.stdout);
    // Named up to --verify-max-rows, counted in full.
    let capped = check(&source, &dest, &["--verify", "--verify-max-rows", "1"]).await;
    for line in [
        "blocker: data_mismatch public.orders: 3 row(s) differ: (1) (missing)",
        "  … and 2 more (--verify-max-rows)",
    ] {
        assert!(
            capped.stdout.contains(line),
            "{line:?} in {}",
            capped.stdout
        );
    }
    let json = check(&source, &dest, &["--verify", "--json"]).await;
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let orders = json["verify"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap();
    assert_eq!(orders["status"], "mismatch");
    assert_eq!(
        orders["differences"][0],
        serde_json::json!({"key": "(1)", "kind": "missing"})
    );
}
