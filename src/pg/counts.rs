//! `row_count_mismatch`: exact `count(*)` of every subscribed table on both
//! servers, a bounded number at a time, each under a `statement_timeout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_postgres::error::SqlState;

use super::checks::Findings;
use super::sql::quote_ident;
use super::{ConnInfo, MonitorError, connect, describe};
use crate::model::{CutoverItem, CutoverKind, TableName};
use crate::units::format_duration;

/// How `--counts` counts rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountOptions {
    /// Tables counted at once on each server (each on its own connection).
    pub concurrency: usize,
    /// The longest one count may take; a table not counted in time is
    /// left out of the comparison and named in a warning.
    pub statement_timeout: Duration,
}

impl Default for CountOptions {
    fn default() -> Self {
        CountOptions {
            concurrency: 2,
            statement_timeout: Duration::from_secs(300),
        }
    }
}

/// How far counting has come: tables counted on both servers, of all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountProgress {
    /// Tables counted (or given up) on both servers.
    pub done: usize,
    /// Tables to count.
    pub total: usize,
}

type Count = Result<i64, String>;

/// Counts `tables` on both servers and compares the counts that finished
/// on both; `progress` hears after each table.
pub(crate) async fn compare(
    source: &ConnInfo,
    dest: &ConnInfo,
    tables: Vec<TableName>,
    options: &CountOptions,
    progress: &mut (dyn FnMut(CountProgress) + Send),
) -> Result<Findings, MonitorError> {
    let total = tables.len();
    let tables = Arc::new(tables);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut workers = tokio::task::JoinSet::new();
    for (side, server, which) in [(0, source, "source"), (1, dest, "destination")] {
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..options.concurrency.clamp(1, total.max(1)) {
            let client = connect(which, server).await?;
            let timeout = format!(
                "SET statement_timeout = {}; SET default_transaction_read_only = on",
                options.statement_timeout.as_millis().max(1)
            );
            client
                .batch_execute(&timeout)
                .await
                .map_err(|err| counting_failed(which, &err))?;
            let (tables, next, tx) = (Arc::clone(&tables), Arc::clone(&next), tx.clone());
            let limit = options.statement_timeout;
            workers.spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(table) = tables.get(index) else {
                        return;
                    };
                    let count = client
                        .query_one(&count_sql(table), &[])
                        .await
                        .map(|row| row.get::<_, i64>(0))
                        .map_err(|err| why_not_counted(&err, limit));
                    if tx.send((side, index, count)).is_err() {
                        return;
                    }
                }
            });
        }
    }
    drop(tx);
    let mut counts: Vec<[Option<Count>; 2]> = vec![[None, None]; total];
    let mut done = 0;
    progress(CountProgress { done, total });
    while let Some((side, index, count)) = rx.recv().await {
        counts[index][side] = Some(count);
        if counts[index].iter().all(Option::is_some) {
            done += 1;
            progress(CountProgress { done, total });
        }
    }
    while workers.join_next().await.is_some() {}
    Ok(findings(&tables, counts))
}

fn findings(tables: &[TableName], counts: Vec<[Option<Count>; 2]>) -> Findings {
    let mut findings = Findings::default();
    let mut skipped: Vec<String> = Vec::new();
    for (table, [source, dest]) in tables.iter().zip(counts) {
        match (source, dest) {
            (Some(Ok(source)), Some(Ok(dest))) if source != dest => {
                let difference = source.abs_diff(dest);
                let side = if dest < source { "fewer" } else { "more" };
                findings.blockers.push(CutoverItem {
                    kind: CutoverKind::RowCountMismatch,
                    table: Some(table.to_string()),
                    detail: format!(
                        "source {source}, destination {dest} ({difference} {side} on the \
                         destination); counts agree only once writes to the source have stopped"
                    ),
                });
            }
            (Some(Ok(_)), Some(Ok(_))) => {}
            (source, dest) => {
                let why = [source, dest]
                    .into_iter()
                    .find_map(|c| c.and_then(Result::err))
                    .unwrap_or_else(|| "not counted".to_owned());
                skipped.push(format!("{table}: {why}"));
            }
        }
    }
    if let Some(first) = skipped.first() {
        findings.warnings.push(CutoverItem {
            kind: CutoverKind::RowCountMismatch,
            table: None,
            detail: format!(
                "{} table(s) not compared, their count did not finish on both servers \
                 (first: {first})",
                skipped.len()
            ),
        });
    }
    findings
}

/// `SELECT count(*) FROM "schema"."name"`.
fn count_sql(table: &TableName) -> String {
    format!(
        "SELECT count(*) FROM {}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    )
}

fn why_not_counted(err: &tokio_postgres::Error, limit: Duration) -> String {
    match err.code() {
        Some(&SqlState::QUERY_CANCELED) => {
            format!("did not finish within {}", format_duration(limit))
        }
        Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            "this login may not read it (grant SELECT on it, or pg_read_all_data)".to_owned()
        }
        _ => describe(err),
    }
}

fn counting_failed(which: &str, err: &tokio_postgres::Error) -> MonitorError {
    MonitorError::new(
        super::MonitorErrorKind::Lost,
        format!("preparing to count rows on the {which}: {}", describe(err)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tables_counted_on_both_sides_are_compared() {
        let tables = [
            TableName::new("public", "same"),
            TableName::new("public", "short"),
            TableName::new("public", "slow"),
        ];
        let counts = vec![
            [Some(Ok(10)), Some(Ok(10))],
            [Some(Ok(100)), Some(Ok(90))],
            [
                Some(Ok(5)),
                Some(Err("did not finish within 1s".to_owned())),
            ],
        ];
        let findings = findings(&tables, counts);
        assert_eq!(findings.blockers.len(), 1);
        assert_eq!(findings.blockers[0].table.as_deref(), Some("public.short"));
        assert!(
            findings.blockers[0]
                .detail
                .starts_with("source 100, destination 90 (10 fewer on the destination)"),
            "{}",
            findings.blockers[0].detail
        );
        assert_eq!(
            findings.warnings[0].detail,
            "1 table(s) not compared, their count did not finish on both servers \
             (first: public.slow: did not finish within 1s)"
        );
    }

    #[test]
    fn names_are_quoted_as_identifiers() {
        assert_eq!(
            count_sql(&TableName::new("my schema", "we\"ird")),
            r#"SELECT count(*) FROM "my schema"."we""ird""#
        );
    }
}
