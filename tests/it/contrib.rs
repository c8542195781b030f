//! The Prometheus and Grafana kit in `contrib/` against the exporter: every
//! metric its rules and panels name is one `/metrics` serves, and the rules
//! pass `promtool`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pgmigrator_metrics::http::metrics::render_text;
use pgmigrator_metrics::{
    ApplyHealth, CatchUp, CatchUpState, Cutover, CutoverItem, CutoverKind, Eta, EtaState, Phase,
    Severity, SlotHealth, Snapshot, TableProgress, WalStatus,
};

/// A snapshot with every optional part, so every metric is served.
fn everything() -> Snapshot {
    let now = time::OffsetDateTime::now_utc();
    Snapshot {
        phase: Phase::Streaming,
        timestamp: now,
        tables: vec![TableProgress::new("public", "orders", 10, 8192)],
        eta_sec: Some(12.0),
        eta: Some(Eta {
            state: EtaState::Estimating,
            seconds: Some(12.0),
            low: Some(10.0),
            high: Some(15.0),
            drift_sec: Some(3.0),
        }),
        catch_up: Some(CatchUp {
            state: CatchUpState::CatchingUp,
            seconds: Some(30.0),
            growing_bytes_per_sec: None,
        }),
        slot: Some(SlotHealth {
            name: "sub".into(),
            wal_status: WalStatus::Reserved,
            safe_wal_size: Some(1 << 20),
            max_slot_wal_keep_size: Some(1 << 30),
            exhausted_in_sec: Some(600),
            ..SlotHealth::default()
        }),
        apply: Some(ApplyHealth {
            last_msg_receipt: Some(now - Duration::from_secs(3)),
            latest_end_time: None,
        }),
        cutover: Some(Cutover::new(
            now,
            vec![CutoverItem {
                kind: CutoverKind::Lag,
                table: None,
                detail: String::new(),
            }],
            vec![],
        )),
        alerts: vec![crate::firing_lag(Severity::Warning, now)],
        ..Snapshot::default()
    }
}

/// The metric names `/metrics` serves (counters with `_total`).
fn served() -> BTreeSet<String> {
    render_text(Arc::new(everything()))
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The `pgmigrator_…` names in `text` that `/metrics` does not serve.
fn unknown_metrics(text: &str) -> Vec<String> {
    let served = served();
    let mut unknown = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("pgmigrator_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !served.contains(&name) && !unknown.contains(&name) {
            unknown.push(name.clone());
        }
        rest = &rest[at + name.len()..];
    }
    unknown
}

fn contrib(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib")
            .join(path),
    )
    .unwrap()
}

/// Every query of every panel of a dashboard.
fn queries(dashboard: &serde_json::Value) -> Vec<String> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    queries
}

/// The names `/metrics` serves besides a migration's: the process's own
/// counters (an OTLP export's failures).
fn process_counters() -> BTreeSet<String> {
    let counter = pgmigrator_metrics::http::metrics::ProcessCounter::new(
        "otlp_export_failures",
        "OTLP pushes given up",
        "{push}",
    );
    let scrape = pgmigrator_metrics::http::metrics::Scrape {
        counters: vec![counter],
        ..Default::default()
    };
    pgmigrator_metrics::http::metrics::render(vec![("a".into(), Arc::new(everything()))], &scrape)
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| !served().contains(*name))
        .map(str::to_owned)
        .collect()
}

/// Checks with `promtool` that every query parses as PromQL (the
/// dashboard's variables stand for every value), when it is installed.
fn assert_promql_parses(queries: &[String]) {
    if !crate::tools::available("/usr/bin/promtool") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, query) in queries.iter().enumerate() {
        let expr = query.replace("$instance", ".*").replace("$migration", ".*");
        let expr = serde_json::to_string(&expr).unwrap();
        rules.push_str(&format!(
            "      - record: query_{n}\n        expr: {expr}\n"
        ));
    }
    let path = dir.path().join("queries.yml");
    std::fs::write(&path, rules).unwrap();
    let output = Command::new("/usr/bin/promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_fleet_dashboard_ranks_every_migration_worst_first_and_links_to_each() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&contrib("grafana/pgmigrator-fleet.json")).unwrap();
    assert_promql_parses(&queries(&dashboard));
    let all = queries(&dashboard).join("\n");
    let counters = process_counters();
    assert_eq!(
        counters.iter().collect::<Vec<_>>(),
        ["pgmigrator_otlp_export_failures_total"]
    );
    let unknown: Vec<String> = unknown_metrics(&all)
        .into_iter()
        .filter(|name| !counters.contains(name))
        .collect();
    assert_eq!(unknown, Vec::<String>::new(), "in the fleet dashboard");
    for wanted in [
        "pgmigrator_alerts_firing",
        "pgmigrator_slot_wal_status",
        "pgmigrator_slot_exhaustion_seconds",
        "pgmigrator_replication_lag_bytes",
        "pgmigrator_eta_seconds",
        "pgmigrator_cutover_ready",
        "pgmigrator_otlp_export_failures_total",
    ] {
        assert!(
            all.contains(wanted),
            "the fleet dashboard shows no {wanted}"
        );
    }
    let table = &dashboard["panels"][0];
    assert_eq!(table["type"], "table");
    // One row per migration of any process, whether scraped or pushed
    // (Prometheus names a pushing process's series by its instance id).
    for target in table["targets"].as_array().unwrap() {
        let expr = target["expr"].as_str().unwrap();
        assert!(expr.contains("by (instance, migration"), "{expr}");
        assert_eq!(target["instant"], true, "{expr}");
    }
    let sort = table["transformations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "sortBy")
        .expect("sorted");
    assert_eq!(
        sort["options"]["sort"][0],
        serde_json::json!({"field": "worst", "desc": true})
    );
    // Each migration links to its own dashboard, with its instance and id.
    let one: serde_json::Value = serde_json::from_str(&contrib("grafana/pgmigrator.json")).unwrap();
    let link = table["fieldConfig"]["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["matcher"]["options"] == "migration")
        .expect("the migration column links")["properties"][0]["value"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        link.starts_with(&format!("/d/{}/", one["uid"].as_str().unwrap())),
        "{link}"
    );
    for variable in [
        "var-instance=${__data.fields.instance}",
        "var-migration=${__data.fields.migration}",
    ] {
        assert!(link.contains(variable), "{link}");
    }
}

#[test]
fn every_grafana_panel_queries_metrics_the_exporter_serves() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&contrib("grafana/pgmigrator.json")).unwrap();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 10, "{queries:?}");
    assert_promql_parses(&queries);
    let all = queries.join("\n");
    assert_eq!(
        unknown_metrics(&all),
        Vec::<String>::new(),
        "in the dashboard"
    );
    // The check itself catches a renamed metric.
    assert_eq!(
        unknown_metrics("rate(pgmigrator_lag_bytes[5m])"),
        ["pgmigrator_lag_bytes"]
    );
    for wanted in [
        "pgmigrator_replication_lag_bytes",
        "pgmigrator_replication_lag_seconds",
        "pgmigrator_eta_seconds",
        "pgmigrator_eta_drift_seconds",
        "pgmigrator_slot_exhaustion_seconds",
        "pgmigrator_catch_up_seconds",
        "pgmigrator_slot_safe_wal_size_bytes",
        "pgmigrator_table_changes_applied_total",
        "pgmigrator_alerts_firing",
        "pgmigrator_cutover_ready",
    ] {
        assert!(all.contains(wanted), "no panel shows {wanted}");
    }
}

#[test]
fn the_prometheus_rules_use_served_metrics_and_pass_promtool() {
    let rules = contrib("prometheus/alerts.yml");
    assert_eq!(
        unknown_metrics(&rules),
        Vec::<String>::new(),
        "in alerts.yml"
    );
    if !crate::tools::available("/usr/bin/promtool") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/prometheus");
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ] {
        let output = Command::new("/usr/bin/promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
