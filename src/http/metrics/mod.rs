//! `GET /metrics`: the Prometheus exposition of a snapshot, computed at
//! scrape time with `prometheus-client`.

use std::sync::Arc;

use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::metrics::{FAMILIES, Family, Member, PREFIX, Value, members};
pub use crate::metrics::{MAX_SCRAPED_TABLES, ProcessCounter};
use crate::model::Snapshot;

/// How many tables of each migration get per-table series by default in
/// `pgmigrator`'s `/metrics` and OTLP export (`--metrics-tables`): a
/// fleet of 1,000 migrations of 100 tables then scrapes in well under a
/// second (see the README's fleet figures).
pub const DEFAULT_METRICS_TABLES: usize = 20;

/// The `Content-Type` of [`render_openmetrics`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of [`render_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The OpenMetrics exposition of `snapshot` (what Prometheus asks for),
/// every name prefixed `pgmigrator_`.
pub fn render_openmetrics(snapshot: Arc<Snapshot>) -> String {
    encode(members(vec![(None, snapshot)], None), &[])
}

/// The OpenMetrics exposition of several migrations in one scrape: every
/// series of a migration carries its id as the `migration` label
/// (`build_info`, which is the process's, does not).
pub fn render_migrations_openmetrics(migrations: &[(&str, Arc<Snapshot>)]) -> String {
    let migrations = migrations
        .iter()
        .map(|(id, snapshot)| (Some((*id).to_owned()), Arc::clone(snapshot)))
        .collect();
    encode(members(migrations, None), &[])
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

/// How a scrape is made beyond its migrations: how many tables of each get
/// per-table series, the process's own counters, and the format.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Per-table series for at most this many tables of each migration,
    /// the most interesting ones; every table when `None` (up to
    /// [`MAX_SCRAPED_TABLES`] in all).
    pub tables: Option<usize>,
    /// Counters of the process, shown beside `build_info`.
    pub counters: Vec<ProcessCounter>,
    /// OpenMetrics rather than the classic text format.
    pub openmetrics: bool,
}

/// The exposition of `migrations` (by id; the only one is unlabelled, as a
/// single migration's server shows it) as `scrape` says.
pub fn render(migrations: Vec<(String, Arc<Snapshot>)>, scrape: &Scrape) -> String {
    let several = migrations.len() > 1;
    let labelled = migrations
        .into_iter()
        .map(|(id, snapshot)| (several.then_some(id), snapshot))
        .collect();
    let exposition = encode(members(labelled, scrape.tables), &scrape.counters);
    match scrape.openmetrics {
        true => exposition,
        false => to_text(&exposition),
    }
}

fn encode(members: Vec<Member>, counters: &[ProcessCounter]) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(FleetMetrics(members, counters.to_vec())));
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

/// Every migration of a scrape. Each metric is one family holding every
/// migration's series, as the exposition format requires.
#[derive(Debug)]
struct FleetMetrics(Vec<Member>, Vec<ProcessCounter>);

/// The label set of a series with no labels of its own.
const NO_LABELS: [(&str, &str); 0] = [];

/// Writes `family`'s series of every member.
fn encode_family(
    family: &Family,
    encoder: &mut DescriptorEncoder<'_>,
    members: &[Member],
) -> std::fmt::Result {
    let kind = match family.is_counter() {
        true => MetricType::Counter,
        false => MetricType::Gauge,
    };
    let mut metric = encoder.encode_descriptor(family.name, family.help, None, kind)?;
    let mut written = Ok(());
    for member in members {
        let own = member.labels.as_slice();
        family.each(member, |labels, value| {
            if written.is_err() {
                return;
            }
            written = metric
                .encode_family(&(own, labels))
                .and_then(|series| match value {
                    Value::Gauge(v) => ConstGauge::new(v).encode(series),
                    Value::Counter(v) => ConstCounter::new(v).encode(series),
                });
        });
    }
    written
}

impl PromCollector for FleetMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let members = self.0.as_slice();
        for family in FAMILIES.iter().filter(|f| f.is_present(members)) {
            encode_family(family, &mut encoder, members)?;
        }
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        let mut info = encoder.encode_descriptor(
            "build_info",
            "The pgmigrator build",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(info.encode_family(&version)?)?;
        for counter in &self.1 {
            let mut family = encoder.encode_descriptor(
                counter.name(),
                counter.help(),
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(counter.get()).encode(family.encode_family(&NO_LABELS)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SlotHealth, TableProgress, WalStatus};

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
    fn every_series_scraped_is_named_as_its_family_says() {
        // What OTLP's names are checked against (`Family::scraped_name`)
        // is what a scrape really holds.
        let mut table = TableProgress::new("public", "users", 1, 1);
        table.changes_applied = 3;
        let snapshot = Arc::new(Snapshot {
            tables: vec![table],
            ..Snapshot::default()
        });
        let text = render_openmetrics(snapshot);
        let mut checked = 0;
        for family in FAMILIES {
            let prefix = format!("{}{{", family.scraped_name());
            let prefix_bare = format!("{} ", family.scraped_name());
            let series = text
                .lines()
                .filter(|l| l.starts_with(&format!("{PREFIX}_{}", family.name)))
                .filter(|l| !l.starts_with('#'));
            for line in series {
                assert!(
                    line.starts_with(&prefix) || line.starts_with(&prefix_bare),
                    "{line}"
                );
                checked += 1;
            }
        }
        assert!(checked > 20, "{text}");
        assert!(
            text.contains("pgmigrator_table_changes_applied_total{"),
            "{text}"
        );
    }

    #[test]
    fn one_scrape_gives_per_table_series_to_at_most_the_cap_and_counts_the_rest() {
        let big = |prefix: &str| {
            Arc::new(Snapshot {
                tables: (0..60_000)
                    .map(|n| TableProgress::new("s", &format!("{prefix}{n}"), 1, 1))
                    .collect(),
                ..Snapshot::default()
            })
        };
        let text = render_migrations_openmetrics(&[("a", big("a")), ("b", big("b"))]);
        let copied = text
            .lines()
            .filter(|l| l.starts_with("pgmigrator_table_rows_copied{"))
            .count();
        assert_eq!(copied, MAX_SCRAPED_TABLES);
        assert!(text.contains("pgmigrator_scrape_tables_omitted{migration=\"a\"} 0"));
        assert!(text.contains("pgmigrator_scrape_tables_omitted{migration=\"b\"} 20000"));
        let small = render_openmetrics(big("c"));
        assert!(
            !small.contains("scrape_tables_omitted"),
            "nothing omitted, no family"
        );
    }

    #[test]
    fn a_bounded_scrape_keeps_the_most_interesting_tables_exact_totals_and_the_process_counters() {
        let mut copying = TableProgress::new("public", "copying", 10, 10);
        copying.status = crate::model::TableStatus::Copying;
        let snapshot = |lag_bytes| {
            Arc::new(Snapshot {
                lag_bytes,
                total_rows: 30,
                tables: vec![
                    TableProgress::new("public", "small", 10, 1),
                    copying.clone(),
                    TableProgress::new("public", "large", 10, 1 << 30),
                ],
                ..Snapshot::default()
            })
        };
        let failures = ProcessCounter::new("otlp_export_failures", "Pushes given up", "{push}");
        failures.increment();
        failures.increment();
        let migrations = vec![
            ("shop".to_owned(), snapshot(1)),
            ("billing".to_owned(), snapshot(2)),
        ];
        let scrape = Scrape {
            tables: Some(2),
            counters: vec![failures.clone()],
            openmetrics: false,
        };
        let text = render(migrations, &scrape);
        let tables: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("pgmigrator_table_size_bytes{"))
            .collect();
        assert_eq!(tables.len(), 4, "{text}");
        assert!(
            tables.iter().all(|l| !l.contains("table=\"small\"")),
            "{text}"
        );
        assert!(text.contains("pgmigrator_scrape_tables_omitted{migration=\"shop\"} 1"));
        assert!(text.contains("pgmigrator_replication_lag_bytes{migration=\"billing\"} 2"));
        assert!(
            text.contains("# TYPE pgmigrator_otlp_export_failures_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("\npgmigrator_otlp_export_failures_total 2\n"),
            "{text}"
        );
        // One migration: no label, and OpenMetrics names the counter's family.
        let scrape = Scrape {
            tables: None,
            counters: vec![failures],
            openmetrics: true,
        };
        let one = render(vec![("only".to_owned(), snapshot(3))], &scrape);
        assert!(one.contains("pgmigrator_replication_lag_bytes 3"), "{one}");
        assert!(
            one.contains("# TYPE pgmigrator_otlp_export_failures counter"),
            "{one}"
        );
        assert!(one.contains("pgmigrator_table_size_bytes{schema=\"public\",table=\"small\"} 1"));
        assert!(
            !one.contains("scrape_tables_omitted"),
            "nothing omitted: {one}"
        );
        assert!(one.ends_with("# EOF\n"), "{one}");
    }

    #[test]
    fn a_table_listed_twice_has_one_series_per_family() {
        let table = TableProgress::new("public", "users", 10, 10);
        let snapshot = Snapshot {
            tables: vec![table.clone(), table],
            ..Snapshot::default()
        };
        let text = render_openmetrics(Arc::new(snapshot));
        let series: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').unwrap().0)
            .collect();
        let mut unique = series.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), series.len(), "{text}");
    }

    #[test]
    fn the_forecast_has_a_series_per_bound_it_gives_and_its_state_one_hot() {
        let mut snapshot = Snapshot::default();
        assert!(!render_text(Arc::new(snapshot.clone())).contains("pgmigrator_eta_"));
        snapshot.eta = Some(crate::model::Eta {
            state: crate::model::EtaState::Estimating,
            seconds: Some(120.0),
            low: Some(100.0),
            high: None,
            drift_sec: Some(-30.0),
        });
        let text = render_text(Arc::new(snapshot.clone()));
        for line in [
            "pgmigrator_eta_seconds{bound=\"low\"} 100",
            "pgmigrator_eta_seconds{bound=\"mid\"} 120",
            "pgmigrator_eta_state{state=\"estimating\"} 1",
            "pgmigrator_eta_state{state=\"measuring\"} 0",
            "pgmigrator_eta_drift_seconds -30",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(
            !text.contains("bound=\"high\""),
            "an unbounded end has no series"
        );
        snapshot.eta = Some(crate::model::Eta::bare(crate::model::EtaState::Measuring));
        let text = render_text(Arc::new(snapshot));
        assert!(!text.contains("pgmigrator_eta_seconds"), "{text}");
        assert!(text.contains("pgmigrator_eta_state{state=\"measuring\"} 1"));
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
