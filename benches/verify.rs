//! Data verification against the whole-table digest of `pgcopydb compare
//! data` (`count(*)` and `sum(hashtext(row::text))`, both servers at once),
//! on the same table of about 1 GB in the same run: throughput in MB/s of
//! table scanned, with our chunking on and the rate limit off; the
//! process's peak memory; and the time to localize one differing row.
//! Runs two throw-away PostgreSQL 15 clusters (as in the tests); every step
//! is bounded by the table's size.
//!
//! `cargo bench --bench verify` (`PGMIGRATOR_BENCH_VERIFY_MB=256` for a
//! smaller table)

// Shared with the tests, which also use what this bench does not.
#[allow(dead_code)]
#[path = "../tests/it/cluster.rs"]
mod cluster;
mod common;

use std::time::{Duration, Instant};

use cluster::Cluster;
use pgmigrator_metrics::pg::{CheckOptions, Monitor, MonitorConfig, VerifyOptions};
use pgmigrator_metrics::{Collector, VerifyProgress};

const DEFAULT_MB: u64 = 1024;
/// Bytes a row of the table takes on disk, about.
const ROW_BYTES: u64 = 120;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if !cluster::available() {
        println!("PostgreSQL 15 is not installed; .ci/run installs it");
        return;
    }
    common::print_cores();
    let mb: u64 = std::env::var("PGMIGRATOR_BENCH_VERIFY_MB")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_MB);
    let rows = mb * 1_000_000 / ROW_BYTES;
    let (source, dest) = (Cluster::start(true), Cluster::start(false));
    let started = Instant::now();
    // The same rows on both, made by each server at once.
    std::thread::scope(|scope| {
        for cluster in [&source, &dest] {
            scope.spawn(move || {
                cluster
                    .sql("CREATE TABLE big (id bigint PRIMARY KEY, n int, t text, at timestamptz)");
                cluster.sql(&format!(
                    "INSERT INTO big SELECT g, g % 1000, md5(g::text) || md5((g + 1)::text), \
                     '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 second' \
                     FROM generate_series(1, {rows}) g"
                ));
                cluster.sql("VACUUM ANALYZE big");
                cluster.sql("GRANT pg_read_all_data TO monitor");
            });
        }
    });
    let size: u64 = source.sql("SELECT pg_table_size('big')").parse().unwrap();
    println!(
        "table: {rows} rows, {:.0} MB on disk (made in {:.0} s)",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    source.sql("CREATE PUBLICATION pub FOR ALL TABLES");
    dest.sql(&format!(
        "CREATE SUBSCRIPTION sub CONNECTION '{}' PUBLICATION pub WITH (copy_data = false)",
        source.conninfo()
    ));

    // pgcopydb compare data: one query per server, both at once.
    // `r` is the whole row (the table has a column `t`).
    let whole = "SELECT count(*), sum(hashtext(r::text)::bigint) FROM big AS r";
    let pgcopydb = |_: ()| {
        let started = Instant::now();
        std::thread::scope(|scope| {
            let theirs = scope.spawn(|| source.sql(whole));
            let ours = dest.sql(whole);
            assert_eq!(theirs.join().unwrap(), ours);
        });
        started.elapsed()
    };
    // Warm both caches once, then the best of three.
    pgcopydb(());
    let baseline = (0..3).map(|_| pgcopydb(())).min().unwrap();

    let config = MonitorConfig::new(
        source.monitor_uri().parse().unwrap(),
        dest.monitor_uri().parse().unwrap(),
    );
    let options = CheckOptions {
        verify: Some(VerifyOptions {
            max_rate: None,
            ..VerifyOptions::default()
        }),
        ..CheckOptions::default()
    };
    let rt = common::runtime(None);
    rt.block_on(async {
        let mut monitor = Monitor::connect(config).await.unwrap();
        let collector = Collector::new();
        let rss_before = common::rss_kib();
        let mut verify = async || {
            let report = monitor.check(&collector, &options, &mut |_| {}).await;
            let verified: VerifyProgress = report.unwrap().verification.unwrap();
            let took = verified.finished_at.unwrap() - verified.started_at.unwrap();
            (verified, Duration::try_from(took).unwrap())
        };
        let runs: Vec<(VerifyProgress, Duration)> = vec![verify().await, verify().await];
        let (clean, ours) = runs.into_iter().min_by_key(|(_, took)| *took).unwrap();
        assert_eq!(clean.tables_verified, 1, "{clean:?}");
        let peak = common::peak_rss_kib();
        let mbps = |took: Duration| size as f64 / 1e6 / took.as_secs_f64();
        println!(
            "pgcopydb-style whole-table digest: {:.1} s = {:.0} MB/s",
            baseline.as_secs_f64(),
            mbps(baseline)
        );
        let table = &clean.tables[0];
        println!(
            "ours, chunked ({} chunks, adaptive to 500 ms), rate limit off: {:.1} s = {:.0} MB/s \
             = {:.2}x the whole-table digest",
            table.chunks_done,
            ours.as_secs_f64(),
            mbps(ours),
            baseline.as_secs_f64() / ours.as_secs_f64()
        );
        println!(
            "memory: {} MiB resident before, {} MiB at its peak (the whole bench process)",
            rss_before / 1024,
            peak / 1024
        );

        // One row changed on the destination alone, in the middle.
        dest.sql(&format!("UPDATE big SET n = -1 WHERE id = {}", rows / 2));
        let (found, took) = verify().await;
        let table = &found.tables[0];
        assert_eq!(table.mismatched_rows, 1, "{table:?}");
        println!(
            "one differing row: found and named {} in {:.1} s ({:+.1} s over a clean run)",
            table.differences[0].key,
            took.as_secs_f64(),
            took.as_secs_f64() - ours.as_secs_f64()
        );
    });
}
