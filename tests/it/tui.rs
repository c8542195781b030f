//! The terminal dashboard: screens on ratatui's `TestBackend`, the remote
//! feed against a real server, and that it never slows the collector.

use std::sync::Arc;
use std::time::Duration;

use pgmigrator_metrics::demo::{self, DemoOptions};
use pgmigrator_metrics::http::{self, HttpConfig};
use pgmigrator_metrics::tui::{self, Feed, Link, Model};
use pgmigrator_metrics::{
    CatchUp, CatchUpState, Collector, Eta, EtaState, LogEntry, LogLevel, Lsn, Phase, Snapshot,
    TableProgress, TableStatus,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokio::time::{Instant, timeout};
use unicode_width::UnicodeWidthStr;

/// The screen as text, one line per row.
fn render(model: &Model, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|frame| tui::draw(frame, model, Instant::now()))
        .unwrap();
    let buffer = terminal.backend().buffer();
    buffer
        .content
        .chunks(usize::from(width))
        .map(|row| {
            // A wide character is followed by a filler cell: skip it.
            let mut line = String::new();
            let mut skip = 0;
            for cell in row {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                line.push_str(cell.symbol());
                skip = cell.symbol().width().saturating_sub(1);
            }
            line
        })
        .collect()
}

fn screen(model: &Model, width: u16, height: u16) -> String {
    render(model, width, height).join("\n")
}

fn model_with(snapshot: Snapshot) -> Model {
    let mut model = Model::new();
    model.on_link(Link::Live);
    model.on_snapshot(Arc::new(snapshot), Instant::now());
    model
}

fn tables(count: usize, status: TableStatus) -> Vec<TableProgress> {
    (0..count)
        .map(|i| {
            let mut t = TableProgress::new("public", &format!("table_{i:03}"), 2_100_000, 1 << 30);
            t.status = status;
            t.rows_copied = 890_000;
            t.percent = 42.4;
            t
        })
        .collect()
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn no_tables_yet_says_so() {
    let text = screen(&model_with(Snapshot::default()), 80, 24);
    assert!(text.contains("IDLE"), "{text}");
    assert!(text.contains("no tables yet"), "{text}");
    assert!(text.contains("q quit"), "{text}");
    assert!(text.contains("tables 0/0"), "{text}");
}

#[test]
fn the_copy_header_shows_the_forecast_with_its_band_or_its_state() {
    let eta = |state, seconds: Option<f64>| Eta {
        state,
        seconds,
        low: seconds.map(|s| s * 0.9),
        high: seconds.map(|s| s * 1.2),
        drift_sec: None,
    };
    let mut snapshot = Snapshot {
        phase: Phase::Copy,
        tables: tables(3, TableStatus::Copying),
        tables_total: 3,
        eta_sec: Some(754.0),
        eta: Some(eta(EtaState::Estimating, Some(754.0))),
        ..Snapshot::default()
    };
    let text = screen(&model_with(snapshot.clone()), 120, 24);
    assert!(text.contains("ETA 12m34s (11m19s to 15m5s)"), "{text}");
    snapshot.eta = Some(eta(EtaState::Stalled, None));
    let text = screen(&model_with(snapshot.clone()), 120, 24);
    assert!(text.contains("ETA stalled"), "{text}");
    // A state a hostile file names is shown escaped.
    let mut hostile = snapshot.clone();
    hostile.eta = Some(eta(EtaState::from_name("\x1b[2Jx"), None));
    let text = screen(&model_with(hostile), 120, 24);
    assert!(
        text.contains(r"ETA \e[2Jx") && !text.contains('\x1b'),
        "{text}"
    );
    // Streaming behind: the lag line says when it catches up, or not.
    snapshot.phase = Phase::Streaming;
    snapshot.lag_bytes = 4 << 20;
    snapshot.caught_up = false;
    snapshot.catch_up = Some(CatchUp {
        state: CatchUpState::FallingBehind,
        seconds: None,
        growing_bytes_per_sec: Some(1_258_291.0),
    });
    let text = screen(&model_with(snapshot), 120, 24);
    assert!(text.contains("falling behind by 1.20 MiB/s"), "{text}");
}

#[test]
fn copy_of_200_tables_scrolls_a_page_at_a_time() {
    let snapshot = Snapshot {
        phase: Phase::Copy,
        tables: tables(200, TableStatus::Copying),
        tables_total: 200,
        elapsed_sec: 5025.0,
        eta_sec: Some(754.0),
        ..Snapshot::default()
    };
    let mut model = model_with(snapshot);
    let first = screen(&model, 80, 24);
    assert!(
        first.contains("COPY") && first.contains("elapsed 1h23m45s"),
        "{first}"
    );
    assert!(first.contains("public.table_000"), "{first}");
    assert!(first.contains("890K/2.1M"), "{first}");
    assert!(first.contains("ETA 12m34s"), "{first}");
    let rows_shown = first
        .lines()
        .filter(|l| l.contains("public.table_"))
        .count();
    assert!(rows_shown >= 8, "{rows_shown} rows at 80×24:\n{first}");

    // The dashboard's loop tells the model how many rows fit, as here.
    let page = tui::table_rows(ratatui::layout::Rect::new(0, 0, 80, 24), &model);
    assert_eq!(page, rows_shown, "a page is what the screen shows");
    model.set_page(page);
    model.handle_key(key(KeyCode::PageDown));
    let paged = screen(&model, 80, 24);
    assert!(!paged.contains("public.table_000"), "{paged}");
    assert!(
        paged.contains(&format!("public.table_{rows_shown:03}")),
        "{paged}"
    );
    model.handle_key(key(KeyCode::End));
    let end = screen(&model, 80, 24);
    assert!(end.contains("public.table_199"), "{end}");
    assert!(
        !end.contains('+'),
        "no more tables below the last page:\n{end}"
    );
}

#[test]
fn streaming_shows_lag_live_tables_and_logs() {
    let mut model = model_with(Snapshot {
        phase: Phase::Streaming,
        tables: tables(3, TableStatus::Streaming),
        tables_total: 3,
        tables_copied: 3,
        lag_bytes: 1_258_291,
        lag_seconds: 0.42,
        rows_per_sec: 4521.0,
        bytes_per_sec: 1_048_576.0,
        error_count: 2,
        last_error: "connection reset".into(),
        ..Snapshot::default()
    });
    model.on_logs(Arc::new(vec![
        LogEntry::new(LogLevel::Warn, "apply slow").with_field("table", "public.orders"),
    ]));
    let text = screen(&model, 80, 24);
    assert!(text.contains("STREAMING"), "{text}");
    assert!(text.contains("lag 1.20 MiB · 0.4s"), "{text}");
    assert!(
        text.contains("4.5K rows/s · 1.00 MiB/s") || text.contains("4521 rows/s"),
        "{text}"
    );
    assert!(text.contains("⟳ live"), "{text}");
    assert!(
        text.contains("WARN  apply slow  table=public.orders"),
        "{text}"
    );
    assert!(text.contains("errors 2 · last: connection reset"), "{text}");
    assert!(text.contains("ETA done"), "{text}");
}

#[test]
fn the_header_carries_the_verification_and_v_lists_the_differing_keys() {
    use pgmigrator_metrics::{
        DifferenceKind, RowDifference, TableName, TableVerification, VerifyProgress, VerifyStatus,
    };
    let table = |name: &str, status| TableVerification {
        status,
        bytes_total: 1 << 30,
        bytes_verified: 1 << 30,
        ..TableVerification::pending(&TableName::new("public", name))
    };
    let mut verify = VerifyProgress {
        tables: vec![
            table("accounts", VerifyStatus::Verified),
            TableVerification {
                mismatched_rows: 2,
                differences: vec![
                    RowDifference {
                        key: "(7,\x1b[2J)".into(),
                        kind: DifferenceKind::Missing,
                    },
                    RowDifference {
                        key: "(42,x)".into(),
                        kind: DifferenceKind::Extra,
                    },
                ],
                ..table("orders", VerifyStatus::Mismatch)
            },
        ],
        ..VerifyProgress::default()
    };
    verify.total_up(10.0, 0);
    let mut model = model_with(Snapshot {
        phase: Phase::Streaming,
        timestamp: time::OffsetDateTime::now_utc(),
        verify: Some(verify),
        ..Snapshot::default()
    });
    let text = screen(&model, 100, 24);
    assert!(
        text.contains(
            "verify 1/2 tables · 1 mismatch (2 rows) · 2.00 GiB of 2.00 GiB · v lists them"
        ),
        "{text}"
    );
    assert!(!text.contains("(42,x)"), "the list waits for v:\n{text}");
    model.handle_key(key(KeyCode::Char('v')));
    let list = screen(&model, 100, 24);
    for line in [
        "mismatch public.orders: 2 row(s) differ",
        "missing (7,\\e[2J)",
        "extra (42,x)",
    ] {
        assert!(list.contains(line), "{line} in:\n{list}");
    }
    model.handle_key(key(KeyCode::Char('v')));
    assert!(!screen(&model, 100, 24).contains("(42,x)"), "v closes it");
}

#[test]
fn the_header_carries_the_cutover_verdict_and_c_lists_every_blocker() {
    use pgmigrator_metrics::{Cutover, CutoverItem, CutoverKind};
    let item = |kind: CutoverKind, table: &str, detail: &str| CutoverItem {
        kind,
        table: Some(table.into()),
        detail: detail.into(),
    };
    let now = time::OffsetDateTime::now_utc();
    let snapshot = |cutover: Cutover| Snapshot {
        phase: Phase::Streaming,
        timestamp: now,
        cutover: Some(cutover),
        ..Snapshot::default()
    };
    let blockers = vec![
        item(
            CutoverKind::SequenceBehind,
            "public.orders_id_seq",
            "source 600, destination 100",
        ),
        item(
            CutoverKind::SchemaMismatch,
            "public.orders",
            "column note only on the destination",
        ),
        item(
            CutoverKind::SequenceBehind,
            "public.items_id_seq",
            "source 9, destination unused",
        ),
    ];
    let warning = item(
        CutoverKind::NotSubscribed,
        "public.audit",
        "in no publication\x1b[2J",
    );
    let mut model = model_with(snapshot(Cutover::new(now, blockers, vec![warning])));
    let text = screen(&model, 100, 24);
    assert!(
        text.contains(
            "cutover NOT READY · 3 blockers: sequence_behind, schema_mismatch · c lists them"
        ),
        "{text}"
    );
    assert!(
        !text.contains("source 600"),
        "the list waits for c:\n{text}"
    );

    model.handle_key(key(KeyCode::Char('c')));
    let list = screen(&model, 100, 24);
    for line in [
        "✗ sequence_behind public.orders_id_seq: source 600, destination 100",
        "✗ schema_mismatch public.orders: column note only on the destination",
        "✗ sequence_behind public.items_id_seq: source 9, destination unused",
        "! not_subscribed public.audit: in no publication\\e[2J",
    ] {
        assert!(list.contains(line), "{line} in:\n{list}");
    }
    model.handle_key(key(KeyCode::Char('c')));
    assert!(
        !screen(&model, 100, 24).contains("source 600"),
        "c closes it"
    );

    model.on_snapshot(
        Arc::new(snapshot(Cutover::new(now, vec![], vec![]))),
        Instant::now(),
    );
    let text = screen(&model, 100, 24);
    assert!(text.contains("cutover READY"), "{text}");
}

#[test]
fn the_header_names_the_alerts_firing() {
    use pgmigrator_metrics::{AlertState, AlertStatus, Severity};
    let alert = |name: &str, state: AlertState| AlertStatus {
        name: name.into(),
        state,
        severity: Severity::Critical,
        since: time::OffsetDateTime::now_utc(),
        value: String::new(),
        summary: String::new(),
    };
    let model = model_with(Snapshot {
        alerts: vec![
            alert("lag", AlertState::Firing),
            alert("slot_in_danger", AlertState::Firing),
            alert("stalled", AlertState::Pending),
            alert("done", AlertState::Resolved),
        ],
        ..Snapshot::default()
    });
    let text = screen(&model, 100, 24);
    assert!(
        text.contains("alerts 2 firing: lag, slot_in_danger · 1 pending"),
        "{text}"
    );
    let quiet = model_with(Snapshot {
        alerts: vec![alert("done", AlertState::Resolved)],
        ..Snapshot::default()
    });
    assert!(!screen(&quiet, 100, 24).contains("alerts"));
}

#[test]
fn a_lost_server_and_a_stale_state_are_shown_plainly() {
    let mut model = model_with(Snapshot::default());
    model.on_link(Link::Reconnecting {
        retry_in: Duration::from_secs(4),
        reason: "connection refused".into(),
    });
    let text = screen(&model, 120, 24);
    assert!(
        text.contains("reconnecting… retry in 4s (connection refused)"),
        "{text}"
    );

    let stale = model_with(Snapshot {
        stale: true,
        ..Snapshot::default()
    });
    let text = screen(&stale, 80, 24);
    assert!(
        text.contains("stale — the pipeline stopped writing"),
        "{text}"
    );
}

#[test]
fn a_large_terminal_shows_more_tables_and_more_log() {
    let mut model = model_with(Snapshot {
        tables: tables(200, TableStatus::Copying),
        tables_total: 200,
        ..Snapshot::default()
    });
    let logs = (0..50)
        .map(|i| LogEntry::new(LogLevel::Info, format!("line {i:02}")))
        .collect();
    model.on_logs(Arc::new(logs));
    let small = render(&model, 80, 24);
    let large = render(&model, 200, 60);
    let count =
        |screen: &[String], needle: &str| screen.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(small.len(), 24);
    assert!(count(&large, "public.table_") > 2 * count(&small, "public.table_"));
    assert!(count(&large, "INFO") > count(&small, "INFO"));
    assert!(
        large.iter().any(|l| l.contains("line 49")),
        "newest log line shown"
    );
    // Full-height log view.
    model.handle_key(key(KeyCode::Char('l')));
    let log_view = render(&model, 80, 24);
    assert!(count(&log_view, "INFO") >= 15);
    assert_eq!(count(&log_view, "public.table_"), 0);
}

#[test]
fn long_and_non_ascii_table_names_render_without_breaking_the_layout() {
    let long = "x".repeat(80);
    let mut snapshot = Snapshot {
        tables: vec![
            TableProgress::new("public", &long, 10, 10),
            TableProgress::new("données", "zażółć_gęślą_jaźń", 10, 10),
            TableProgress::new("数据", "表格_用户", 10, 10),
        ],
        tables_total: 3,
        ..Snapshot::default()
    };
    snapshot.tables[2].status = TableStatus::Streaming;
    for (width, height) in [(80, 24), (200, 60), (40, 12)] {
        let lines = render(&model_with(snapshot.clone()), width, height);
        assert_eq!(lines.len(), usize::from(height));
        let text = lines.join("\n");
        if width >= 80 {
            assert!(text.contains("数据.表格_用户"), "{text}");
        }
        if width == 80 {
            // The long name is cut with an ellipsis; its row keeps its status.
            let row = lines.iter().find(|l| l.contains("public.xxxx")).unwrap();
            assert!(row.contains("x… pending"), "{row}");
        }
        if width >= 200 {
            assert!(text.contains("données.zażółć_gęślą_jaźń"), "{text}");
        }
    }
}

#[test]
fn the_help_overlay_lists_the_keys() {
    let mut model = model_with(Snapshot::default());
    model.handle_key(key(KeyCode::Char('?')));
    let text = screen(&model, 80, 24);
    for needle in [
        "keys",
        "q, Esc, Ctrl-C",
        "PgUp PgDn",
        "sort: original, progress, status, size",
    ] {
        assert!(text.contains(needle), "{needle}\n{text}");
    }
}

/// Serves a demo collector on `addr` until `stop` fires.
async fn demo_server(
    listener: tokio::net::TcpListener,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    // The last 20 minutes kept, as a server that ran before would have.
    let now = time::OffsetDateTime::now_utc();
    let mut history = pgmigrator_metrics::History::new();
    for s in (0..1200u64).step_by(2) {
        history.record(&Snapshot {
            timestamp: now - Duration::from_secs(1200 - s),
            ..Snapshot::default()
        });
    }
    let collector = Collector::builder()
        .tick(Duration::from_millis(100))
        .resume_history(history)
        .build();
    collector
        .add_log(LogEntry::new(LogLevel::Info, "demo server up"))
        .await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let options = DemoOptions {
            speed: 20.0,
            ..DemoOptions::default()
        };
        let simulation = tokio::spawn(demo::run(
            collector.clone(),
            options,
            std::future::pending(),
        ));
        let _ = http::serve(listener, collector, HttpConfig::default(), async {
            let _ = stopped.await;
        })
        .await;
        simulation.abort();
    });
    (stop, task)
}

/// Waits until `check` holds for the feed's link and snapshot (at most 15 s).
async fn wait_for(feed: &mut Feed, what: &str, check: impl Fn(&Link, &Snapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if check(&feed.link.borrow(), &feed.snapshots.borrow()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}; link {:?}",
            *feed.link.borrow()
        );
        let _ = timeout(Duration::from_millis(200), feed.snapshots.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_feed_follows_a_server_through_a_restart() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, server) = demo_server(listener).await;
    let mut feed = Feed::remote(&format!("http://{addr}"), None).unwrap();
    wait_for(&mut feed, "live snapshots", |link, s| {
        *link == Link::Live && s.tables_total == 24
    })
    .await;
    // The whole snapshot arrives, not a few fields.
    {
        let s = feed.snapshots.borrow();
        assert!(s.elapsed_sec > 0.0 && !s.tables.is_empty());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while feed.logs.borrow().is_empty() {
        assert!(Instant::now() < deadline, "no log lines fetched");
        let _ = timeout(Duration::from_millis(200), feed.logs.changed()).await;
    }
    // Deltas keep it live: the snapshot moves on without a reconnect.
    let before = feed.snapshots.borrow().elapsed_sec;
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert_eq!(*feed.link.borrow(), Link::Live, "no reconnect");
        let _ = timeout(Duration::from_millis(100), feed.snapshots.changed()).await;
    }
    assert!(feed.snapshots.borrow().elapsed_sec > before);
    // The history arrives once, for sparklines full at once.
    while feed.history.borrow().len() < tui::HISTORY - 2 {
        assert!(Instant::now() < deadline, "no history fetched");
        let _ = timeout(Duration::from_millis(200), feed.history.changed()).await;
    }

    // The server goes away.
    stop.send(()).unwrap();
    server.await.unwrap();
    wait_for(&mut feed, "the reconnecting state", |link, _| {
        matches!(link, Link::Reconnecting { .. })
    })
    .await;

    // It comes back on the same address: the feed recovers by itself.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (stop, server) = demo_server(listener).await;
    wait_for(&mut feed, "recovery", |link, _| *link == Link::Live).await;
    let before = feed.snapshots.borrow().timestamp;
    wait_for(&mut feed, "new snapshots", |_, s| s.timestamp > before).await;
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_dashboard_that_stops_drawing_does_not_slow_writers() {
    let collector = Collector::new();
    let feed = Feed::local(collector.clone());
    // Nobody reads the feed: the watch channel keeps only the newest value.
    for i in 0..100_000 {
        collector.record_applied(Lsn(i), 1, 1).await;
    }
    collector.flush().await;
    assert_eq!(collector.snapshot().total_rows, 100_000);
    assert_eq!(feed.snapshots.borrow().total_rows, 100_000);
}

#[test]
fn a_copying_table_without_progress_for_a_minute_is_marked_stalled() {
    let now = time::OffsetDateTime::now_utc();
    let mut tables = tables(2, TableStatus::Copying);
    tables[0].last_progress_at = Some(now - Duration::from_secs(90));
    tables[1].last_progress_at = Some(now - Duration::from_secs(5));
    let model = model_with(Snapshot {
        timestamp: now,
        tables,
        tables_total: 2,
        ..Snapshot::default()
    });
    let lines = render(&model, 80, 24);
    let row = |name: &str| lines.iter().find(|l| l.contains(name)).unwrap().clone();
    assert!(row("public.table_000").contains("stalled"));
    assert!(row("public.table_001").contains("copying"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_remote_feed_follows_an_https_server_and_names_a_bad_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::pki::Ca::new("test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let (cert, key) = ca
        .issue(&["localhost"], "localhost")
        .write(dir.path(), "server", 0o600);
    let collector = Collector::builder()
        .tick(Duration::from_millis(100))
        .build();
    collector.set_phase(pgmigrator_metrics::Phase::Copy).await;
    collector
        .add_log(pgmigrator_metrics::LogEntry::new(
            pgmigrator_metrics::LogLevel::Info,
            "over TLS",
        ))
        .await;
    let config = HttpConfig {
        tls: Some(http::TlsFiles { cert, key }),
        ..HttpConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _server = tokio::spawn(http::serve(
        listener,
        collector.clone(),
        config,
        std::future::pending(),
    ));
    let api = format!("https://localhost:{port}");

    let mut feed = Feed::remote_trusting(&api, None, &ca_file).unwrap();
    wait_for(&mut feed, "live snapshots over TLS", |link, s| {
        *link == Link::Live && s.phase == pgmigrator_metrics::Phase::Copy
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !feed.logs.borrow().iter().any(|e| e.message == "over TLS") {
        assert!(Instant::now() < deadline, "no log lines over TLS");
        let _ = timeout(Duration::from_millis(200), feed.logs.changed()).await;
    }

    // A CA that did not sign the server's certificate: reconnecting, and
    // the reason names the certificate problem.
    let other = crate::pki::Ca::new("other").write(dir.path(), "other.crt");
    let mut wrong = Feed::remote_trusting(&api, None, &other).unwrap();
    wait_for(&mut wrong, "a certificate error", |link, _| {
        matches!(link, Link::Reconnecting { reason, .. } if reason.contains("certificate"))
    })
    .await;
}

#[test]
fn the_header_shows_the_slot_and_says_when_it_is_lost() {
    let mut snapshot = Snapshot {
        phase: Phase::Streaming,
        ..Snapshot::default()
    };
    let without = screen(&model_with(snapshot.clone()), 100, 24);
    assert!(!without.contains(" slot "), "{without}");
    snapshot.slot = Some(pgmigrator_metrics::SlotHealth {
        name: "sub1".into(),
        active: true,
        wal_status: pgmigrator_metrics::WalStatus::Reserved,
        retained_bytes: 1_288_490_189,
        safe_wal_size: Some(3_328_599_654),
        max_slot_wal_keep_size: Some(4 << 30),
        ..pgmigrator_metrics::SlotHealth::default()
    });
    let shown = screen(&model_with(snapshot.clone()), 100, 24);
    assert!(
        shown.contains(
            " slot sub1 active · 1.20 GiB retained · 3.10 GiB until unreserved · reserved"
        ),
        "{shown}"
    );
    let slot = snapshot.slot.as_mut().unwrap();
    slot.wal_status = pgmigrator_metrics::WalStatus::Lost;
    slot.safe_wal_size = None;
    let lost = screen(&model_with(snapshot), 100, 24);
    assert!(
        lost.contains("LOST — its WAL is gone; the subscription must be re-created"),
        "{lost}"
    );
}

#[test]
fn a_table_status_from_a_newer_pipeline_is_shown_as_written_and_escaped() {
    let mut snapshot = Snapshot {
        tables: tables(2, TableStatus::Other("verifying".into())),
        ..Snapshot::default()
    };
    snapshot.tables[1].status = TableStatus::Other("x\x1b[2J".into());
    let text = screen(&model_with(snapshot), 100, 20);
    let line = |name: &str| text.lines().find(|l| l.contains(name)).unwrap().to_owned();
    assert!(line("table_000").contains("verifying"), "{text}");
    assert!(line("table_001").contains("x\\e[2J"), "{text}");
}

/// Three migrations' snapshots: `billing` with a critical alert firing,
/// `crm` with a lost slot, `shop` calm.
fn three_migrations() -> Vec<(String, Snapshot)> {
    use pgmigrator_metrics::{Severity, SlotHealth, WalStatus};
    let now = time::OffsetDateTime::now_utc();
    let alert = crate::firing_lag(Severity::Critical, now);
    let slot = SlotHealth {
        name: "crm_sub".into(),
        wal_status: WalStatus::Lost,
        ..SlotHealth::default()
    };
    [
        ("shop", Snapshot::default()),
        (
            "billing",
            Snapshot {
                alerts: vec![alert],
                ..Snapshot::default()
            },
        ),
        (
            "crm",
            Snapshot {
                slot: Some(slot),
                ..Snapshot::default()
            },
        ),
    ]
    .into_iter()
    .map(|(id, snapshot)| (id.to_owned(), snapshot))
    .collect::<Vec<_>>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_lists_migrations_worst_first_and_opens_each_local_or_remote() {
    let mut migrations = Vec::new();
    for (id, snapshot) in three_migrations() {
        let collector = Collector::new();
        collector.record_alerts(snapshot.alerts, 0).await;
        if let Some(slot) = snapshot.slot {
            collector.record_slot(slot).await;
        }
        collector.flush().await;
        migrations.push((id, collector));
    }
    let list: Vec<(String, pgmigrator_metrics::Snapshots)> = migrations
        .iter()
        .map(|(id, c)| (id.clone(), c.snapshots()))
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve_migrations(
        listener,
        http::Migrations::new(list.clone()).unwrap(),
        HttpConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));

    let local = tui::Fleet::local(list);
    let mut remote = tui::Fleet::remote(&format!("http://{addr}"), None, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while remote.migrations.borrow().len() < 3 {
        assert!(Instant::now() < deadline, "no list from the server");
        let _ = timeout(Duration::from_millis(200), remote.migrations.changed()).await;
    }
    assert!(local.open("nope").is_none());
    for fleet in [&local, &remote] {
        let ids: Vec<String> = fleet
            .migrations
            .borrow()
            .iter()
            .map(|m| m.id.clone())
            .collect();
        assert_eq!(ids, ["billing", "crm", "shop"]);
        let mut feed = fleet.open("crm").unwrap();
        wait_for(&mut feed, "crm's snapshot", |link, s| {
            *link == Link::Live && s.slot.as_ref().is_some_and(|slot| slot.name == "crm_sub")
        })
        .await;
    }

    // The list on screen: the selected row reversed, the worst on top.
    let mut model = tui::FleetModel::new();
    model.on_migrations(remote.migrations.borrow().clone());
    model.handle_key(key(KeyCode::Down));
    let mut terminal = Terminal::new(TestBackend::new(110, 8)).unwrap();
    terminal
        .draw(|frame| tui::draw_fleet(frame, &model))
        .unwrap();
    let buffer = terminal.backend().buffer().clone();
    let lines: Vec<String> = buffer
        .content
        .chunks(110)
        .map(|row| row.iter().map(|c| c.symbol()).collect())
        .collect();
    assert!(
        lines[0].contains("3 migrations · 1 need attention"),
        "{lines:#?}"
    );
    assert!(
        lines[2].contains("billing") && lines[2].contains("1 critical"),
        "{lines:#?}"
    );
    assert!(
        lines[3].contains("crm") && lines[3].contains("lost"),
        "{lines:#?}"
    );
    assert!(lines[4].contains("shop"), "{lines:#?}");
    let crm_row = buffer.cell((1, 3)).unwrap();
    assert!(
        crm_row
            .modifier
            .contains(ratatui::style::Modifier::REVERSED),
        "the selected row is reversed"
    );
    assert!(lines[7].contains("Enter open"), "{lines:#?}");
    model.handle_key(key(KeyCode::Enter));
    assert_eq!(model.take_open().as_deref(), Some("crm"));

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[test]
fn esc_in_one_of_several_migrations_goes_back_and_its_name_is_in_the_header() {
    let mut model = Model::of_migration("crm");
    model.on_link(Link::Live);
    let text = screen(&model, 100, 20);
    assert!(text.lines().next().unwrap().contains("crm"), "{text}");
    assert!(text.contains("Esc list"), "{text}");
    model.handle_key(key(KeyCode::Esc));
    assert!(model.should_go_back() && !model.should_quit());

    let mut alone = Model::new();
    alone.handle_key(key(KeyCode::Esc));
    assert!(alone.should_quit() && !alone.should_go_back());
}
