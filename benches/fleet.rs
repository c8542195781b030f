//! What a fleet of 1,000 migrations costs the real `pgmigrator serve
//! --state-dir`, measured from outside its process: 999 of 100 tables and
//! one of 10,000 (a fleet holds at most 1,000); resident memory, CPU at
//! idle and while every state file is rewritten every 2 s,
//! the time and size of one `/metrics` scrape, and `/api/v1/migrations`
//! latency while the files change; then, in this process, what a scrape
//! costs for each `--metrics-tables` bound and what parsing the
//! 10,000-table file costs. Bounded: about two minutes, and the server is
//! killed at the end whatever happens.
//!
//! `cargo bench --bench fleet`

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use pgmigrator_metrics::http::metrics::{DEFAULT_METRICS_TABLES, Scrape, render};
use pgmigrator_metrics::{Phase, Snapshot, TableProgress, TableStatus, read_state_file};

use common::{cpu_seconds, print_cores, proc_status_kib};

/// The migrations of 100 tables; the one of 10,000 makes the fleet's
/// 1,000.
const MIGRATIONS: usize = 999;
const TABLES: usize = 100;
const HUGE_TABLES: usize = 10_000;
const REWRITE_EVERY: Duration = Duration::from_secs(2);
const IDLE: Duration = Duration::from_secs(10);
const CHANGING: Duration = Duration::from_secs(20);

/// The server, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    print_cores();
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::new(dir.path());
    fleet.write_all(0);
    let (server, addr) = serve(dir.path());
    let pid = server.0.id();
    wait_for_all(&addr);
    std::thread::sleep(Duration::from_secs(3));

    let idle = cpu_share(pid, IDLE);
    let rss_idle = proc_status_kib(&pid.to_string(), "VmRSS:");
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let writer = fleet.rewrite_until(Arc::clone(&stop), Arc::clone(&rounds));
    let changing = cpu_share(pid, CHANGING);
    let rewrites = rounds.load(Ordering::Relaxed);
    let (rss, peak) = (
        proc_status_kib(&pid.to_string(), "VmRSS:"),
        proc_status_kib(&pid.to_string(), "VmHWM:"),
    );
    println!(
        "serve --state-dir, {MIGRATIONS} migrations × {TABLES} tables and one of {HUGE_TABLES}: \
         RSS {} MiB idle, {} MiB while changing (peak {} MiB); CPU {:.1} % of a core idle, \
         {:.1} % while every file is rewritten every 2 s ({rewrites} rounds in {} s)",
        rss_idle >> 10,
        rss >> 10,
        peak >> 10,
        idle * 100.0,
        changing * 100.0,
        CHANGING.as_secs()
    );
    let scrape = get(&addr, "/metrics");
    println!(
        "one /metrics scrape (--metrics-tables {DEFAULT_METRICS_TABLES}): {} KiB, {} series",
        scrape.len() >> 10,
        scrape.lines().filter(|l| !l.starts_with('#')).count()
    );

    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    criterion.bench_function("GET /metrics of the fleet while it changes", |b| {
        b.iter(|| get(&addr, "/metrics").len())
    });
    criterion.bench_function(
        "GET /api/v1/migrations of the fleet while it changes",
        |b| b.iter(|| get(&addr, "/api/v1/migrations").len()),
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    drop(server);

    let snapshots: Vec<(String, Arc<Snapshot>)> = (0..MIGRATIONS)
        .map(|n| (id(n), Arc::new(fleet.snapshot(n, 1))))
        .collect();
    for bound in [Some(10), Some(DEFAULT_METRICS_TABLES), None] {
        let scrape = Scrape {
            tables: bound,
            ..Scrape::default()
        };
        let text = render(snapshots.clone(), &scrape);
        let shown = bound.map_or("every".to_owned(), |b| b.to_string());
        println!(
            "a scrape of {MIGRATIONS} × {TABLES} tables with {shown} tables each: {} KiB, {} series",
            text.len() >> 10,
            text.lines().filter(|l| !l.starts_with('#')).count()
        );
        criterion.bench_function(
            &format!("render {MIGRATIONS} migrations, {shown} tables each"),
            |b| b.iter(|| render(snapshots.clone(), &scrape).len()),
        );
    }
    let huge = dir.path().join("huge").join("state.json");
    criterion.bench_function("parse the 10,000-table state file", |b| {
        b.iter(|| read_state_file(&huge).unwrap().tables.len())
    });
    criterion.final_summary();
}

fn id(n: usize) -> String {
    format!("m{n:04}")
}

/// The state files of the fleet.
struct Fleet {
    dir: PathBuf,
}

impl Fleet {
    fn new(dir: &Path) -> Fleet {
        for n in 0..MIGRATIONS {
            std::fs::create_dir(dir.join(id(n))).unwrap();
        }
        std::fs::create_dir(dir.join("huge")).unwrap();
        Fleet {
            dir: dir.to_owned(),
        }
    }

    /// Migration `n` at `round`: 5 tables copying, 20 waiting, the rest
    /// streaming, every count moving with the round.
    fn snapshot(&self, n: usize, round: u64) -> Snapshot {
        table_snapshot(n, round, TABLES)
    }

    fn write_all(&self, round: u64) {
        for n in 0..MIGRATIONS {
            write(&self.dir.join(id(n)), &self.snapshot(n, round));
        }
        write(
            &self.dir.join("huge"),
            &table_snapshot(MIGRATIONS, round, HUGE_TABLES),
        );
    }

    /// Rewrites every file every 2 s on a thread of this process (not the
    /// server's) until `stop`, counting the rounds.
    fn rewrite_until(
        &self,
        stop: Arc<AtomicBool>,
        rounds: Arc<AtomicU64>,
    ) -> std::thread::JoinHandle<()> {
        let fleet = Fleet {
            dir: self.dir.clone(),
        };
        std::thread::spawn(move || {
            let mut round = 1;
            while !stop.load(Ordering::Relaxed) {
                let pass = Instant::now();
                fleet.write_all(round);
                rounds.fetch_add(1, Ordering::Relaxed);
                round += 1;
                let rest = REWRITE_EVERY.saturating_sub(pass.elapsed());
                let until = Instant::now() + rest;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    }
}

fn table_snapshot(n: usize, round: u64, tables: usize) -> Snapshot {
    let round = round as i64;
    let tables: Vec<TableProgress> = (0..tables)
        .map(|t| {
            let mut table =
                TableProgress::new("public", &format!("table_{t:05}"), 1_000_000, 1 << 30);
            table.status = match t % 20 {
                0 => TableStatus::Copying,
                1..=4 => TableStatus::Pending,
                _ => TableStatus::Streaming,
            };
            table.rows_copied = (round * 1000 + t as i64).min(1_000_000);
            table.bytes_copied = table.rows_copied * 1000;
            table.changes_applied = (round as u64) * (t as u64 + n as u64);
            table
        })
        .collect();
    Snapshot {
        phase: Phase::Streaming,
        timestamp: time::OffsetDateTime::now_utc(),
        total_rows: round * 1000,
        lag_bytes: (n as u64 * 4096 + round as u64) % 1_000_000,
        tables_total: tables.len(),
        tables,
        ..Snapshot::default()
    }
}

/// Writes `snapshot` as `DIR/state.json` the way a pipeline does (a new
/// file renamed into place), without the `fsync`s: the writer is not what
/// is measured.
fn write(dir: &Path, snapshot: &Snapshot) {
    let json = serde_json::to_vec(snapshot).unwrap();
    let temporary = dir.join("state.json.tmp");
    std::fs::write(&temporary, json).unwrap();
    std::fs::rename(temporary, dir.join("state.json")).unwrap();
}

/// `pgmigrator serve --state-dir DIR` on a free loopback port; its output
/// is drained on a thread so it never blocks on a full pipe.
fn serve(dir: &Path) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let server = Server(child);
    let addr = loop {
        let line = lines.next().expect("serve printed no address").unwrap();
        if let Some(url) = line.strip_prefix("Dashboard: http://") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (server, addr)
}

/// Waits (at most a minute) until the server lists every migration.
fn wait_for_all(addr: &str) {
    let started = Instant::now();
    loop {
        let list = get(addr, "/api/v1/migrations");
        let listed = list.matches("\"id\":").count();
        if listed == MIGRATIONS + 1 {
            println!(
                "every migration served {:.1} s after the server started",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{listed} listed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The body of `GET path` (HTTP/1.1, one connection each), panicking on
/// anything but 200.
fn get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// The share of one core process `pid` used over `span`.
fn cpu_share(pid: u32, span: Duration) -> f64 {
    let before = cpu_seconds(pid);
    let started = Instant::now();
    std::thread::sleep(span);
    (cpu_seconds(pid) - before) / started.elapsed().as_secs_f64()
}
