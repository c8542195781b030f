//! WebSocket fan-out on loopback: N clients at 2 Hz with a 100-table
//! snapshot, every client receiving every snapshot; then full frames
//! against delta frames (`?mode=delta`) at 10,000 tables with 1% of them
//! changing per tick: bytes per client per second and server CPU. The
//! server runs in a child process so that its CPU time is its own.
//! Bounded: each run lasts a few seconds and ends by itself.
//!
//! `cargo bench --bench fanout` (`-- plain` or `-- modes` for one part)

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use pgmigrator_metrics::http::{self, HttpConfig};
use pgmigrator_metrics::{Collector, Lsn, Phase, TableProgress};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message;

const TABLES: usize = 100;
const MEASURE: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    raise_fd_limit();
    if args.iter().any(|a| a == "--server") {
        server();
        return;
    }
    if args.iter().any(|a| a == "--big-server") {
        big_server();
        return;
    }
    common::print_cores();
    if !args.iter().any(|a| a == "modes") {
        for clients in [1_000, 10_000] {
            run(clients);
        }
    }
    if args.iter().any(|a| a == "plain") {
        return;
    }
    for clients in [100, 1_000] {
        for mode in ["full", "delta"] {
            run_mode(clients, mode);
        }
    }
}

/// Tables of the full-against-delta runs, and how many change per tick.
const BIG_TABLES: usize = 10_000;
const CHANGING: usize = BIG_TABLES / 100;
const MODE_MEASURE: Duration = Duration::from_secs(6);

/// A collector with 10,000 streaming tables, 1% of them taking changes
/// each 500 ms tick, served until stdin closes.
fn big_server() {
    let rt = common::runtime(None);
    rt.block_on(async {
        let collector = Collector::new();
        collector.set_phase(Phase::Streaming).await;
        let tables: Vec<TableProgress> = (0..BIG_TABLES)
            .map(|i| TableProgress::new("public", &format!("table_{i:05}"), 1_000_000, 1 << 28))
            .collect();
        collector.set_tables(tables).await;
        for i in 0..BIG_TABLES {
            let name = format!("table_{i:05}");
            collector.table_done("public", &name, 1_000_000).await;
            collector.table_streaming("public", &name).await;
        }
        let activity = collector.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(500));
            for round in 0usize.. {
                ticks.tick().await;
                for k in 0..CHANGING {
                    let table = format!("table_{:05}", (round * CHANGING + k) % BIG_TABLES);
                    activity.add_table_changes("public", &table, 10).await;
                }
                let lsn = round as u64 * 1000;
                activity.record_latest_lsn(Lsn(lsn + 500)).await;
                activity.record_applied(Lsn(lsn), 1000, 100_000).await;
            }
        });
        serve_until_stdin_closes(collector).await;
    });
}

/// `clients` clients of one mode against the big server: bytes each
/// receives per second and the server's CPU.
fn run_mode(clients: usize, mode: &str) {
    let (mut child, addr) = start_server("--big-server");
    let query = if mode == "delta" { "?mode=delta" } else { "" };
    let url = format!("ws://{addr}/api/v1/ws{query}");
    let pid = child.id();
    let rt = common::runtime(None);
    let result = rt.block_on(async {
        let counting = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // Each client reads from the moment it is connected, as a browser
        // does: one that waited for the others would be a client that
        // stopped reading.
        let mut readers = Vec::with_capacity(clients);
        for _ in 0..clients {
            let mut ws = match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok((ws, _)) => ws,
                Err(err) => return Err(format!("connecting client {}: {err}", readers.len())),
            };
            readers.push({
                let mut stopped = stopped.clone();
                let (counting, ready) = (Arc::clone(&counting), Arc::clone(&ready));
                tokio::spawn(async move {
                    let (mut bytes, mut frames, mut first) = (0usize, 0usize, true);
                    loop {
                        tokio::select! {
                            frame = ws.next() => match frame {
                                Some(Ok(Message::Text(text))) => {
                                    if first {
                                        first = false;
                                        ready.fetch_add(1, Ordering::Relaxed);
                                    }
                                    if counting.load(Ordering::Relaxed) {
                                        bytes += text.len();
                                        frames += 1;
                                    }
                                }
                                Some(Ok(_)) => {}
                                // Closed by the server.
                                _ => return (bytes, frames, true),
                            },
                            _ = stopped.wait_for(|s| *s) => return (bytes, frames, false),
                        }
                    }
                })
            });
        }
        // Every client past its first (full) frame, then a tick more.
        let deadline = Instant::now() + Duration::from_secs(120);
        while ready.load(Ordering::Relaxed) < clients && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let synced = ready.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu_before = common::cpu_seconds(pid);
        let own_before = common::cpu_time(common::Who::Process);
        let started = Instant::now();
        counting.store(true, Ordering::Relaxed);
        tokio::time::sleep(MODE_MEASURE).await;
        counting.store(false, Ordering::Relaxed);
        let cpu = common::cpu_seconds(pid) - cpu_before;
        let own = (common::cpu_time(common::Who::Process) - own_before).as_secs_f64();
        let wall = started.elapsed().as_secs_f64();
        stop.send(true).unwrap();
        let (mut bytes, mut frames, mut closed) = (0, 0, 0);
        for reader in readers {
            let (b, f, c) = timeout(Duration::from_secs(30), reader)
                .await
                .unwrap()
                .unwrap();
            bytes += b;
            frames += f;
            closed += usize::from(c);
        }
        Ok((bytes, frames, synced, closed, cpu, own, wall))
    });
    drop(child.stdin.take());
    let _ = child.wait();
    match result {
        Ok((bytes, frames, synced, closed, cpu, own, wall)) => println!(
            "{mode:>5}: {clients} clients, {BIG_TABLES} tables, {CHANGING} changing per tick: \
             {:.1} KB per client per second ({:.2} frames/s each); server CPU {:.1} % of one core, \
             the clients' own {:.1} %; {synced} got their first frame, {closed} closed by the server",
            bytes as f64 / clients as f64 / wall / 1024.0,
            frames as f64 / clients as f64 / wall,
            cpu / wall * 100.0,
            own / wall * 100.0,
        ),
        Err(err) => println!("{mode}: {clients} clients: {err}"),
    }
}

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on an owned struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The server: a collector with 100 tables and some activity, ticking at
/// 2 Hz, served on an ephemeral port (printed), until stdin closes.
fn server() {
    let rt = common::runtime(None);
    rt.block_on(async {
        let collector = Collector::new();
        collector.set_phase(Phase::Streaming).await;
        let tables = (0..TABLES)
            .map(|i| TableProgress::new("public", &format!("table_{i:03}"), 1_000_000, 1 << 28))
            .collect();
        collector.set_tables(tables).await;
        let activity = collector.clone();
        tokio::spawn(async move {
            for i in 0u64.. {
                activity.record_latest_lsn(Lsn(i * 1000 + 500)).await;
                activity.record_applied(Lsn(i * 1000), 10, 1000).await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        serve_until_stdin_closes(collector).await;
    });
}

/// This bench as a server (`--server` or `--big-server`), and the address
/// it printed.
fn start_server(kind: &str) -> (std::process::Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg(kind)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

/// Serves `collector` on an ephemeral port (printed) until stdin closes.
async fn serve_until_stdin_closes(collector: Collector) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap());
    let config = HttpConfig {
        max_clients: 20_000,
        max_connections: 20_000,
        ..HttpConfig::default()
    };
    let stdin_closed = async {
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().lines().count()).await;
    };
    http::serve(listener, collector, config, stdin_closed)
        .await
        .unwrap();
}

/// A time written as snapshots write it, so that the two compare as text.
fn utc_text(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap()
}

/// The `timestamp` of a frame, without parsing the whole snapshot.
fn timestamp(frame: &str) -> String {
    let start = frame.find("\"timestamp\":\"").map_or(0, |i| i + 13);
    frame[start..].chars().take_while(|&c| c != '"').collect()
}

fn run(clients: usize) {
    let (mut child, addr) = start_server("--server");
    let url = format!("ws://{addr}/api/v1/ws");
    let pid = child.id();

    let rt = common::runtime(None);
    let result = rt.block_on(async {
        let connect_started = Instant::now();
        let mut sockets = Vec::with_capacity(clients);
        for _ in 0..clients {
            match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok((ws, _)) => sockets.push(ws),
                Err(err) => return Err(format!("connecting client {}: {err}", sockets.len())),
            }
        }
        let connect_time = connect_started.elapsed();
        // Ticks from one second after everyone connected count.
        let since = utc_text(time::OffsetDateTime::now_utc() + Duration::from_secs(1));
        // Each client records the timestamps it receives, until told to stop.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let readers: Vec<_> = sockets
            .into_iter()
            .map(|mut ws| {
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    loop {
                        tokio::select! {
                            frame = ws.next() => match frame {
                                Some(Ok(Message::Text(text))) => seen.push(timestamp(&text)),
                                Some(Ok(_)) => {}
                                // Closed by the server.
                                _ => return (seen, true),
                            },
                            _ = stopped.wait_for(|s| *s) => return (seen, false),
                        }
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu_before = common::cpu_seconds(pid);
        let own_before = common::cpu_time(common::Who::Process);
        let measure_started = Instant::now();
        tokio::time::sleep(MEASURE).await;
        let cpu = common::cpu_seconds(pid) - cpu_before;
        let own = (common::cpu_time(common::Who::Process) - own_before).as_secs_f64();
        let wall = measure_started.elapsed().as_secs_f64();
        let until = utc_text(time::OffsetDateTime::now_utc() - Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.send(true).unwrap();
        let (mut all, mut closed) = (Vec::with_capacity(clients), 0);
        for reader in readers {
            let (seen, was_closed) = timeout(Duration::from_secs(30), reader)
                .await
                .unwrap()
                .unwrap();
            all.push(seen);
            closed += usize::from(was_closed);
        }
        // Every client must have every tick sent while all were connected.
        let window = |seen: &Vec<String>| -> BTreeSet<String> {
            seen.iter()
                .filter(|t| **t >= since && **t <= until)
                .cloned()
                .collect()
        };
        // Against every tick any client saw (not one client's, which may
        // itself have missed one), and how many ticks were missed in all.
        let windows: Vec<BTreeSet<String>> = all.iter().map(window).collect();
        let reference: BTreeSet<String> = windows.iter().flatten().cloned().collect();
        let missing = windows.iter().filter(|w| **w != reference).count();
        let missed_ticks: usize = windows.iter().map(|w| reference.len() - w.len()).sum();
        Ok((
            connect_time,
            cpu,
            own,
            wall,
            reference.len(),
            missing,
            missed_ticks,
            closed,
        ))
    });
    drop(child.stdin.take());
    let _ = child.wait();
    match result {
        Ok((connect_time, cpu, own, wall, ticks, missing, missed_ticks, closed)) => println!(
            "{clients} clients ({TABLES} tables, 2 Hz): connected in {:.1} s; server CPU {:.1} % of one core, \
             the clients' own {:.1} %, over {wall:.0} s; {ticks} ticks checked, {missing} clients missed one \
             ({missed_ticks} ticks missed in all), {closed} closed by the server",
            connect_time.as_secs_f64(),
            cpu / wall * 100.0,
            own / wall * 100.0,
        ),
        Err(err) => println!("{clients} clients: {err}"),
    }
}
