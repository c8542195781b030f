//! `GET /metrics`: the Prometheus exposition of a snapshot, computed at
//! scrape time with `prometheus-client`.

use std::sync::Arc;

use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::model::{
    AlertState, Cutover, CutoverKind, Phase, Severity, SlotHealth, Snapshot, TableProgress,
    TableStatus, WalStatus,
};

/// The `Content-Type` of [`render_openmetrics`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of [`render_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The OpenMetrics exposition of `snapshot` (what Prometheus asks for),
/// every name prefixed `pgmigrator_`.
pub fn render_openmetrics(snapshot: Arc<Snapshot>) -> String {
    let mut registry = Registry::with_prefix("pgmigrator");
    registry.register_collector(Box::new(SnapshotMetrics(snapshot)));
    let mut out = String::new();
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The same exposition in the classic Prometheus text format (0.0.4), for
/// scrapers and tools that do not ask for OpenMetrics (`curl`, `promtool`):
/// a counter's `HELP` and `TYPE` name its `_total` series, and there is no
/// `# EOF`.
pub fn render_text(snapshot: Arc<Snapshot>) -> String {
    let openmetrics = render_openmetrics(snapshot);
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let name = counters.iter().find(|name| {
                rest.strip_prefix(**name)
                    .is_some_and(|after| after.starts_with(' '))
            })?;
            Some(format!("{prefix}{name}_total{}", &rest[name.len()..]))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[derive(Debug)]
struct SnapshotMetrics(Arc<Snapshot>);

/// A gauge or counter with no labels.
fn single(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> std::fmt::Result {
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}

/// One gauge per label set.
fn gauges<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, f64)>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One counter per label set.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The slot's metrics, when a slot was reported.
fn slot_metrics(e: &mut DescriptorEncoder<'_>, slot: &SlotHealth) -> std::fmt::Result {
    single(
        e,
        "slot_retained_wal_bytes",
        "WAL the replication slot holds on the source",
        &ConstGauge::new(slot.retained_bytes as f64),
    )?;
    if let Some(safe) = slot.safe_wal_size {
        single(
            e,
            "slot_safe_wal_size_bytes",
            "WAL that can still be written before the slot is in danger of being lost \
             (absent when max_slot_wal_keep_size is unlimited)",
            &ConstGauge::new(safe as f64),
        )?;
    }
    if let Some(limit) = slot.max_slot_wal_keep_size {
        single(
            e,
            "slot_max_wal_keep_size_bytes",
            "The source's max_slot_wal_keep_size (absent when unlimited)",
            &ConstGauge::new(limit as f64),
        )?;
    }
    single(
        e,
        "slot_active",
        "1 while a walsender streams from the slot",
        &ConstGauge::new(f64::from(u8::from(slot.active))),
    )?;
    let mut statuses: Vec<(String, f64)> = WalStatus::KNOWN
        .iter()
        .map(|status| {
            let current = *status == slot.wal_status;
            (status.as_str().to_owned(), f64::from(u8::from(current)))
        })
        .collect();
    if let WalStatus::Other(name) = &slot.wal_status {
        statuses.push((name.clone(), 1.0));
    }
    gauges(
        e,
        "slot_wal_status",
        "1 for the slot's current wal_status (reserved, extended, unreserved, lost)",
        statuses
            .into_iter()
            .map(|(status, value)| ([("status", status)], value)),
    )?;
    single(
        e,
        "slot_spill_bytes",
        "Decoded changes spilled to disk by the slot's walsender",
        &ConstCounter::new(slot.spill_bytes),
    )
}

/// The cutover verdict: ready or not, and blockers by kind (every known
/// kind, 0 when absent, and any other kind that occurs).
fn cutover_metrics(e: &mut DescriptorEncoder<'_>, cutover: &Cutover) -> std::fmt::Result {
    single(
        e,
        "cutover_ready",
        "1 when the last check found nothing blocking the switch to the destination",
        &ConstGauge::new(f64::from(u8::from(cutover.ready))),
    )?;
    let mut kinds: Vec<CutoverKind> = CutoverKind::KNOWN.to_vec();
    for blocker in &cutover.blockers {
        if !kinds.contains(&blocker.kind) {
            kinds.push(blocker.kind.clone());
        }
    }
    gauges(
        e,
        "cutover_blockers",
        "Blockers of the switch to the destination, by kind",
        kinds.into_iter().map(|kind| {
            let count = cutover.blockers.iter().filter(|b| b.kind == kind).count();
            ([("kind", kind.as_str().to_owned())], count as f64)
        }),
    )
}

/// One gauge per table (labels `schema` and `table`); tables for which
/// `value` is `None` have no series.
fn per_table(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    tables: &[TableProgress],
    value: impl Fn(&TableProgress) -> Option<f64>,
) -> std::fmt::Result {
    gauges(
        encoder,
        name,
        help,
        tables.iter().filter_map(|t| {
            let labels = [("schema", t.schema.as_str()), ("table", t.name.as_str())];
            Some((labels, value(t)?))
        }),
    )
}

impl PromCollector for SnapshotMetrics {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = &*self.0;
        let gauge = |v: f64| ConstGauge::new(v);
        let counter = |v: u64| ConstCounter::new(v);

        gauges(
            &mut e,
            "phase",
            "1 for the pipeline's current phase, 0 for the others",
            phase_series(&s.phase),
        )?;
        single(
            &mut e,
            "elapsed_seconds",
            "Seconds since the migration started",
            &gauge(s.elapsed_sec),
        )?;
        single(
            &mut e,
            "applied_lsn_bytes",
            "Last WAL position applied to the destination",
            &gauge(s.applied_lsn.0 as f64),
        )?;
        single(
            &mut e,
            "confirmed_lsn_bytes",
            "Last WAL position confirmed to the source",
            &gauge(s.confirmed_lsn.0 as f64),
        )?;
        single(
            &mut e,
            "latest_lsn_bytes",
            "Newest WAL position reported by the source",
            &gauge(s.latest_lsn.0 as f64),
        )?;
        single(
            &mut e,
            "replication_lag_bytes",
            "WAL bytes not yet applied",
            &gauge(s.lag_bytes as f64),
        )?;
        single(
            &mut e,
            "replication_lag_seconds",
            "How long the oldest unapplied WAL has waited",
            &gauge(s.lag_seconds),
        )?;
        single(
            &mut e,
            "caught_up",
            "1 when everything the source reported is applied",
            &gauge(f64::from(u8::from(s.caught_up))),
        )?;
        single(
            &mut e,
            "stalled_seconds",
            "The longest silence: a copying table without progress, or the apply worker \
             without a message from the source",
            &gauge(s.stalled_seconds()),
        )?;
        single(
            &mut e,
            "stale",
            "1 when the data comes from a state file that stopped changing",
            &gauge(f64::from(u8::from(s.stale))),
        )?;

        // A status this version does not know counts in `tables_total`
        // only: its name comes from a file, not from a bounded set.
        let statuses = TableStatus::KNOWN;
        gauges(
            &mut e,
            "tables",
            "Tables by status",
            statuses.iter().map(|status| {
                let count = s.tables.iter().filter(|t| t.status == *status).count();
                ([("status", status.as_str())], count as f64)
            }),
        )?;
        let known = |value: i64| (value > 0).then_some(value as f64);
        per_table(
            &mut e,
            "table_rows_copied",
            "Rows copied per table",
            &s.tables,
            |t| Some(t.rows_copied as f64),
        )?;
        per_table(
            &mut e,
            "table_rows_estimated",
            "Estimated rows per table (absent while unknown)",
            &s.tables,
            |t| known(t.rows_total),
        )?;
        per_table(
            &mut e,
            "table_bytes_copied",
            "Bytes copied per table",
            &s.tables,
            |t| Some(t.bytes_copied as f64),
        )?;
        per_table(
            &mut e,
            "table_size_bytes",
            "Table size per table (absent while unknown)",
            &s.tables,
            |t| known(t.size_bytes),
        )?;
        counters(
            &mut e,
            "table_changes_applied",
            "Inserts, updates and deletes applied per table since it reached streaming",
            s.tables.iter().map(|t| {
                let labels = [("schema", t.schema.as_str()), ("table", t.name.as_str())];
                (labels, t.changes_applied)
            }),
        )?;
        if let Some(slot) = &s.slot {
            slot_metrics(&mut e, slot)?;
        }
        if let Some(cutover) = &s.cutover {
            cutover_metrics(&mut e, cutover)?;
        }
        gauges(
            &mut e,
            "alerts_firing",
            "Alerts firing, by severity",
            Severity::ALL.into_iter().map(|severity| {
                let firing = s
                    .alerts
                    .iter()
                    .filter(|a| a.severity == severity && a.state == AlertState::Firing)
                    .count();
                ([("severity", severity.as_str())], firing as f64)
            }),
        )?;
        single(
            &mut e,
            "notifications_failed",
            "Alert notifications given up on after their retries, or dropped from a full queue",
            &ConstCounter::new(s.notifications_failed),
        )?;
        if let Some(eta) = s.eta_sec {
            single(
                &mut e,
                "copy_eta_seconds",
                "Seconds until every table is copied, at the recent rate",
                &gauge(eta),
            )?;
        }
        single(
            &mut e,
            "rows_per_second",
            "Rows applied per second over the rate window",
            &gauge(s.rows_per_sec),
        )?;
        single(
            &mut e,
            "bytes_per_second",
            "Bytes applied per second over the rate window",
            &gauge(s.bytes_per_sec),
        )?;
        single(
            &mut e,
            "rows_applied",
            "Rows applied since the migration started",
            &counter(s.total_rows.max(0) as u64),
        )?;
        single(
            &mut e,
            "bytes_applied",
            "Bytes applied since the migration started",
            &counter(s.total_bytes.max(0) as u64),
        )?;
        single(
            &mut e,
            "errors",
            "Errors recorded since the migration started",
            &counter(s.error_count),
        )?;
        single(
            &mut e,
            "logs_dropped",
            "Log events dropped because the collector was busy",
            &counter(s.logs_dropped),
        )?;

        let version = [("version", env!("CARGO_PKG_VERSION"))];
        let mut info = e.encode_descriptor(
            "build_info",
            "The pgmigrator build",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(info.encode_family(&version)?)?;
        Ok(())
    }
}

fn phase_series(current: &Phase) -> Vec<([(&'static str, String); 1], f64)> {
    let mut series: Vec<_> = Phase::KNOWN
        .iter()
        .map(|phase| {
            (
                [("phase", phase.as_str().to_owned())],
                f64::from(u8::from(phase == current)),
            )
        })
        .collect();
    if let Phase::Other(name) = current {
        series.push(([("phase", name.clone())], 1.0));
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlimited_slot_has_no_safe_wal_size_series_and_no_slot_no_slot_series() {
        let mut snapshot = Snapshot::default();
        assert!(!render_text(Arc::new(snapshot.clone())).contains("pgmigrator_slot_"));
        snapshot.slot = Some(SlotHealth {
            name: "sub".into(),
            active: true,
            wal_status: WalStatus::Other("frozen".into()),
            retained_bytes: 10,
            ..SlotHealth::default()
        });
        let text = render_text(Arc::new(snapshot));
        assert!(
            text.contains("pgmigrator_slot_retained_wal_bytes 10"),
            "{text}"
        );
        assert!(
            !text.contains("pgmigrator_slot_safe_wal_size_bytes"),
            "{text}"
        );
        // A status this version does not know is still a member of the set.
        assert!(
            text.contains("pgmigrator_slot_wal_status{status=\"frozen\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("pgmigrator_slot_wal_status{status=\"lost\"} 0"),
            "{text}"
        );
    }
}
