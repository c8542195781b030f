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
    encode(vec![Member {
        labels: Vec::new(),
        snapshot,
    }])
}

/// The OpenMetrics exposition of several migrations in one scrape: every
/// series of a migration carries its id as the `migration` label
/// (`build_info`, which is the process's, does not).
pub fn render_migrations_openmetrics(migrations: &[(&str, Arc<Snapshot>)]) -> String {
    encode(
        migrations
            .iter()
            .map(|(id, snapshot)| Member {
                labels: vec![("migration", (*id).to_owned())],
                snapshot: Arc::clone(snapshot),
            })
            .collect(),
    )
}

/// The same exposition in the classic Prometheus text format (0.0.4), for
/// scrapers and tools that do not ask for OpenMetrics (`curl`, `promtool`):
/// a counter's `HELP` and `TYPE` name its `_total` series, and there is no
/// `# EOF`.
pub fn render_text(snapshot: Arc<Snapshot>) -> String {
    to_text(&render_openmetrics(snapshot))
}

/// [`render_migrations_openmetrics`] in the classic text format.
pub fn render_migrations_text(migrations: &[(&str, Arc<Snapshot>)]) -> String {
    to_text(&render_migrations_openmetrics(migrations))
}

fn encode(members: Vec<Member>) -> String {
    let mut registry = Registry::with_prefix("pgmigrator");
    registry.register_collector(Box::new(FleetMetrics(members)));
    let mut out = String::new();
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

fn to_text(openmetrics: &str) -> String {
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

/// One migration of a scrape: its snapshot and the labels every one of
/// its series carries (none when it is the only one).
#[derive(Debug)]
struct Member {
    labels: Vec<(&'static str, String)>,
    snapshot: Arc<Snapshot>,
}

/// Every migration of a scrape. Each metric is one family holding every
/// migration's series, as the exposition format requires.
#[derive(Debug)]
struct FleetMetrics(Vec<Member>);

/// The label set of a series with no labels of its own.
const NO_LABELS: [(&str, &str); 0] = [];

/// One family: for every migration, the series `series` gives for its
/// snapshot, each value encoded by `value`.
fn family<'m, L, V, I, M>(
    encoder: &mut DescriptorEncoder<'_>,
    (name, help, kind): (&str, &str, MetricType),
    members: &'m [Member],
    series: impl Fn(&'m Snapshot) -> I,
    value: impl Fn(V) -> M,
) -> std::fmt::Result
where
    L: EncodeLabelSet,
    I: IntoIterator<Item = (L, V)>,
    M: EncodeMetric,
{
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for member in members {
        for (labels, v) in series(&member.snapshot) {
            let labels = (member.labels.as_slice(), labels);
            value(v).encode(metric.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// Gauges: any number of series per migration.
fn gauges<'m, L: EncodeLabelSet, I: IntoIterator<Item = (L, f64)>>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    members: &'m [Member],
    series: impl Fn(&'m Snapshot) -> I,
) -> std::fmt::Result {
    family(
        encoder,
        (name, help, MetricType::Gauge),
        members,
        series,
        ConstGauge::new,
    )
}

/// Counters: any number of series per migration.
fn counters<'m, L: EncodeLabelSet, I: IntoIterator<Item = (L, u64)>>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    members: &'m [Member],
    series: impl Fn(&'m Snapshot) -> I,
) -> std::fmt::Result {
    family(
        encoder,
        (name, help, MetricType::Counter),
        members,
        series,
        ConstCounter::new,
    )
}

/// A gauge with no labels of its own, one series per migration; a
/// migration for which `value` is `None` has none.
fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    members: &[Member],
    value: impl Fn(&Snapshot) -> Option<f64>,
) -> std::fmt::Result {
    gauges(encoder, name, help, members, |s| {
        value(s).map(|v| (NO_LABELS, v))
    })
}

/// A counter with no labels of its own, one series per migration.
fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    members: &[Member],
    value: impl Fn(&Snapshot) -> u64,
) -> std::fmt::Result {
    counters(encoder, name, help, members, |s| {
        Some((NO_LABELS, value(s)))
    })
}

fn flag(on: bool) -> f64 {
    f64::from(u8::from(on))
}

/// The slot's metrics, for the migrations that reported a slot; none at
/// all when none did.
fn slot_metrics(e: &mut DescriptorEncoder<'_>, m: &[Member]) -> std::fmt::Result {
    if m.iter().all(|member| member.snapshot.slot.is_none()) {
        return Ok(());
    }
    gauge(
        e,
        "slot_retained_wal_bytes",
        "WAL the replication slot holds on the source",
        m,
        |s| Some(s.slot.as_ref()?.retained_bytes as f64),
    )?;
    if m.iter().any(|member| {
        member
            .snapshot
            .slot
            .as_ref()
            .is_some_and(|slot| slot.safe_wal_size.is_some())
    }) {
        gauge(
            e,
            "slot_safe_wal_size_bytes",
            "WAL that can still be written before the slot is in danger of being lost \
             (absent when max_slot_wal_keep_size is unlimited)",
            m,
            |s| Some(s.slot.as_ref()?.safe_wal_size? as f64),
        )?;
    }
    if m.iter().any(|member| {
        member
            .snapshot
            .slot
            .as_ref()
            .is_some_and(|slot| slot.max_slot_wal_keep_size.is_some())
    }) {
        gauge(
            e,
            "slot_max_wal_keep_size_bytes",
            "The source's max_slot_wal_keep_size (absent when unlimited)",
            m,
            |s| Some(s.slot.as_ref()?.max_slot_wal_keep_size? as f64),
        )?;
    }
    gauge(
        e,
        "slot_active",
        "1 while a walsender streams from the slot",
        m,
        |s| Some(flag(s.slot.as_ref()?.active)),
    )?;
    gauges(
        e,
        "slot_wal_status",
        "1 for the slot's current wal_status (reserved, extended, unreserved, lost)",
        m,
        |s| s.slot.as_ref().map(wal_status_series).into_iter().flatten(),
    )?;
    counters(
        e,
        "slot_spill_bytes",
        "Decoded changes spilled to disk by the slot's walsender",
        m,
        |s| s.slot.as_ref().map(|slot| (NO_LABELS, slot.spill_bytes)),
    )
}

/// Every known wal_status, 1 for the slot's, and the slot's own when this
/// version does not know it.
fn wal_status_series(slot: &SlotHealth) -> Vec<([(&'static str, String); 1], f64)> {
    let mut series: Vec<_> = WalStatus::KNOWN
        .iter()
        .map(|status| {
            let current = *status == slot.wal_status;
            ([("status", status.as_str().to_owned())], flag(current))
        })
        .collect();
    if let WalStatus::Other(name) = &slot.wal_status {
        series.push(([("status", name.clone())], 1.0));
    }
    series
}

/// The cutover verdict, for the migrations that computed one: ready or
/// not, and blockers by kind (every known kind, 0 when absent, and any
/// other kind that occurs).
fn cutover_metrics(e: &mut DescriptorEncoder<'_>, m: &[Member]) -> std::fmt::Result {
    if m.iter().all(|member| member.snapshot.cutover.is_none()) {
        return Ok(());
    }
    gauge(
        e,
        "cutover_ready",
        "1 when the last check found nothing blocking the switch to the destination",
        m,
        |s| Some(flag(s.cutover.as_ref()?.ready)),
    )?;
    gauges(
        e,
        "cutover_blockers",
        "Blockers of the switch to the destination, by kind",
        m,
        |s| s.cutover.as_ref().map(blocker_series).into_iter().flatten(),
    )
}

fn blocker_series(cutover: &Cutover) -> Vec<([(&'static str, String); 1], f64)> {
    let mut kinds: Vec<CutoverKind> = CutoverKind::KNOWN.to_vec();
    for blocker in &cutover.blockers {
        if !kinds.contains(&blocker.kind) {
            kinds.push(blocker.kind.clone());
        }
    }
    kinds
        .into_iter()
        .map(|kind| {
            let count = cutover.blockers.iter().filter(|b| b.kind == kind).count();
            ([("kind", kind.as_str().to_owned())], count as f64)
        })
        .collect()
}

/// One gauge per table (labels `schema` and `table`); tables for which
/// `value` is `None` have no series.
fn per_table(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    members: &[Member],
    value: impl Fn(&TableProgress) -> Option<f64>,
) -> std::fmt::Result {
    gauges(encoder, name, help, members, |s| {
        s.tables
            .iter()
            .filter_map(|t| Some((table_labels(t), value(t)?)))
    })
}

fn table_labels(t: &TableProgress) -> [(&'static str, &str); 2] {
    [("schema", t.schema.as_str()), ("table", t.name.as_str())]
}

impl PromCollector for FleetMetrics {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let m = self.0.as_slice();
        let e = &mut e;

        gauges(
            e,
            "phase",
            "1 for the pipeline's current phase, 0 for the others",
            m,
            |s| phase_series(&s.phase),
        )?;
        gauge(
            e,
            "elapsed_seconds",
            "Seconds since the migration started",
            m,
            |s| Some(s.elapsed_sec),
        )?;
        gauge(
            e,
            "applied_lsn_bytes",
            "Last WAL position applied to the destination",
            m,
            |s| Some(s.applied_lsn.0 as f64),
        )?;
        gauge(
            e,
            "confirmed_lsn_bytes",
            "Last WAL position confirmed to the source",
            m,
            |s| Some(s.confirmed_lsn.0 as f64),
        )?;
        gauge(
            e,
            "latest_lsn_bytes",
            "Newest WAL position reported by the source",
            m,
            |s| Some(s.latest_lsn.0 as f64),
        )?;
        gauge(
            e,
            "replication_lag_bytes",
            "WAL bytes not yet applied",
            m,
            |s| Some(s.lag_bytes as f64),
        )?;
        gauge(
            e,
            "replication_lag_seconds",
            "How long the oldest unapplied WAL has waited",
            m,
            |s| Some(s.lag_seconds),
        )?;
        gauge(
            e,
            "caught_up",
            "1 when everything the source reported is applied",
            m,
            |s| Some(flag(s.caught_up)),
        )?;
        gauge(
            e,
            "stalled_seconds",
            "The longest silence: a copying table without progress, or the apply worker \
             without a message from the source",
            m,
            |s| Some(s.stalled_seconds()),
        )?;
        gauge(
            e,
            "stale",
            "1 when the data comes from a state file that stopped changing",
            m,
            |s| Some(flag(s.stale)),
        )?;

        // A status this version does not know counts in `tables_total`
        // only: its name comes from a file, not from a bounded set.
        gauges(e, "tables", "Tables by status", m, |s| {
            TableStatus::KNOWN.map(|status| {
                let count = s.tables.iter().filter(|t| t.status == status).count();
                ([("status", status.as_str())], count as f64)
            })
        })?;
        let known = |value: i64| (value > 0).then_some(value as f64);
        per_table(e, "table_rows_copied", "Rows copied per table", m, |t| {
            Some(t.rows_copied as f64)
        })?;
        per_table(
            e,
            "table_rows_estimated",
            "Estimated rows per table (absent while unknown)",
            m,
            |t| known(t.rows_total),
        )?;
        per_table(e, "table_bytes_copied", "Bytes copied per table", m, |t| {
            Some(t.bytes_copied as f64)
        })?;
        per_table(
            e,
            "table_size_bytes",
            "Table size per table (absent while unknown)",
            m,
            |t| known(t.size_bytes),
        )?;
        counters(
            e,
            "table_changes_applied",
            "Inserts, updates and deletes applied per table since it reached streaming",
            m,
            |s| {
                s.tables
                    .iter()
                    .map(|t| (table_labels(t), t.changes_applied))
            },
        )?;
        slot_metrics(e, m)?;
        cutover_metrics(e, m)?;
        gauges(e, "alerts_firing", "Alerts firing, by severity", m, |s| {
            Severity::ALL.map(|severity| {
                let firing = s
                    .alerts
                    .iter()
                    .filter(|a| a.severity == severity && a.state == AlertState::Firing)
                    .count();
                ([("severity", severity.as_str())], firing as f64)
            })
        })?;
        counter(
            e,
            "notifications_failed",
            "Alert notifications given up on after their retries, or dropped from a full queue",
            m,
            |s| s.notifications_failed,
        )?;
        if m.iter().any(|member| member.snapshot.eta_sec.is_some()) {
            gauge(
                e,
                "copy_eta_seconds",
                "Seconds until every table is copied, at the recent rate",
                m,
                |s| s.eta_sec,
            )?;
        }
        gauge(
            e,
            "rows_per_second",
            "Rows applied per second over the rate window",
            m,
            |s| Some(s.rows_per_sec),
        )?;
        gauge(
            e,
            "bytes_per_second",
            "Bytes applied per second over the rate window",
            m,
            |s| Some(s.bytes_per_sec),
        )?;
        counter(
            e,
            "rows_applied",
            "Rows applied since the migration started",
            m,
            |s| s.total_rows.max(0) as u64,
        )?;
        counter(
            e,
            "bytes_applied",
            "Bytes applied since the migration started",
            m,
            |s| s.total_bytes.max(0) as u64,
        )?;
        counter(
            e,
            "errors",
            "Errors recorded since the migration started",
            m,
            |s| s.error_count,
        )?;
        counter(
            e,
            "logs_dropped",
            "Log events dropped because the collector was busy",
            m,
            |s| s.logs_dropped,
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
    fn several_migrations_share_each_family_and_label_every_series_but_build_info() {
        let slot = SlotHealth {
            name: "sub".into(),
            retained_bytes: 7,
            ..SlotHealth::default()
        };
        let shop = Arc::new(Snapshot {
            lag_bytes: 10,
            slot: Some(slot),
            tables: vec![TableProgress::new("public", "users", 1, 1)],
            ..Snapshot::default()
        });
        let billing = Arc::new(Snapshot {
            lag_bytes: 20,
            ..Snapshot::default()
        });
        let text = render_migrations_text(&[("shop", shop), ("billing", billing)]);
        let families = text.lines().filter(|l| l.starts_with("# TYPE "));
        let mut names: Vec<&str> = families.map(|l| l.split(' ').nth(2).unwrap()).collect();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "each family once: {text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if line.starts_with("pgmigrator_build_info") {
                assert!(!line.contains("migration="), "{line}");
            } else {
                assert!(line.contains("{migration=\""), "{line}");
            }
        }
        assert!(text.contains("pgmigrator_replication_lag_bytes{migration=\"shop\"} 10"));
        assert!(text.contains("pgmigrator_replication_lag_bytes{migration=\"billing\"} 20"));
        assert!(text.contains(
            "pgmigrator_table_rows_copied{migration=\"shop\",schema=\"public\",table=\"users\"} 0"
        ));
        // Only the migration with a slot has slot series.
        assert!(text.contains("pgmigrator_slot_retained_wal_bytes{migration=\"shop\"} 7"));
        assert!(!text.contains("pgmigrator_slot_retained_wal_bytes{migration=\"billing\"}"));
    }

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
