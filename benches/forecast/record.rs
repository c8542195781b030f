//! Records progress traces of real initial copies: PostgreSQL's own
//! logical replication copying tables from one throw-away cluster into
//! another, watched on the destination through `pg_stat_progress_copy`
//! and `pg_subscription_rel` every 500 ms.
//!
//! `PGMIGRATOR_RECORD_TRACES=benches/traces cargo bench --bench forecast`
//! (`PGMIGRATOR_RECORD_SCENARIO=throttled` for one of them)

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use pgmigrator_metrics::demo::{self, DemoOptions};
use pgmigrator_metrics::{Collector, Phase, TableStatus};

use crate::cluster::Cluster;

/// A recorded scenario: its tables (name, rows, secondary indexes), and
/// whether the destination's CPU is taken from the copy halfway through.
struct Scenario {
    name: &'static str,
    about: &'static str,
    tables: Vec<(String, u64, u32)>,
    throttled: bool,
}

/// Busy loops on the destination that take its cores from the copy once
/// half of the rows are copied (stopped at the end).
const HOG: &str = "SELECT count(*) FROM generate_series(1, 100000000000) AS hog";
const HOGS: usize = 2;

fn scenarios() -> Vec<Scenario> {
    let mut many: Vec<(String, u64, u32)> = (1..=60)
        .map(|n| (format!("small_{n:02}"), 50_000, 0))
        .collect();
    many.push(("huge".to_owned(), 30_000_000, 1));
    vec![
        Scenario {
            name: "indexed",
            about: "three tables with secondary indexes on random text: the rate falls as the \
                    indexes outgrow the destination's 32 MB of shared buffers",
            tables: vec![
                ("orders".to_owned(), 12_000_000, 2),
                ("events".to_owned(), 6_000_000, 1),
                ("users".to_owned(), 3_000_000, 2),
            ],
            throttled: false,
        },
        Scenario {
            name: "many_small",
            about: "sixty small tables and one huge one: the critical path is the huge one",
            tables: many,
            throttled: false,
        },
        Scenario {
            name: "throttled",
            about: "one table without secondary indexes; from half of its rows on, two busy \
                    loops on the destination take the cores from the copy, as a throttle would",
            tables: vec![("ledger".to_owned(), 100_000_000, 0)],
            throttled: true,
        },
    ]
}

/// Records every scenario (or the one `only` names) into `dir`, one CSV
/// each (`<name>.csv`, or `<name>-<run>.csv` for a further run of it);
/// `demo` is the demo's copy.
pub fn record_all(dir: &Path, only: Option<&str>, run: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    let chosen = scenarios()
        .into_iter()
        .filter(|s| only.is_none_or(|name| s.name == name));
    if only.is_none_or(|name| name == "demo") {
        std::fs::write(dir.join("demo.csv"), record_demo()).unwrap();
        println!("recorded {}", dir.join("demo.csv").display());
    }
    for scenario in chosen {
        let started = Instant::now();
        let csv = record(&scenario);
        let path = match run {
            Some(run) => dir.join(format!("{}-{run}.csv", scenario.name)),
            None => dir.join(format!("{}.csv", scenario.name)),
        };
        std::fs::write(&path, csv).unwrap();
        println!(
            "recorded {} in {:.0} s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }
}

fn record(scenario: &Scenario) -> String {
    let (source, dest) = (Cluster::start(true), Cluster::start(false));
    for (name, rows, indexes) in &scenario.tables {
        for cluster in [&source, &dest] {
            cluster.sql(&format!(
                "CREATE TABLE {name} (id bigint PRIMARY KEY, a text, b text, n int)"
            ));
            for i in 0..*indexes {
                let column = ["a", "b"][i as usize];
                cluster.sql(&format!("CREATE INDEX ON {name} ({column})"));
            }
        }
        source.sql(&format!(
            "INSERT INTO {name} SELECT g, md5(g::text), md5((g * 7)::text), g % 1000 \
             FROM generate_series(1, {rows}) g"
        ));
    }
    source.sql("VACUUM ANALYZE");
    // What a pipeline knows of each table before copying it.
    let mut known = BTreeMap::new();
    for line in source
        .sql(
            "SELECT relname, greatest(reltuples, 0)::bigint, pg_table_size(oid) FROM pg_class \
             WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace",
        )
        .lines()
    {
        let fields: Vec<&str> = line.split('|').collect();
        known.insert(
            fields[0].to_owned(),
            (fields[1].to_owned(), fields[2].to_owned()),
        );
    }
    source.sql("CREATE PUBLICATION pub FOR ALL TABLES");
    let mut csv = format!(
        "# {}: {}\n# recorded from PostgreSQL 15's logical replication on 2 cores, \
         max_sync_workers_per_subscription = 2\n\
         time_sec,table,status,rows,bytes,rows_total,size_bytes,worker\n",
        scenario.name, scenario.about
    );
    let started = Instant::now();
    dest.sql(&format!(
        "CREATE SUBSCRIPTION sub CONNECTION '{}' PUBLICATION pub",
        source.conninfo()
    ));
    // Copy worker pids to worker numbers; the lowest free number first.
    let mut workers: BTreeMap<String, usize> = BTreeMap::new();
    let mut done: BTreeMap<String, ()> = BTreeMap::new();
    let mut last: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut throttling = false;
    let deadline = started + Duration::from_secs(1800);
    let total: u64 = scenario.tables.iter().map(|t| t.1).sum();
    std::thread::scope(|hogs| {
        while done.len() < scenario.tables.len() {
            assert!(Instant::now() < deadline, "the copy took over 30 minutes");
            let now = started.elapsed().as_secs_f64();
            let copying = dest.sql(
                "SELECT c.relname, p.pid, p.tuples_processed, p.bytes_processed \
             FROM pg_stat_progress_copy p JOIN pg_class c ON c.oid = p.relid",
            );
            let mut live = Vec::new();
            for line in copying.lines().filter(|l| !l.is_empty()) {
                let f: Vec<&str> = line.split('|').collect();
                let (table, pid) = (f[0].to_owned(), f[1].to_owned());
                live.push(pid.clone());
                if !workers.contains_key(&pid) {
                    let taken: Vec<usize> = workers.values().copied().collect();
                    let free = (0..).find(|n| !taken.contains(n)).unwrap();
                    workers.insert(pid.clone(), free);
                }
                let (total, size) = &known[&table];
                let _ = writeln!(
                    csv,
                    "{now:.1},{table},copying,{},{},{total},{size},{}",
                    f[2], f[3], workers[&pid]
                );
                last.insert(table, (f[2].to_owned(), f[3].to_owned()));
            }
            workers.retain(|pid, _| live.contains(pid));
            let states = dest.sql(
                "SELECT c.relname FROM pg_subscription_rel r JOIN pg_class c ON c.oid = r.srrelid \
             WHERE r.srsubstate IN ('s', 'r')",
            );
            for table in states.lines().filter(|l| !l.is_empty()) {
                if done.insert(table.to_owned(), ()).is_none() {
                    let rows = dest.sql(&format!("SELECT count(*) FROM {table}"));
                    let bytes = last.get(table).map_or("0".to_owned(), |(_, b)| b.clone());
                    let (total, size) = &known[table];
                    let _ = writeln!(csv, "{now:.1},{table},done,{rows},{bytes},{total},{size},");
                }
            }
            let copied: u64 = last
                .values()
                .filter_map(|(rows, _)| rows.parse::<u64>().ok())
                .sum();
            if scenario.throttled && copied * 2 >= total && !throttling {
                throttling = true;
                let _ = writeln!(
                    csv,
                    "# {now:.1}: the destination's cores taken from here on"
                );
                for _ in 0..HOGS {
                    hogs.spawn(|| {
                        let _ = dest.try_sql(HOG);
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        dest.sql(&format!(
            "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE query = '{HOG}'"
        ));
    });
    csv
}

/// The demo's copy (`pgmigrator demo` as it starts, 24 tables on 4
/// workers): its simulated pipeline driving a collector in paused time,
/// read every 500 ms.
fn record_demo() -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let collector = Collector::new();
        let options = DemoOptions::default();
        let mut csv = format!(
            "# demo: the demo's simulated copy ({} tables on {} workers, each about 64 MiB/s \
             with jitter, one table interrupted and retried), read every 500 ms\n\
             time_sec,table,status,rows,bytes,rows_total,size_bytes,worker\n",
            options.tables, options.workers
        );
        let running = tokio::spawn(demo::run(
            collector.clone(),
            options,
            std::future::pending(),
        ));
        let mut start = None;
        let mut slots: BTreeMap<String, usize> = BTreeMap::new();
        let mut done: BTreeMap<String, ()> = BTreeMap::new();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            collector.flush().await;
            let snapshot = collector.snapshot();
            if snapshot.phase != Phase::Copy && start.is_none() {
                continue;
            }
            let started = *start.get_or_insert_with(tokio::time::Instant::now);
            let now = started.elapsed().as_secs_f64();
            slots.retain(|name, _| {
                snapshot
                    .tables
                    .iter()
                    .any(|t| &t.name == name && t.status == TableStatus::Copying)
            });
            for t in &snapshot.tables {
                let name = t.qualified_name().replace('.', "_");
                let line = |status: &str, worker: String| {
                    format!(
                        "{now:.1},{name},{status},{},{},{},{},{worker}\n",
                        t.rows_copied, t.bytes_copied, t.rows_total, t.size_bytes
                    )
                };
                match t.status {
                    TableStatus::Copying => {
                        let taken: Vec<usize> = slots.values().copied().collect();
                        let free = (0..).find(|n| !taken.contains(n)).unwrap_or(0);
                        let slot = *slots.entry(t.name.clone()).or_insert(free);
                        csv.push_str(&line("copying", slot.to_string()));
                    }
                    _ if t.status.is_copied() && done.insert(name.clone(), ()).is_none() => {
                        csv.push_str(&line("done", String::new()));
                    }
                    _ => {}
                }
            }
            if snapshot.tables.iter().all(|t| t.status.is_copied()) {
                break;
            }
        }
        running.abort();
        csv
    })
}
