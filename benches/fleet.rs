//! What a fleet of 500 migrations costs `serve --state-dir`: resident
//! memory, descriptors and CPU while every state file is rewritten every
//! 2 s (the figures measured by hand before: 20–25 MB, 12 descriptors,
//! about 5 % of a core), then one `/metrics` scrape of all of them and one
//! look over the watched directory, timed by criterion. Bounded: the
//! paced part lasts 10 s and ends by itself.
//!
//! `cargo bench --bench fleet`

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use pgmigrator_metrics::fleet::WatchedDir;
use pgmigrator_metrics::http::Migrations;
use pgmigrator_metrics::http::metrics::render_migrations_text;
use pgmigrator_metrics::{
    Phase, Snapshot, Snapshots, StateFileMirror, TableProgress, write_state_file,
};

use common::{Who, cpu_time, print_cores, rss_kib, runtime};

const MIGRATIONS: usize = 500;
const TABLES: usize = 20;
const PACED: Duration = Duration::from_secs(10);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    print_cores();
    let dir = tempfile::tempdir().unwrap();
    for n in 0..MIGRATIONS {
        std::fs::create_dir(dir.path().join(format!("m{n:03}"))).unwrap();
        write(dir.path(), n, 0);
    }
    let snapshots = paced(dir.path());
    let mut criterion = Criterion::default().configure_from_args();
    criterion.bench_function("metrics scrape of 500 migrations (text)", |b| {
        let labelled: Vec<(&str, Arc<Snapshot>)> = snapshots
            .iter()
            .map(|(id, s)| (id.as_str(), Arc::clone(s)))
            .collect();
        b.iter(|| render_migrations_text(&labelled).len())
    });
    criterion.bench_function("look over a watched directory of 500 migrations", |b| {
        let mut watch = WatchedDir::open(dir.path().to_owned()).unwrap();
        watch.look(MIGRATIONS).unwrap();
        b.iter(|| watch.look(MIGRATIONS).unwrap().appeared.len())
    });
    criterion.final_summary();
}

fn write(dir: &Path, n: usize, round: i64) {
    let snapshot = Snapshot {
        phase: Phase::Streaming,
        total_rows: round,
        tables: (0..TABLES)
            .map(|t| TableProgress::new("public", &format!("t{t:02}"), 1000, 1 << 20))
            .collect(),
        ..Snapshot::default()
    };
    write_state_file(&dir.join(format!("m{n:03}")).join("state.json"), &snapshot).unwrap();
}

fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Serves the 500 state files as `serve` does (a mirror each, in one
/// list) on a 2-worker runtime while another thread rewrites every file
/// every 2 s; prints memory, descriptors and the process's CPU share.
/// Returns the newest snapshots, for the scrape bench.
fn paced(dir: &Path) -> Vec<(String, Arc<Snapshot>)> {
    let rt = runtime(Some(2));
    let (before_rss, before_fds) = (rss_kib(), descriptors());
    let migrations = rt.block_on(async {
        let migrations = Migrations::empty();
        for n in 0..MIGRATIONS {
            let mirror = StateFileMirror::start(dir.join(format!("m{n:03}")).join("state.json"));
            migrations
                .add(format!("m{n:03}"), Snapshots::from(mirror))
                .unwrap();
        }
        migrations
    });
    let writer = {
        let dir = dir.to_owned();
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut round = 1;
            while started.elapsed() < PACED {
                let pass = Instant::now();
                for n in 0..MIGRATIONS {
                    write(&dir, n, round);
                }
                round += 1;
                std::thread::sleep(Duration::from_secs(2).saturating_sub(pass.elapsed()));
            }
        })
    };
    let cpu_before = cpu_time(Who::Process);
    let started = Instant::now();
    writer.join().unwrap();
    let wall = started.elapsed();
    // The writer's own CPU is in the process's too: what it spent is
    // reported beside the total, not separated.
    let cpu = cpu_time(Who::Process) - cpu_before;
    let (after_rss, after_fds) = (rss_kib(), descriptors());
    println!(
        "fleet of {MIGRATIONS} migrations ({TABLES} tables each, rewritten every 2 s for {:.0} s): \
         RSS {} KiB more ({} KiB in all), {} descriptors more ({} in all), \
         process CPU (mirrors and the writer) {:.1} % of one core",
        wall.as_secs_f64(),
        after_rss.saturating_sub(before_rss),
        after_rss,
        after_fds.saturating_sub(before_fds),
        after_fds,
        cpu.as_secs_f64() / wall.as_secs_f64() * 100.0
    );
    assert_eq!(migrations.len(), MIGRATIONS);
    let latest: Vec<(String, Arc<Snapshot>)> = (0..MIGRATIONS)
        .map(|n| {
            let path = dir.join(format!("m{n:03}")).join("state.json");
            (
                format!("m{n:03}"),
                Arc::new(pgmigrator_metrics::read_state_file(&path).unwrap()),
            )
        })
        .collect();
    drop(migrations);
    drop(rt);
    latest
}
