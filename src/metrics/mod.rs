//! The metric families every export shares, as data: `GET /metrics`
//! renders them for Prometheus to scrape, and OTLP pushes the same ones,
//! under names and units that Prometheus's own OTLP translation turns back
//! into exactly the scraped names. One vocabulary, whichever way the data
//! leaves the process: `contrib/grafana` and `contrib/prometheus` work on
//! both.

mod families;
mod select;
mod series;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use families::{FAMILIES, Family, Series};
pub use series::MAX_SCRAPED_TABLES;
pub(crate) use series::{Member, Value, members};

/// A count the process keeps of itself rather than of a migration (say,
/// the OTLP pushes it gave up), shown in `/metrics` beside `build_info`,
/// without a `migration` label. Clones share the count.
#[derive(Debug, Clone)]
pub struct ProcessCounter {
    name: &'static str,
    help: &'static str,
    unit: &'static str,
    count: Arc<AtomicU64>,
}

impl ProcessCounter {
    /// A counter at 0 of things in `unit` (UCUM, as OTLP carries it:
    /// `{push}`), scraped as `pgmigrator_NAME_total` and pushed as the
    /// monotonic sum `pgmigrator_NAME`.
    pub fn new(name: &'static str, help: &'static str, unit: &'static str) -> ProcessCounter {
        ProcessCounter {
            name,
            help,
            unit,
            count: Arc::default(),
        }
    }

    /// Its name without the prefix and `_total`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What it counts.
    pub fn help(&self) -> &'static str {
        self.help
    }

    /// The unit of what it counts.
    pub fn unit(&self) -> &'static str {
        self.unit
    }

    /// Its name in OTLP, a monotonic sum that Prometheus's translation
    /// turns into the scraped `pgmigrator_NAME_total`.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn otlp_name(&self) -> String {
        format!("{PREFIX}_{}", self.name)
    }

    /// Counts one more.
    pub fn increment(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Every metric name starts with this, and `_`.
pub(crate) const PREFIX: &str = "pgmigrator";

impl Family {
    /// Whether the family counts up from the start (a monotonic sum in
    /// OTLP, `_total` in the exposition), rather than a gauge.
    pub(crate) fn is_counter(&self) -> bool {
        matches!(self.series, Series::Counter(_) | Series::TableCounter(_))
    }

    /// The name of the family in OTLP: the scraped name without the
    /// suffixes Prometheus's translation (`UnderscoreEscapingWithSuffixes`,
    /// its default) appends from the unit and the kind. The main unit
    /// (`bytes`, `seconds`) is appended only when the name lacks it, so it
    /// may stay; a per-unit (`per_second`) is appended always, so it goes;
    /// `_total` is appended to a monotonic sum, and our names have none.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn otlp_name(&self) -> String {
        let name = match self.unit.ends_with("/s") {
            true => self.name.strip_suffix("_per_second").unwrap_or(self.name),
            false => self.name,
        };
        format!("{PREFIX}_{name}")
    }

    /// The name of its series in a scrape: `pgmigrator_` and the name, and
    /// `_total` for a counter.
    #[cfg(test)]
    pub(crate) fn scraped_name(&self) -> String {
        match self.is_counter() {
            true => format!("{PREFIX}_{}_total", self.name),
            false => format!("{PREFIX}_{}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus's translation of an OTLP metric's name into a scraped
    /// one under `UnderscoreEscapingWithSuffixes` (prometheus/otlptranslator,
    /// `normalizeName`), for a gauge or a monotonic sum.
    fn prometheus_name(name: &str, unit: &str, monotonic: bool) -> String {
        let compliant = |c: char| c.is_ascii_alphanumeric() || c == ':';
        let clean = |unit: &str| -> String {
            let mapped: String = unit
                .chars()
                .map(|c| if compliant(c) { c } else { '_' })
                .collect();
            let mut collapsed = String::new();
            for c in mapped.chars() {
                if !(c == '_' && collapsed.ends_with('_')) {
                    collapsed.push(c);
                }
            }
            collapsed.trim_start_matches('_').to_owned()
        };
        let mut tokens: Vec<String> = name
            .split(|c: char| !compliant(c))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        let (main, per) = unit.split_once('/').unwrap_or((unit, ""));
        let annotation = |u: &str| u.contains(['{', '}']);
        // Its unit map, for the units of time and size.
        let main = match main.trim() {
            "" | "1" => String::new(),
            u if annotation(u) => String::new(),
            "d" => "days".into(),
            "h" => "hours".into(),
            "min" => "minutes".into(),
            "s" => "seconds".into(),
            "ms" => "milliseconds".into(),
            "us" => "microseconds".into(),
            "ns" => "nanoseconds".into(),
            "By" => "bytes".into(),
            "KiBy" => "kibibytes".into(),
            "MiBy" => "mebibytes".into(),
            "GiBy" => "gibibytes".into(),
            u => u.to_owned(),
        };
        let per = match per.trim() {
            "" => String::new(),
            u if annotation(u) => String::new(),
            "s" => "per_second".into(),
            "m" => "per_minute".into(),
            "h" => "per_hour".into(),
            "d" => "per_day".into(),
            u => format!("per_{u}"),
        };
        let (mut main, per) = (clean(&main), clean(&per));
        let per = per.trim_end_matches('_').to_owned();
        if tokens.contains(&main) {
            main.clear();
        }
        let per = if per == "per" || tokens.contains(&per) {
            String::new()
        } else {
            per
        };
        if !per.is_empty() {
            main = main.trim_end_matches('_').to_owned();
        }
        tokens.extend([main, per].into_iter().filter(|t| !t.is_empty()));
        if monotonic {
            tokens.retain(|t| t != "total");
            tokens.push("total".into());
        }
        if unit == "1" && !monotonic {
            tokens.retain(|t| t != "ratio");
            tokens.push("ratio".into());
        }
        tokens.join("_")
    }

    #[test]
    fn the_translation_matches_prometheuss_own_cases() {
        // The cases of otlptranslator's metric_namer_test.go with suffixes.
        let cases = [
            ("requests", "", true, "requests_total"),
            ("cpu_usage", "1", false, "cpu_usage_ratio"),
            ("items", "1", true, "items_total"),
            ("response_time", "ms", false, "response_time_milliseconds"),
            ("memory_usage", "By", false, "memory_usage_bytes"),
            ("requests", "1/s", false, "requests_per_second"),
            ("throughput", "By/s", false, "throughput_bytes_per_second"),
            (
                "custom_metric",
                "custom_unit",
                false,
                "custom_metric_custom_unit",
            ),
            ("custom_metric", "{custom}", false, "custom_metric"),
            ("custom_metric", "By/{custom}", false, "custom_metric_bytes"),
            ("requests_total", "", true, "requests_total"),
            ("response_time_seconds", "s", false, "response_time_seconds"),
        ];
        for (name, unit, monotonic, scraped) in cases {
            assert_eq!(
                prometheus_name(name, unit, monotonic),
                scraped,
                "{name} {unit}"
            );
        }
        // What our names rely on: a per-unit is appended even when the
        // name already says it, a main unit is not.
        assert_eq!(
            prometheus_name("lag_bytes_per_second", "By/s", false),
            "lag_bytes_per_second_per_second"
        );
        assert_eq!(
            prometheus_name("lag", "By/s", false),
            "lag_bytes_per_second"
        );
    }

    #[test]
    fn every_family_pushed_over_otlp_is_scraped_under_its_own_name() {
        for family in FAMILIES {
            let translated = prometheus_name(&family.otlp_name(), family.unit, family.is_counter());
            assert_eq!(translated, family.scraped_name(), "{}", family.name);
            // Units are UCUM as OpenTelemetry writes them; "1" would add
            // `_ratio` to a gauge.
            assert_ne!(family.unit, "1", "{}", family.name);
        }
        let names: std::collections::HashSet<String> =
            FAMILIES.iter().map(Family::otlp_name).collect();
        assert_eq!(names.len(), FAMILIES.len(), "one OTLP name per family");
        // The process's own counters too.
        let failures = ProcessCounter::new("otlp_export_failures", "Pushes given up", "{push}");
        assert_eq!(
            prometheus_name(&failures.otlp_name(), failures.unit(), true),
            "pgmigrator_otlp_export_failures_total"
        );
    }
}
