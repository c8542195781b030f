//! The monitor with 1,000 subscribed tables (each with a sequence): one
//! poll's wall time and query count, one `check`'s (the cutover checks,
//! without row counts), and the CPU the monitor uses polling once a
//! second.
//! Runs two throw-away PostgreSQL 15 clusters (as in the tests); bounded to
//! a few seconds of polling.
//!
//! `cargo bench --bench monitor`

// Shared with the tests, which also use what this bench does not.
#[allow(dead_code)]
#[path = "../tests/it/cluster.rs"]
mod cluster;
mod common;

use std::time::Duration;

use cluster::Cluster;
use pgmigrator_metrics::Collector;
use pgmigrator_metrics::pg::{self, CheckOptions, Monitor, MonitorConfig};

/// Subscribed tables; `PGMIGRATOR_BENCH_TABLES` sets another count
/// (e.g. 10000).
const DEFAULT_TABLES: usize = 1_000;
const MEASURE: Duration = Duration::from_secs(20);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !cluster::available() {
        println!("PostgreSQL 15 is not installed; .ci/run installs it");
        return;
    }
    common::print_cores();
    let tables: usize = std::env::var("PGMIGRATOR_BENCH_TABLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_TABLES);
    let (source, dest) = (Cluster::start(true), Cluster::start(false));
    // Made by the server, committing every 500 tables: a statement per
    // table would not fit on psql's command line, and one transaction
    // would run out of locks.
    let ddl = format!(
        "DO $$ BEGIN FOR i IN 0..{} LOOP \
           EXECUTE format('CREATE TABLE t%s (id bigserial PRIMARY KEY, v text)', lpad(i::text, 5, '0')); \
           IF i % 500 = 499 THEN COMMIT; END IF; \
         END LOOP; END $$",
        tables - 1
    );
    source.sql(&ddl);
    dest.sql(&ddl);
    for cluster in [&source, &dest] {
        // So the cutover checks read every sequence.
        cluster.sql("GRANT pg_read_all_data TO monitor");
    }
    source.sql("CREATE PUBLICATION pub FOR ALL TABLES");
    // No initial copy: the tables are ready at once; the poll is the same.
    dest.sql(&format!(
        "CREATE SUBSCRIPTION sub CONNECTION '{}' PUBLICATION pub WITH (copy_data = false)",
        source.conninfo()
    ));
    let config = MonitorConfig::new(
        source.monitor_uri().parse().unwrap(),
        dest.monitor_uri().parse().unwrap(),
    );
    let rt = common::runtime(None);
    rt.block_on(async {
        let collector = Collector::new();
        let mut monitor = Monitor::connect(config.clone()).await.unwrap();
        let first = monitor.poll(&collector).await.unwrap();
        let mut steady = Vec::new();
        for _ in 0..20 {
            steady.push(monitor.poll(&collector).await.unwrap());
        }
        collector.flush().await;
        assert_eq!(collector.snapshot().tables_total, tables);
        let mut times: Vec<Duration> = steady.iter().map(|s| s.elapsed).collect();
        times.sort();
        println!(
            "{tables} tables: first poll {:.1} ms with {} queries (estimates included); \
             steady poll median {:.1} ms, max {:.1} ms, {} queries",
            first.elapsed.as_secs_f64() * 1e3,
            first.queries,
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            steady[0].queries,
        );

        // Measured once the walsender has caught up with the DDL, so every
        // check does all the work of a ready verdict.
        let options = CheckOptions::default();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let report = monitor.check(&collector, &options, &mut |_| {}).await;
            if report.unwrap().cutover.ready {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut checks = Vec::new();
        for _ in 0..10 {
            let report = monitor.check(&collector, &options, &mut |_| {}).await;
            checks.push(report.unwrap());
        }
        let mut times: Vec<Duration> = checks.iter().map(|c| c.elapsed).collect();
        times.sort();
        println!(
            "{tables} tables and {tables} sequences: check (a poll and the catalog checks) \
             median {:.1} ms, max {:.1} ms, {} queries",
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            checks[0].queries,
        );
        let mut runs: Vec<Duration> = (0..5)
            .map(|_| {
                let started = std::time::Instant::now();
                let status = std::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
                    .args(["check", "--source", &source.monitor_uri()])
                    .args(["--dest", &dest.monitor_uri()])
                    .stdout(std::process::Stdio::null())
                    .status()
                    .unwrap();
                assert_eq!(status.code(), Some(0), "ready");
                started.elapsed()
            })
            .collect();
        runs.sort();
        println!(
            "pgmigrator check, the whole command (start, two connections, check): median {:.1} ms",
            runs[runs.len() / 2].as_secs_f64() * 1e3
        );

        // CPU of this process (the monitor and its collector) at 1 s.
        let before = common::cpu_time(common::Who::Process);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(pg::run(collector.clone(), monitor, async {
            let _ = stopped.await;
        }));
        tokio::time::sleep(MEASURE).await;
        stop.send(()).unwrap();
        running.await.unwrap();
        let used = common::cpu_time(common::Who::Process) - before;
        println!(
            "polling every 1 s for {} s: {:.2} s CPU = {:.2} % of one core",
            MEASURE.as_secs(),
            used.as_secs_f64(),
            used.as_secs_f64() / MEASURE.as_secs_f64() * 100.0
        );
    });
}
