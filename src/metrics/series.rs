//! The series of the families for a set of migrations: which tables get
//! per-table series, and each series's labels and value — what every
//! export walks, whatever format it writes.

use std::collections::HashSet;
use std::sync::Arc;

use super::select::chosen_tables;
use super::{Family, Series};
use crate::model::{Snapshot, TableProgress, TableVerification};

/// Most tables given per-table series in one export, all migrations
/// together: a fleet of very large migrations must not make one scrape or
/// push build hundreds of megabytes. The others are counted in
/// `pgmigrator_scrape_tables_omitted`.
pub const MAX_SCRAPED_TABLES: usize = 100_000;

/// One migration of an export: its snapshot, the labels every one of its
/// series carries (none when it is the only one), and which of its tables
/// get per-table series.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) labels: Vec<(&'static str, String)>,
    pub(crate) snapshot: Arc<Snapshot>,
    /// Indices into the snapshot's tables, in its order.
    tables: Vec<usize>,
    /// Indices into its verification's tables, in its order.
    verified: Vec<usize>,
}

impl Member {
    /// Tables left without per-table series.
    pub(crate) fn tables_omitted(&self) -> usize {
        self.snapshot.tables.len() - self.tables.len()
    }
}

/// The members of an export of `migrations` (`(id, snapshot)`; one without
/// an id is alone and unlabelled): per-table series for the `per_migration`
/// most interesting tables of each (every table when `None`), then shared
/// out first come first served up to [`MAX_SCRAPED_TABLES`].
pub(crate) fn members(
    migrations: Vec<(Option<String>, Arc<Snapshot>)>,
    per_migration: Option<usize>,
) -> Vec<Member> {
    let mut room = MAX_SCRAPED_TABLES;
    migrations
        .into_iter()
        .map(|(id, snapshot)| {
            let mut tables = chosen_tables(&snapshot, per_migration);
            tables.truncate(room);
            room -= tables.len();
            let verified = verified_of(&snapshot, &tables);
            Member {
                labels: id.map(|id| ("migration", id)).into_iter().collect(),
                snapshot,
                tables,
                verified,
            }
        })
        .collect()
}

/// The verification's tables that get series: those of the tables chosen,
/// each name once.
fn verified_of(s: &Snapshot, tables: &[usize]) -> Vec<usize> {
    let Some(verify) = &s.verify else {
        return Vec::new();
    };
    let chosen: HashSet<(&str, &str)> = tables
        .iter()
        .map(|&i| (s.tables[i].schema.as_str(), s.tables[i].name.as_str()))
        .collect();
    let mut seen = HashSet::new();
    verify
        .tables
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            let name = (t.schema.as_str(), t.name.as_str());
            chosen.contains(&name) && seen.insert(name)
        })
        .map(|(i, _)| i)
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
                Series::TableGauge(value) => unique_tables(m).any(|t| value(t).is_some()),
                Series::TableCounter(_) => !m.tables.is_empty(),
                Series::Labelled(_, series) => !series(s).is_empty(),
                Series::VerifyGauge(value) => verified_tables(m).any(|t| value(t).is_some()),
                Series::TablesOmitted => m.tables_omitted() > 0,
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
                for t in unique_tables(member) {
                    if let Some(v) = value(t) {
                        series(&table_labels(t), Value::Gauge(v));
                    }
                }
            }
            Series::TableCounter(value) => {
                for t in unique_tables(member) {
                    series(&table_labels(t), Value::Counter(value(t)));
                }
            }
            Series::Labelled(label, values) => {
                for (name, v) in values(s) {
                    series(&[(label, name.as_str())], Value::Gauge(v));
                }
            }
            Series::VerifyGauge(value) => {
                for t in verified_tables(member) {
                    if let Some(v) = value(t) {
                        let labels = [("schema", t.schema.as_str()), ("table", t.name.as_str())];
                        series(&labels, Value::Gauge(v));
                    }
                }
            }
            Series::TablesOmitted => {
                series(&[], Value::Gauge(member.tables_omitted() as f64));
            }
        }
    }
}

/// The member's tables, each name once (the first): a state file may list
/// a table twice, and a family holds one series per label set.
fn unique_tables(m: &Member) -> impl Iterator<Item = &TableProgress> {
    let mut seen = HashSet::new();
    m.tables
        .iter()
        .map(|&i| &m.snapshot.tables[i])
        .filter(move |t| seen.insert((t.schema.as_str(), t.name.as_str())))
}

/// The verification's tables of the member's tables.
fn verified_tables(m: &Member) -> impl Iterator<Item = &TableVerification> {
    let tables = m
        .snapshot
        .verify
        .as_ref()
        .map_or(&[][..], |v| v.tables.as_slice());
    m.verified.iter().map(move |&i| &tables[i])
}

fn table_labels(t: &TableProgress) -> [(&'static str, &str); 2] {
    [("schema", t.schema.as_str()), ("table", t.name.as_str())]
}
