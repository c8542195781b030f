//! The dashboard in a real browser: headless Chromium, driven over the
//! DevTools protocol, loads `/` from a running `pgmigrator demo`.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::{Running, start_pgmigrator};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A DevTools connection to one page.
struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Page {
    async fn open(profile: &std::path::Path, url: &str, extra: &[String]) -> (Running, Page) {
        let browser = Running(
            Command::new(CHROMIUM)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--remote-debugging-port=0",
                    "--window-size=1280,900",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .args(extra)
                .arg(url)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Chromium writes the port it chose into the profile directory.
        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|text| text.lines().next().map(str::to_owned))
                .filter(|port| !port.is_empty())
            {
                break port;
            }
            assert!(Instant::now() < deadline, "chromium did not start");
            sleep(Duration::from_millis(100)).await;
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let page_url = loop {
            let list = reqwest_json(&format!("http://127.0.0.1:{port}/json/list")).await;
            let page = list.as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|t| t["type"] == "page")
                    .map(|t| t["webSocketDebuggerUrl"].clone())
            });
            if let Some(Value::String(page)) = page {
                break page;
            }
            assert!(Instant::now() < deadline, "no page target: {list}");
            sleep(Duration::from_millis(100)).await;
        };
        let (ws, _) = tokio_tungstenite::connect_async(page_url).await.unwrap();
        (browser, Page { ws, next_id: 1 })
    }

    /// Evaluates `expression` in the page and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": expression, "returnByValue": true },
        });
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        loop {
            let message = timeout(Duration::from_secs(10), self.ws.next())
                .await
                .expect("DevTools answers")
                .unwrap()
                .unwrap();
            if let Message::Text(text) = message {
                let reply: Value = serde_json::from_str(&text).unwrap();
                if reply["id"] == id {
                    return reply["result"]["result"]["value"].clone();
                }
            }
        }
    }

    /// What a person sees: phase, connection state, banner, elapsed, tables.
    async fn view(&mut self) -> Value {
        self.eval(
            "JSON.stringify({phase: document.getElementById('phase').textContent,
                conn: document.getElementById('conn').textContent,
                banner: document.getElementById('banner').textContent,
                elapsed: document.getElementById('elapsed').textContent,
                copied: document.getElementById('copied').textContent,
                copyDetail: document.getElementById('copy-detail').textContent,
                lagDetail: document.getElementById('lag-detail').textContent,
                slot: document.getElementById('slot-card').innerText,
                slotBanner: document.getElementById('slot-banner').textContent,
                title: document.title,
                alertBanner: document.getElementById('alert-banner').textContent,
                alerts: document.getElementById('alerts-card').innerText,
                cutover: document.getElementById('cutover-card').innerText,
                verify: document.getElementById('verify-card').innerText,
                marks: [...document.querySelectorAll('.vmark')].map((m) => m.textContent + ' ' + m.title),
                logs: document.getElementById('logs').innerText,
                fleet: document.body.classList.contains('fleet'),
                fleetRows: [...document.querySelectorAll('.fleet-row')].map((r) => r.dataset.id),
                fleetText: document.getElementById('fleet').innerText,
                name: document.getElementById('migration-name').textContent,
                tables: document.getElementById('viewport').innerText})",
        )
        .await
        .as_str()
        .map(|text| serde_json::from_str(text).unwrap())
        .unwrap_or(Value::Null)
    }

    /// The page's own measures named `name` (start and duration, in ms),
    /// once it has `at_least` of them (at most 30 s).
    async fn measures(&mut self, name: &str, at_least: usize) -> Vec<(f64, f64)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self
                .eval(&format!(
                    "JSON.stringify(performance.getEntriesByName('{name}')
                        .map(e => [e.startTime, e.duration]))"
                ))
                .await;
            let measures: Vec<(f64, f64)> =
                serde_json::from_str(value.as_str().unwrap_or("[]")).unwrap();
            if measures.len() >= at_least {
                return measures;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {name}",
                measures.len()
            );
            sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `check` holds for the view (at most 30 s).
    async fn wait_until(&mut self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let view = self.view().await;
            if check(&view) {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {what}; it shows {view}"
            );
            sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `pgmigrator serve` of the state file at `path`, and a page on it (its
/// browser profile in `dir`).
async fn serve_in_browser(
    dir: &std::path::Path,
    path: &std::path::Path,
) -> (Running, Running, Page) {
    let (serve, url) =
        start_pgmigrator(&["serve".as_ref(), "--state-file".as_ref(), path.as_os_str()]);
    let profile = dir.join("profile");
    std::fs::create_dir(&profile).unwrap();
    let (browser, page) = Page::open(&profile, &url, &[]).await;
    (serve, browser, page)
}

/// The median and the largest of `durations` (not empty).
fn median_and_max(durations: &[f64]) -> (f64, f64) {
    let mut sorted = durations.to_vec();
    sorted.sort_by(f64::total_cmp);
    (sorted[sorted.len() / 2], sorted[sorted.len() - 1])
}

/// `pgmigrator serve --state-dir watched`, and a page on it (its browser
/// profile in `dir`).
async fn serve_dir_in_browser(
    dir: &std::path::Path,
    watched: &std::path::Path,
) -> (Running, Running, Page) {
    let (serve, url) = start_pgmigrator(&[
        "serve".as_ref(),
        "--state-dir".as_ref(),
        watched.as_os_str(),
    ]);
    let profile = dir.join("profile");
    std::fs::create_dir(&profile).unwrap();
    let (browser, page) = Page::open(&profile, &url, &[]).await;
    (serve, browser, page)
}

/// A GET that returns JSON, with the test's hyper client.
async fn reqwest_json(url: &str) -> Value {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    let client = Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<hyper::body::Bytes>>();
    match client.get(url.parse().unwrap()).await {
        Ok(response) => {
            let body = response.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        }
        Err(_) => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_data_in_a_browser_and_says_when_disconnected() {
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("state.json");
    let (mut demo, url) = start_pgmigrator(&[
        "demo".as_ref(),
        "--speed".as_ref(),
        "4".as_ref(),
        "--duration".as_ref(),
        "120s".as_ref(),
        "--state-file".as_ref(),
        state_file.as_os_str(),
    ]);
    let profile = dir.path().join("profile");
    std::fs::create_dir(&profile).unwrap();
    let (_browser, mut page) = Page::open(&profile, &url, &[]).await;

    let live = page
        .wait_until("live data", |v| {
            v["conn"] == "live"
                && v["tables"]
                    .as_str()
                    .is_some_and(|t| t.contains("public.order_items"))
        })
        .await;
    let phase = live["phase"].as_str().unwrap().to_owned();
    assert!(
        ["connecting", "schema", "copy", "streaming"].contains(&phase.as_str()),
        "{live}"
    );
    assert!(
        live["copied"].as_str().unwrap().ends_with("/ 24 tables"),
        "{live}"
    );
    // It updates by itself, from deltas after the first frame, and the
    // log arrives over the same WebSocket.
    let first_elapsed = live["elapsed"].clone();
    page.wait_until("a new elapsed time", |v| v["elapsed"] != first_elapsed)
        .await;
    page.wait_until("log lines", |v| {
        v["logs"].as_str().is_some_and(|l| l.contains("INFO"))
    })
    .await;
    let painted = page
        .eval("performance.getEntriesByName('frame-to-paint').length")
        .await;
    assert!(painted.as_i64().unwrap_or(0) > 2, "{painted}");

    // Once the state file has the tables (it is written every 2 s), the
    // server goes away: the page says so plainly.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pgmigrator_metrics::read_state_file(&state_file).map_or(true, |s| s.tables_total == 0) {
        assert!(
            Instant::now() < deadline,
            "the demo never persisted its tables"
        );
        sleep(Duration::from_millis(200)).await;
    }
    let _ = demo.0.kill();
    let _ = demo.0.wait();
    let gone = page
        .wait_until("the disconnected state", |v| v["conn"] == "disconnected")
        .await;
    assert!(
        gone["banner"].as_str().unwrap().starts_with("Disconnected"),
        "{gone}"
    );

    // `serve` on the state file the demo left, last modified a minute ago.
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&state_file)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (_serve, url) = start_pgmigrator(&[
        "serve".as_ref(),
        "--state-file".as_ref(),
        state_file.as_os_str(),
    ]);
    page.eval(&format!("location.href = {}", json!(url))).await;
    let stale = page
        .wait_until("the stale state", |v| v["conn"] == "stale")
        .await;
    assert!(
        stale["banner"].as_str().unwrap().starts_with("Stale"),
        "{stale}"
    );
    assert!(
        stale["tables"]
            .as_str()
            .unwrap()
            .contains("public.order_items"),
        "{stale}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_over_https_with_its_websocket_on_wss() {
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::pki::Ca::new("test CA");
    let leaf = ca.issue(&["localhost", "127.0.0.1"], "localhost");
    let (cert, key) = leaf.write(dir.path(), "server", 0o600);
    let (_demo, url) = start_pgmigrator(&[
        "demo".as_ref(),
        "--duration".as_ref(),
        "120s".as_ref(),
        "--state-file".as_ref(),
        dir.path().join("state.json").as_os_str(),
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        key.as_os_str(),
    ]);
    assert!(url.starts_with("https://"), "{url}");
    let profile = dir.path().join("profile");
    std::fs::create_dir(&profile).unwrap();
    // The browser trusts exactly this certificate's key, as a pinned one.
    let pin = format!("--ignore-certificate-errors-spki-list={}", leaf.spki_sha256);
    let (_browser, mut page) = Page::open(&profile, &url, &[pin]).await;
    let live = page
        .wait_until("live data over HTTPS", |v| {
            v["conn"] == "live"
                && v["tables"]
                    .as_str()
                    .is_some_and(|t| t.contains("public.order_items"))
        })
        .await;
    let first_elapsed = live["elapsed"].clone();
    page.wait_until("updates over wss://", |v| v["elapsed"] != first_elapsed)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_slot_puts_a_banner_across_the_dashboard() {
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    use pgmigrator_metrics::{Phase, SlotHealth, Snapshot, WalStatus, write_state_file};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut slot = SlotHealth {
        name: "sub".into(),
        wal_status: WalStatus::Extended,
        retained_bytes: 96 << 20,
        safe_wal_size: Some(16 << 20),
        max_slot_wal_keep_size: Some(128 << 20),
        inactive_since: Some(time::OffsetDateTime::now_utc() - Duration::from_secs(300)),
        ..SlotHealth::default()
    };
    let snapshot = |slot: &SlotHealth| Snapshot {
        phase: Phase::Streaming,
        timestamp: time::OffsetDateTime::now_utc(),
        slot: Some(slot.clone()),
        ..Snapshot::default()
    };
    write_state_file(&path, &snapshot(&slot)).unwrap();
    let (_serve, _browser, mut page) = serve_in_browser(dir.path(), &path).await;
    let shown = page
        .wait_until("the slot card", |v| {
            v["slot"]
                .as_str()
                .is_some_and(|t| t.contains("96.00 MiB held · extended"))
        })
        .await;
    let card = shown["slot"].as_str().unwrap();
    assert!(card.contains("inactive for 5m"), "{card}");
    assert!(card.contains("16.00 MiB until unreserved"), "{card}");
    assert_eq!(shown["slotBanner"], "");

    slot.wal_status = WalStatus::Lost;
    slot.safe_wal_size = None;
    write_state_file(&path, &snapshot(&slot)).unwrap();
    page.wait_until("the lost banner", |v| {
        v["slotBanner"] == "Replication slot lost — the subscription must be re-created"
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forecasts_show_their_band_drift_catching_up_and_when_the_slot_is_lost() {
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    use pgmigrator_metrics::{
        CatchUp, CatchUpState, Phase, SlotHealth, Snapshot, WalStatus, write_state_file,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut snapshot = Snapshot {
        phase: Phase::Streaming,
        timestamp: time::OffsetDateTime::now_utc(),
        tables_total: 3,
        tables_copied: 2,
        eta_sec: Some(750.0),
        eta: Some(crate::slipping_forecast()),
        lag_bytes: 64 << 20,
        caught_up: false,
        catch_up: Some(CatchUp {
            state: CatchUpState::FallingBehind,
            seconds: None,
            growing_bytes_per_sec: Some(2.0 * 1024.0 * 1024.0),
        }),
        slot: Some(SlotHealth {
            name: "sub".into(),
            wal_status: WalStatus::Reserved,
            active: true,
            retained_bytes: 96 << 20,
            safe_wal_size: Some(160 << 20),
            max_slot_wal_keep_size: Some(256 << 20),
            exhausted_in_sec: Some(2730),
            ..SlotHealth::default()
        }),
        ..Snapshot::default()
    };
    write_state_file(&path, &snapshot).unwrap();
    let (_serve, _browser, mut page) = serve_in_browser(dir.path(), &path).await;
    let shown = page
        .wait_until("the forecast", |v| {
            v["copyDetail"]
                .as_str()
                .is_some_and(|t| t.contains("ETA 12m 30s"))
        })
        .await;
    let copy = shown["copyDetail"].as_str().unwrap();
    assert!(
        copy.ends_with("ETA 12m 30s (10m 0s–16m 40s) · +12m 0s in the last hour"),
        "{copy}"
    );
    let lag = shown["lagDetail"].as_str().unwrap();
    assert!(lag.starts_with("falling behind by 2.00 MiB/s · "), "{lag}");
    let slot = shown["slot"].as_str().unwrap();
    assert!(
        slot.contains("160.00 MiB until unreserved · lost in 45m 30s at this rate"),
        "{slot}"
    );

    // Catching up now, the forecast slipping earlier, the slot safe again.
    snapshot.catch_up = Some(CatchUp {
        state: CatchUpState::CatchingUp,
        seconds: Some(95.0),
        growing_bytes_per_sec: None,
    });
    snapshot.eta.as_mut().unwrap().drift_sec = Some(-90.0);
    snapshot.slot.as_mut().unwrap().exhausted_in_sec = None;
    snapshot.timestamp = time::OffsetDateTime::now_utc();
    write_state_file(&path, &snapshot).unwrap();
    let shown = page
        .wait_until("catching up", |v| {
            v["lagDetail"]
                .as_str()
                .is_some_and(|t| t.starts_with("caught up in 1m 35s · "))
        })
        .await;
    let copy = shown["copyDetail"].as_str().unwrap();
    assert!(copy.ends_with("· −1m 30s in the last hour"), "{copy}");
    let slot = shown["slot"].as_str().unwrap();
    assert!(
        slot.contains("160.00 MiB until unreserved · spilled"),
        "{slot}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cutover_card_and_the_title_say_not_ready_with_the_blocker_then_ready() {
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    use pgmigrator_metrics::{
        Cutover, CutoverItem, CutoverKind, Phase, Snapshot, write_state_file,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let snapshot = |blockers: Vec<CutoverItem>| {
        let now = time::OffsetDateTime::now_utc();
        let warning = CutoverItem {
            kind: CutoverKind::NotSubscribed,
            table: Some("public.audit".into()),
            detail: "in no publication".into(),
        };
        Snapshot {
            phase: Phase::Streaming,
            timestamp: now,
            cutover: Some(Cutover::new(now, blockers, vec![warning])),
            ..Snapshot::default()
        }
    };
    let blocker = CutoverItem {
        kind: CutoverKind::SequenceBehind,
        table: Some("public.orders_id_seq".into()),
        detail: "source 600, destination 100".into(),
    };
    write_state_file(&path, &snapshot(vec![blocker])).unwrap();
    let (_serve, _browser, mut page) = serve_in_browser(dir.path(), &path).await;
    let shown = page
        .wait_until("NOT READY", |v| v["title"] == "NOT READY · pgmigrator")
        .await;
    let card = shown["cutover"].as_str().unwrap();
    assert!(card.contains("NOT READY"), "{card}");
    assert!(
        card.contains("sequence_behind · public.orders_id_seq — source 600, destination 100"),
        "{card}"
    );
    assert!(card.contains("1 warning"), "{card}");
    assert!(
        !card.contains("public.audit"),
        "warnings are folded: {card}"
    );

    write_state_file(&path, &snapshot(vec![])).unwrap();
    let shown = page
        .wait_until("READY", |v| v["title"] == "READY · pgmigrator")
        .await;
    let card = shown["cutover"].as_str().unwrap();
    assert!(
        card.contains("READY") && !card.contains("NOT READY"),
        "{card}"
    );
    assert!(!card.contains("sequence_behind"), "{card}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_alerts_put_a_banner_on_the_dashboard_and_all_are_listed() {
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    use pgmigrator_metrics::{
        AlertState, AlertStatus, Phase, Severity, Snapshot, write_state_file,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let now = time::OffsetDateTime::now_utc();
    let alert = |name: &str, state: AlertState, summary: &str| AlertStatus {
        name: name.into(),
        state,
        severity: Severity::Critical,
        since: now,
        value: String::new(),
        summary: summary.into(),
    };
    let snapshot = Snapshot {
        phase: Phase::Streaming,
        timestamp: now,
        alerts: vec![
            alert(
                "slot_in_danger",
                AlertState::Firing,
                "the slot is unreserved",
            ),
            alert("stalled", AlertState::Pending, "no progress for 9m"),
        ],
        ..Snapshot::default()
    };
    write_state_file(&path, &snapshot).unwrap();
    let (_serve, _browser, mut page) = serve_in_browser(dir.path(), &path).await;
    let shown = page
        .wait_until("the alert banner", |v| {
            v["alertBanner"] == "1 alert firing: slot_in_danger — the slot is unreserved"
        })
        .await;
    let card = shown["alerts"].as_str().unwrap();
    assert!(
        card.contains("pending · critical · stalled — no progress for 9m"),
        "{card}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verify_card_names_the_differing_keys_as_text_and_marks_each_table() {
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    use pgmigrator_metrics::{
        DifferenceKind, Phase, RowDifference, Snapshot, TableName, TableProgress, TableStatus,
        TableVerification, VerifyProgress, VerifyStatus, write_state_file,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let streaming = |name: &str| TableProgress {
        status: TableStatus::Streaming,
        ..TableProgress::new("public", name, 10, 1000)
    };
    let verification = |name: &str, status| TableVerification {
        status,
        bytes_total: 1 << 20,
        bytes_verified: 1 << 20,
        ..TableVerification::pending(&TableName::new("public", name))
    };
    let mut verify = VerifyProgress {
        tables: vec![
            verification("accounts", VerifyStatus::Verified),
            TableVerification {
                mismatched_rows: 2,
                differences: vec![
                    RowDifference {
                        key: "(<img src=x onerror=alert(1)>)".into(),
                        kind: DifferenceKind::Missing,
                    },
                    RowDifference {
                        key: "(42)".into(),
                        kind: DifferenceKind::Different,
                    },
                ],
                ..verification("orders", VerifyStatus::Mismatch)
            },
        ],
        ..VerifyProgress::default()
    };
    verify.total_up(10.0, 0);
    let snapshot = Snapshot {
        phase: Phase::Streaming,
        timestamp: time::OffsetDateTime::now_utc(),
        tables: vec![streaming("accounts"), streaming("orders")],
        verify: Some(verify),
        ..Snapshot::default()
    };
    write_state_file(&path, &snapshot).unwrap();
    let (_serve, _browser, mut page) = serve_in_browser(dir.path(), &path).await;
    let shown = page
        .wait_until("the verify card", |v| {
            v["verify"]
                .as_str()
                .unwrap_or("")
                .contains("2 rows differ in 1 table")
        })
        .await;
    let card = shown["verify"].as_str().unwrap();
    for line in [
        "public.orders · missing (<img src=x onerror=alert(1)>)",
        "public.orders · different (42)",
        "2.00 MiB of 2.00 MiB",
    ] {
        assert!(card.contains(line), "{line:?} in {card}");
    }
    let marks = shown["marks"].as_array().unwrap();
    assert!(marks.iter().any(|m| m == "✓ verify: verified"), "{marks:?}");
    assert!(
        marks
            .iter()
            .any(|m| m == "≠ verify: mismatch · 2 rows differ"),
        "{marks:?}"
    );
    // The key is text: no element was made from it.
    assert_eq!(
        page.eval("document.querySelectorAll('img').length").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_are_full_the_moment_the_dashboard_opens() {
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    use pgmigrator_metrics::{
        History, Snapshot, companion_path, write_history_file, write_state_file,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let now = time::OffsetDateTime::now_utc();
    let mut history = History::new();
    for s in (0..2 * 3600u64).step_by(5) {
        history.record(&Snapshot {
            timestamp: now - Duration::from_secs(2 * 3600 - s),
            // Megabytes behind, and under half a minute.
            lag_seconds: (s % 600) as f64 / 20.0,
            lag_bytes: 4_000_000,
            ..Snapshot::default()
        });
    }
    write_state_file(
        &path,
        &Snapshot {
            timestamp: now,
            ..Snapshot::default()
        },
    )
    .unwrap();
    write_history_file(&companion_path(&path, "history"), &history).unwrap();
    let (_serve, _browser, mut page) = serve_in_browser(dir.path(), &path).await;
    let five_minutes = loaded_points(&mut page).await;
    assert!(
        (25..=40).contains(&five_minutes),
        "{five_minutes} points over 5 minutes"
    );
    // The lag chart's label is in the unit of its line: seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let [label, max] = page
            .eval("[$('lag-chart-max').textContent, Math.max(...series.map((p) => p.lag))]")
            .await
            .as_array()
            .cloned()
            .and_then(|v| <[Value; 2]>::try_from(v).ok())
            .unwrap();
        let wanted = format!("max {:.1} s over the range", max.as_f64().unwrap());
        if label == wanted.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{label} for a line up to {max} s"
        );
        sleep(Duration::from_millis(100)).await;
    }
    page.eval("performance.clearMarks(); chooseRange('1h'); 0")
        .await;
    let hour = loaded_points(&mut page).await;
    assert!((150..=310).contains(&hour), "{hour} points over an hour");
}

/// The points the charts hold once the page says the history loaded.
async fn loaded_points(page: &mut Page) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = page
            .eval("performance.getEntriesByName('history-loaded').length > 0 ? series.length : -1")
            .await;
        if let Some(n) = value.as_i64().filter(|n| *n > 0) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "the history never loaded: {value}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tables_render_and_the_page_measures_frame_to_paint() {
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    use pgmigrator_metrics::{Phase, Snapshot, TableProgress, TableStatus, write_state_file};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let tables: Vec<TableProgress> = (0..10_000)
        .map(|i| {
            let mut t = TableProgress::new("public", &format!("table_{i:05}"), 1000, 1 << 20);
            t.status = TableStatus::Streaming;
            t
        })
        .collect();
    let snapshot = Snapshot {
        phase: Phase::Streaming,
        timestamp: time::OffsetDateTime::now_utc(),
        tables_total: tables.len(),
        tables,
        ..Snapshot::default()
    };
    write_state_file(&path, &snapshot).unwrap();
    let (_serve, _browser, mut page) = serve_in_browser(dir.path(), &path).await;
    page.wait_until("the tables", |v| {
        v["tables"]
            .as_str()
            .is_some_and(|t| t.contains("public.table_00000"))
    })
    .await;
    // A few ticks' frames, each measured by the page itself.
    let durations: Vec<f64> = page
        .measures("frame-to-paint", 8)
        .await
        .into_iter()
        .map(|(_, duration)| duration)
        .collect();
    let (median, max) = median_and_max(&durations);
    // A figure for the notes, not a pass mark (targets live in benches).
    println!(
        "10,000 tables: frame to paint, first (full) frame {:.1} ms; later frames median \
         {median:.1} ms, max {max:.1} ms",
        durations[0],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_a_thousand_migrations_paints_every_row_worst_first() {
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    use pgmigrator_metrics::{Phase, Severity, Snapshot, write_state_file};
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("fleet");
    let count = pgmigrator_metrics::fleet::MAX_MIGRATIONS;
    let now = time::OffsetDateTime::now_utc();
    for n in 0..count {
        let folder = watched.join(format!("m{n:04}"));
        std::fs::create_dir_all(&folder).unwrap();
        let mut snapshot = Snapshot {
            phase: Phase::Streaming,
            timestamp: now,
            tables: crate::three_tables(),
            ..Snapshot::default()
        };
        if n == 777 {
            snapshot.alerts = vec![crate::firing_lag(Severity::Critical, now)];
        }
        write_state_file(&folder.join("state.json"), &snapshot).unwrap();
    }
    let (_serve, _browser, mut page) = serve_dir_in_browser(dir.path(), &watched).await;
    let view = page
        .wait_until("every row", |v| {
            v["fleetRows"]
                .as_array()
                .is_some_and(|rows| rows.len() == count)
        })
        .await;
    assert_eq!(view["fleetRows"][0], "m0777", "the one in trouble first");
    // The first paint, and a few refreshes (every 2 s), each measured by
    // the page itself.
    let measures = page.measures("fleet-to-paint", 4).await;
    let (start, first) = measures[0];
    let durations: Vec<f64> = measures.iter().map(|(_, duration)| *duration).collect();
    let (median, max) = median_and_max(&durations);
    // A figure for the notes, not a pass mark (targets live in benches).
    println!(
        "{count} migrations: first paint of every row {:.0} ms after the page started \
         loading (list to paint {first:.1} ms); refreshes list to paint median {median:.1} ms, \
         max {max:.1} ms",
        start + first
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_migrations_behind_a_token_open_on_a_fleet_view_worst_first_and_a_click_opens_one()
{
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    use pgmigrator_metrics::{
        AlertState, AlertStatus, Phase, Severity, SlotHealth, Snapshot, WalStatus, write_state_file,
    };
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let state = |phase, lag_bytes, alerts, slot| Snapshot {
        phase,
        timestamp: now,
        lag_bytes,
        alerts,
        slot,
        tables_total: 4,
        tables_copied: 2,
        ..Snapshot::default()
    };
    let firing = vec![AlertStatus {
        name: "lag".into(),
        state: AlertState::Firing,
        severity: Severity::Critical,
        since: now,
        value: "5m".into(),
        summary: "replication is 5m behind".into(),
    }];
    let lost = Some(SlotHealth {
        name: "crm_sub".into(),
        wal_status: WalStatus::Lost,
        ..SlotHealth::default()
    });
    let files = [
        ("shop.json", state(Phase::Copy, 4096, vec![], None)),
        ("billing.json", state(Phase::Streaming, 0, firing, None)),
        ("crm.json", state(Phase::Streaming, 0, vec![], lost)),
    ];
    // crm's file is an hour old: its badge reads "streaming (stale)", the
    // longest a phase column shows.
    let mut files = files;
    files[2].1.timestamp = now - std::time::Duration::from_secs(3600);
    // shop's forecast waits for progress: its ETA cell says so.
    files[0].1.eta = Some(pgmigrator_metrics::Eta::bare(
        pgmigrator_metrics::EtaState::Stalled,
    ));
    files[0].1.slot = Some(SlotHealth {
        name: "shop_sub".into(),
        wal_status: WalStatus::Reserved,
        exhausted_in_sec: Some(2730),
        ..SlotHealth::default()
    });
    // Behind a token, as every server off loopback is: the page takes it
    // from its address, and each migration's WebSocket from the query.
    let token = "a-fleet-token-0123456789";
    let mut args: Vec<std::ffi::OsString> = vec!["serve".into(), "--token".into(), token.into()];
    for (name, snapshot) in &files {
        let path = dir.path().join(name);
        write_state_file(&path, snapshot).unwrap();
        args.extend(["--state-file".into(), path.into_os_string()]);
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (_serve, url) = start_pgmigrator(&args);
    let url = url.replace("?token=…", &format!("?token={token}"));
    let profile = dir.path().join("profile");
    std::fs::create_dir(&profile).unwrap();
    let (_browser, mut page) = Page::open(&profile, &url, &[]).await;

    let fleet = page
        .wait_until("the fleet view", |v| {
            v["fleetRows"].as_array().is_some_and(|r| r.len() == 3)
        })
        .await;
    assert_eq!(fleet["fleet"], true, "{fleet}");
    assert_eq!(
        fleet["fleetRows"],
        serde_json::json!(["billing", "crm", "shop"])
    );
    assert_eq!(
        fleet["title"],
        "3 migrations · 1 need attention · pgmigrator"
    );
    let text = fleet["fleetText"].as_str().unwrap();
    assert!(text.contains("1 firing (critical)"), "{text}");
    assert!(text.contains("lost"), "{text}");
    assert!(text.contains("4.00 KiB"), "{text}");
    assert!(text.contains("stalled"), "{text}");
    assert!(text.contains("reserved · lost in 45m 30s"), "{text}");

    // Every badge's text fits inside its column, however wide the view.
    let spills = page
        .eval(
            "(() => { const spills = []; \
               for (const width of [720, 1000, 1400, 1920]) { \
                 document.getElementById('fleet').style.width = width + 'px'; \
                 for (const badge of document.querySelectorAll('.fleet-row .badge')) { \
                   const next = badge.nextElementSibling.getBoundingClientRect(); \
                   if (badge.scrollWidth > badge.clientWidth \
                       || badge.getBoundingClientRect().right > next.left) \
                     spills.push(width + ': ' + badge.textContent); \
                 } \
               } \
               document.getElementById('fleet').style.width = ''; \
               return spills; })()",
        )
        .await;
    assert_eq!(spills, serde_json::json!([]), "badges spill over");
    assert!(
        fleet["fleetText"]
            .as_str()
            .unwrap()
            .contains("streaming (stale)"),
        "{fleet}"
    );

    page.eval("document.querySelector('.fleet-row[data-id=crm]').click()")
        .await;
    let detail = page
        .wait_until("crm's detail view", |v| {
            v["fleet"] == false && v["name"] == "crm" && v["phase"] == "streaming"
        })
        .await;
    assert!(
        detail["slotBanner"].as_str().unwrap().contains("slot lost"),
        "crm's own snapshot: {detail}"
    );
    assert_eq!(detail["alertBanner"], "", "not billing's alert: {detail}");

    page.eval("document.getElementById('fleet-link').click()")
        .await;
    page.wait_until("the fleet view again", |v| v["fleet"] == true)
        .await;
    // An address that names no migration, or is not even an id, is the fleet.
    for hash in ["#crm", "#%E0%A4%A", "#crm", "#nope"] {
        page.eval(&format!("location.hash = '{hash}'")).await;
        let want_fleet = hash != "#crm";
        page.wait_until(hash, |v| v["fleet"] == want_fleet).await;
    }
    page.eval("document.querySelector('.fleet-row[data-id=shop]').click()")
        .await;
    page.wait_until("shop's detail view", |v| {
        v["name"] == "shop" && v["phase"] == "copy" && v["slotBanner"] == ""
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_directory_starts_as_an_empty_fleet_and_rows_appear() {
    if !crate::tools::available(CHROMIUM) {
        return;
    }
    use pgmigrator_metrics::{Phase, Snapshot, write_state_file};
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("migrations");
    std::fs::create_dir(&watched).unwrap();
    let (_serve, _browser, mut page) = serve_dir_in_browser(dir.path(), &watched).await;
    let empty = page
        .wait_until("an empty fleet", |v| v["fleet"] == true)
        .await;
    assert_eq!(empty["title"], "no migration yet · pgmigrator", "{empty}");
    assert!(
        empty["fleetText"]
            .as_str()
            .unwrap()
            .contains("No migration yet"),
        "{empty}"
    );
    for name in ["shop", "billing"] {
        let folder = watched.join(name);
        std::fs::create_dir(&folder).unwrap();
        let snapshot = Snapshot {
            phase: Phase::Copy,
            timestamp: time::OffsetDateTime::now_utc(),
            ..Snapshot::default()
        };
        write_state_file(&folder.join("state.json"), &snapshot).unwrap();
    }
    page.wait_until("both rows", |v| {
        v["fleetRows"]
            .as_array()
            .is_some_and(|rows| rows.len() == 2)
    })
    .await;
}
