//! The cutover checks that need the two catalogs: a pure function of what
//! [`catalog::read`](super::catalog::read) found, tested without a server.

use std::collections::{HashMap, HashSet};

use super::catalog::{Catalog, Column, Sequence, SourceTable};
use super::sql::quote_ident;
use crate::model::{CutoverItem, CutoverKind, TableName};
use crate::printable::sql_literal;

/// What the catalog checks found.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Findings {
    pub(crate) blockers: Vec<CutoverItem>,
    pub(crate) warnings: Vec<CutoverItem>,
    pub(crate) sequence_fixes: Vec<SequenceFix>,
}

impl Findings {
    /// These findings and `other`'s.
    pub(crate) fn extend(&mut self, other: Findings) {
        self.blockers.extend(other.blockers);
        self.warnings.extend(other.warnings);
        self.sequence_fixes.extend(other.sequence_fixes);
    }

    fn block(&mut self, kind: CutoverKind, table: Option<&TableName>, detail: String) {
        self.blockers.push(item(kind, table, detail));
    }

    fn warn(&mut self, kind: CutoverKind, table: Option<&TableName>, detail: String) {
        self.warnings.push(item(kind, table, detail));
    }
}

fn item(kind: CutoverKind, table: Option<&TableName>, detail: String) -> CutoverItem {
    CutoverItem {
        kind,
        table: table.map(TableName::to_string),
        detail,
    }
}

/// A `setval` that puts a destination sequence ahead of the source's
/// value, for the operator to run on the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceFix {
    /// The sequence.
    pub sequence: TableName,
    /// The value to set: the source's, plus the margin in the sequence's
    /// direction, within the destination sequence's bounds.
    pub value: i64,
    /// Whether a bound of the destination sequence kept `value` from the
    /// full margin.
    pub clamped: bool,
}

impl SequenceFix {
    /// `SELECT setval('"public"."orders_id_seq"', 121045, true);`, with
    /// the name quoted as an identifier and as a literal, so any name
    /// (and none of it acted on by a terminal) is safe to print and run.
    pub fn sql(&self) -> String {
        let name = format!(
            "{}.{}",
            quote_ident(&self.sequence.schema),
            quote_ident(&self.sequence.name)
        );
        format!(
            "SELECT setval({}, {}, true);",
            sql_literal(&name),
            self.value
        )
    }
}

/// Every catalog check on `catalog`; a sequence fix adds `margin` to the
/// source's value.
pub(crate) fn evaluate(catalog: &Catalog, margin: i64) -> Findings {
    let mut findings = Findings::default();
    if !catalog.enabled {
        findings.block(
            CutoverKind::SubscriptionDisabled,
            None,
            format!(
                "subscription {} is disabled: nothing is applied (ALTER SUBSCRIPTION … ENABLE)",
                catalog.subscription
            ),
        );
    }
    publications(catalog, &mut findings);
    replica_identity(catalog, &mut findings);
    schemas(catalog, &mut findings);
    sequences(catalog, margin, &mut findings);
    findings
}

/// `not_subscribed`: published but not subscribed (a blocker), or, beside
/// publications that are not `FOR ALL TABLES`, in no publication at all (a
/// warning).
fn publications(catalog: &Catalog, findings: &mut Findings) {
    let ours: Vec<&str> = catalog
        .subscribed_publications
        .iter()
        .map(String::as_str)
        .collect();
    for name in &ours {
        if !catalog.publications.iter().any(|p| p.name == *name) {
            findings.block(
                CutoverKind::NotSubscribed,
                None,
                format!("publication {name} does not exist on the source"),
            );
        }
    }
    let subscribed: HashSet<&TableName> = catalog.subscribed.iter().map(|(n, _)| n).collect();
    let mut schemas = HashSet::new();
    for table in &catalog.source_tables {
        let Some(publication) = table
            .publications
            .iter()
            .find(|p| ours.contains(&p.as_str()))
        else {
            continue;
        };
        schemas.insert(table.name.schema.as_str());
        if !subscribed.contains(&table.name) {
            findings.block(
                CutoverKind::NotSubscribed,
                Some(&table.name),
                format!(
                    "in publication {publication} but not in subscription {}: its rows are not \
                     replicated (ALTER SUBSCRIPTION … REFRESH PUBLICATION)",
                    catalog.subscription
                ),
            );
        }
    }
    let all_tables = catalog
        .publications
        .iter()
        .any(|p| p.all_tables && ours.contains(&p.name.as_str()));
    if all_tables {
        return;
    }
    for table in &catalog.source_tables {
        if table.kind == "r"
            && schemas.contains(table.name.schema.as_str())
            && table.publications.is_empty()
            && table.root_publications.is_empty()
        {
            findings.warn(
                CutoverKind::NotSubscribed,
                Some(&table.name),
                "in no publication: its changes are not replicated (if that is meant, ignore this)"
                    .to_owned(),
            );
        }
    }
}

/// `no_replica_identity`: a table published with UPDATE or DELETE that
/// has no replica identity, so those statements fail on the source.
fn replica_identity(catalog: &Catalog, findings: &mut Findings) {
    let needs_identity: HashSet<&str> = catalog
        .publications
        .iter()
        .filter(|p| p.updates_or_deletes)
        .map(|p| p.name.as_str())
        .collect();
    for table in &catalog.source_tables {
        let published = table
            .publications
            .iter()
            .chain(&table.root_publications)
            .any(|p| needs_identity.contains(p.as_str()));
        if table.kind != "r" || !published {
            continue;
        }
        if let Some(why) = missing_identity(table) {
            findings.block(
                CutoverKind::NoReplicaIdentity,
                Some(&table.name),
                format!(
                    "{why}: UPDATE and DELETE on it fail on the source \
                     (add a primary key, or ALTER TABLE … REPLICA IDENTITY FULL)"
                ),
            );
        }
    }
}

fn missing_identity(table: &SourceTable) -> Option<&'static str> {
    match table.replica_identity.as_str() {
        "n" => Some("REPLICA IDENTITY NOTHING"),
        "d" if !table.has_primary_key => Some("no primary key and REPLICA IDENTITY DEFAULT"),
        "i" if !table.has_replica_identity_index => Some("its REPLICA IDENTITY index is gone"),
        _ => None,
    }
}

/// `schema_mismatch`: a subscribed table whose columns differ.
fn schemas(catalog: &Catalog, findings: &mut Findings) {
    let source: HashMap<&TableName, &[Column]> = catalog
        .source_tables
        .iter()
        .map(|t| (&t.name, t.columns.as_slice()))
        .collect();
    for (name, dest_columns) in &catalog.subscribed {
        let Some(source_columns) = source.get(name) else {
            findings.block(
                CutoverKind::SchemaMismatch,
                Some(name),
                "subscribed, but the source has no such table".to_owned(),
            );
            continue;
        };
        let differences = column_differences(source_columns, dest_columns);
        if !differences.is_empty() {
            findings.block(
                CutoverKind::SchemaMismatch,
                Some(name),
                differences.join("; "),
            );
        }
    }
}

/// What differs, one phrase per column.
fn column_differences(source: &[Column], dest: &[Column]) -> Vec<String> {
    fn find<'a>(columns: &'a [Column], name: &str) -> Option<&'a Column> {
        columns.iter().find(|c| c.0 == name)
    }
    let mut differences = Vec::new();
    for Column(name, source_type, source_not_null) in source {
        match find(dest, name) {
            None => differences.push(format!("column {name} only on the source")),
            Some(Column(_, dest_type, dest_not_null)) => {
                if source_type != dest_type {
                    differences.push(format!(
                        "column {name} is {source_type} on the source, {dest_type} on the destination"
                    ));
                }
                if source_not_null != dest_not_null {
                    let side = if *dest_not_null {
                        "destination"
                    } else {
                        "source"
                    };
                    differences.push(format!("column {name} is NOT NULL on the {side} only"));
                }
            }
        }
    }
    for Column(name, ..) in dest {
        if find(source, name).is_none() {
            differences.push(format!("column {name} only on the destination"));
        }
    }
    differences
}

/// `sequence_behind`: logical replication never copies sequences, so a
/// destination sequence not past the source's value hands out ids the
/// source has used.
fn sequences(catalog: &Catalog, margin: i64, findings: &mut Findings) {
    let dest: HashMap<&TableName, &Sequence> = catalog
        .dest_sequences
        .iter()
        .map(|s| (&s.name, s))
        .collect();
    let mut unreadable = Vec::new();
    for source in &catalog.source_sequences {
        if !source.readable {
            unreadable.push(&source.name);
            continue;
        }
        // Never used on the source: nothing to be behind.
        let Some(value) = source.last_value else {
            continue;
        };
        let Some(target) = dest.get(&source.name) else {
            findings.block(
                CutoverKind::SequenceBehind,
                Some(&source.name),
                format!("source {value}, and the destination has no such sequence"),
            );
            continue;
        };
        if !target.readable {
            unreadable.push(&source.name);
            continue;
        }
        let ascending = source.increment > 0;
        let behind = match target.last_value {
            None => true,
            Some(theirs) if ascending => theirs < value,
            Some(theirs) => theirs > value,
        };
        if !behind {
            continue;
        }
        let theirs = target
            .last_value
            .map_or_else(|| "unused".to_owned(), |v| v.to_string());
        let (min, max) = target.bounds;
        let wanted = if ascending {
            value.saturating_add(margin)
        } else {
            value.saturating_sub(margin)
        };
        let set = wanted.clamp(min, max.max(min));
        // Past its bound, the destination sequence cannot get ahead at all.
        let ahead = if ascending {
            set >= value
        } else {
            set <= value
        };
        if !ahead {
            findings.block(
                CutoverKind::SequenceBehind,
                Some(&source.name),
                format!(
                    "source {value}, destination {theirs}, and its bounds ({min} to {max}) \
                     keep it behind: ALTER SEQUENCE … MAXVALUE/MINVALUE first"
                ),
            );
            continue;
        }
        findings.block(
            CutoverKind::SequenceBehind,
            Some(&source.name),
            format!("source {value}, destination {theirs}"),
        );
        findings.sequence_fixes.push(SequenceFix {
            sequence: source.name.clone(),
            value: set,
            clamped: set != wanted,
        });
    }
    if let Some(first) = unreadable.first() {
        findings.warn(
            CutoverKind::SequenceBehind,
            None,
            format!(
                "{} sequence(s) not compared (first: {first}): this login may not read them; \
                 grant it pg_read_all_data, or SELECT on them, on both servers",
                unreadable.len()
            ),
        );
    }
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
