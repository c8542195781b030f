//! The series of the families for a set of migrations: which tables get
//! per-table series, and each series's labels and value — what every
//! export walks, whatever format it writes.

use std::collections::HashSet;
use std::sync::Arc;

use super::{Family, Series};
use crate::model::{Snapshot, TableProgress, TableVerification};

/// Most tables given per-table series in one export, all migrations
/// together: a fleet of very large migrations must not make one scrape or
/// push build hundreds of megabytes. The others are counted in
/// `pgmigrator_scrape_tables_omitted`.
pub const MAX_SCRAPED_TABLES: usize = 100_000;

/// One migration of an export: its snapshot, the labels every one of its
/// series carries (none when it is the only one), and how many of its
/// tables get per-table series (the first ones).
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) labels: Vec<(&'static str, String)>,
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) tables: usize,
}

impl Member {
    /// Tables left without per-table series.
    pub(crate) fn tables_omitted(&self) -> usize {
        self.snapshot.tables.len() - self.tables
    }
}

/// The members of an export of `migrations` (`(id, snapshot)`; one without
/// an id is alone and unlabelled), per-table series shared out first come
/// first served up to [`MAX_SCRAPED_TABLES`].
pub(crate) fn members(migrations: Vec<(Option<String>, Arc<Snapshot>)>) -> Vec<Member> {
    let mut room = MAX_SCRAPED_TABLES;
    migrations
        .into_iter()
        .map(|(id, snapshot)| {
            let tables = snapshot.tables.len().min(room);
            room -= tables;
            Member {
                labels: id.map(|id| ("migration", id)).into_iter().collect(),
                snapshot,
                tables,
            }
        })
        .collect()
}

/// The value of one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    Gauge(f64),
    Counter(u64),
}

impl Family {
    /// Whether any member has a series of this family.
    pub(crate) fn is_present(&self, members: &[Member]) -> bool {
        members.iter().any(|m| {
            let s = &m.snapshot;
            match self.series {
                Series::Gauge(value) => value(s).is_some(),
                Series::Counter(value) => value(s).is_some(),
                Series::TableGauge(value) => {
                    s.tables[..m.tables].iter().any(|t| value(t).is_some())
                }
                Series::TableCounter(_) => m.tables > 0,
                Series::Labelled(_, series) => !series(s).is_empty(),
                Series::VerifyGauge(value) => {
                    verified_tables(s, m.tables).any(|t| value(t).is_some())
                }
            }
        })
    }

    /// Each series `member` has of this family: its labels beyond the
    /// member's, and its value.
    pub(crate) fn each(&self, member: &Member, mut series: impl FnMut(&[(&str, &str)], Value)) {
        let s = &member.snapshot;
        match self.series {
            Series::Gauge(value) => {
                if let Some(v) = value(s) {
                    series(&[], Value::Gauge(v));
                }
            }
            Series::Counter(value) => {
                if let Some(v) = value(s) {
                    series(&[], Value::Counter(v));
                }
            }
            Series::TableGauge(value) => {
                for t in unique_tables(s, member.tables) {
                    if let Some(v) = value(t) {
                        series(&table_labels(t), Value::Gauge(v));
                    }
                }
            }
            Series::TableCounter(value) => {
                for t in unique_tables(s, member.tables) {
                    series(&table_labels(t), Value::Counter(value(t)));
                }
            }
            Series::Labelled(label, values) => {
                for (name, v) in values(s) {
                    series(&[(label, name.as_str())], Value::Gauge(v));
                }
            }
            Series::VerifyGauge(value) => {
                for t in verified_tables(s, member.tables) {
                    if let Some(v) = value(t) {
                        let labels = [("schema", t.schema.as_str()), ("table", t.name.as_str())];
                        series(&labels, Value::Gauge(v));
                    }
                }
            }
        }
    }
}

/// The snapshot's first `count` tables, each name once (the first): a
/// state file may list a table twice, and a family holds one series per
/// label set.
fn unique_tables(s: &Snapshot, count: usize) -> impl Iterator<Item = &TableProgress> {
    let mut seen = HashSet::new();
    s.tables[..count.min(s.tables.len())]
        .iter()
        .filter(move |t| seen.insert((t.schema.as_str(), t.name.as_str())))
}

/// The verification's tables, each name once and no more of them than
/// the migration has tables given series (`count`).
fn verified_tables(s: &Snapshot, count: usize) -> impl Iterator<Item = &TableVerification> {
    let mut seen = HashSet::new();
    let tables = s.verify.as_ref().map_or(&[][..], |v| v.tables.as_slice());
    tables[..count.min(tables.len())]
        .iter()
        .filter(move |t| seen.insert((t.schema.as_str(), t.name.as_str())))
}

fn table_labels(t: &TableProgress) -> [(&'static str, &str); 2] {
    [("schema", t.schema.as_str()), ("table", t.name.as_str())]
}
