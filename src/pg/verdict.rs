//! The cutover verdict: the checks that follow from the snapshot, and those
//! that read the catalogs (every `check_interval`, or at once for
//! [`Monitor::check`]), combined and recorded.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

use super::checks::{self, Findings, SequenceFix};
use super::counts::{self, CountOptions, CountProgress};
use tokio::sync::watch;

use super::verify::{self, VerifyOptions};
use super::{Monitor, MonitorConfig, MonitorError, catalog};
use crate::collector::{Collector, Update};
use crate::cutover;
use crate::model::{Cutover, CutoverItem, CutoverKind, TableName, TableProgress, VerifyProgress};

/// How [`Monitor::check`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// Count rows on both servers (`row_count_mismatch`); `None` skips it.
    pub counts: Option<CountOptions>,
    /// What a [`SequenceFix`] adds to the source's value (default 1000).
    pub sequence_margin: i64,
    /// Verify the rows of every subscribed table (`data_mismatch`);
    /// `None` skips it.
    pub verify: Option<VerifyOptions>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            counts: None,
            sequence_margin: DEFAULT_SEQUENCE_MARGIN,
            verify: None,
        }
    }
}

/// What a [`SequenceFix`] adds to the source's value unless told.
pub const DEFAULT_SEQUENCE_MARGIN: i64 = 1000;

/// The outcome of [`Monitor::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// The verdict.
    pub cutover: Cutover,
    /// The `setval` statements that bring the destination's sequences
    /// ahead of the source's.
    pub sequence_fixes: Vec<SequenceFix>,
    /// What verifying the subscribed tables found; `None` unless asked.
    pub verification: Option<VerifyProgress>,
    /// Queries sent, row counts and verification not included.
    pub queries: u32,
    /// Wall time of the whole check.
    pub elapsed: Duration,
}

/// How far [`Monitor::check`] has come.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum CheckProgress<'a> {
    /// Counting rows.
    Counts(CountProgress),
    /// Verifying rows.
    Verify(&'a VerifyProgress),
}

/// The catalog checks' newest findings and when they were read.
#[derive(Debug)]
pub(super) struct Checked {
    at: Instant,
    findings: Findings,
}

impl Monitor {
    /// Runs every check once, now: a poll into `collector` (for the
    /// tables, lag, slot and errors), the catalog checks and, when asked,
    /// the row counts and the verification, reporting how far they have
    /// come to `progress`. Read-only on both servers; records nothing but
    /// the verification's outcome, whose blockers and warnings join the
    /// verdict.
    pub async fn check(
        &mut self,
        collector: &Collector,
        options: &CheckOptions,
        progress: &mut (dyn FnMut(CheckProgress<'_>) + Send),
    ) -> Result<CheckReport, MonitorError> {
        let started = std::time::Instant::now();
        let mut queries = self.poll(collector).await?.queries;
        let catalog = catalog::read(self, &mut queries).await?;
        let mut findings = checks::evaluate(&catalog, options.sequence_margin);
        if let Some(count_options) = &options.counts {
            let tables = catalog.subscribed.iter().map(|(name, _)| name.clone());
            let counted = counts::compare(
                &self.config.source,
                &self.config.dest,
                tables.collect(),
                count_options,
                &mut |counted| progress(CheckProgress::Counts(counted)),
            )
            .await?;
            findings.extend(counted);
        }
        let mut verification = None;
        if let Some(verify_options) = &options.verify {
            let tables: Vec<TableName> = catalog
                .subscribed
                .iter()
                .map(|(name, _)| name.clone())
                .collect();
            let verified = verify::verify(
                &self.config.source,
                &self.config.dest,
                self.subscription.slot.clone(),
                &tables,
                verify_options,
                &mut |verified| progress(CheckProgress::Verify(verified)),
            )
            .await?;
            collector.record_verify(verified.clone()).await;
            verification = Some(verified);
        }
        collector.flush().await;
        let now = OffsetDateTime::now_utc();
        let checks = Cutover::new(now, findings.blockers, findings.warnings);
        let cutover = cutover::verdict(&collector.snapshot(), &self.config.cutover, &checks, now);
        Ok(CheckReport {
            cutover,
            sequence_fixes: findings.sequence_fixes,
            verification,
            queries,
            elapsed: started.elapsed(),
        })
    }

    /// Records the verdict after a poll, with the newest row counts when
    /// there are any, reading the catalogs again when the last reading is
    /// `check_interval` old.
    pub(super) async fn update_cutover(
        &mut self,
        collector: &Collector,
        counted: Option<&Findings>,
    ) -> Result<(), MonitorError> {
        let due = self
            .checked
            .as_ref()
            .is_none_or(|c| c.at.elapsed() >= self.config.check_interval);
        if due {
            let catalog = catalog::read(self, &mut 0).await?;
            self.checked = Some(Checked {
                at: Instant::now(),
                findings: checks::evaluate(&catalog, DEFAULT_SEQUENCE_MARGIN),
            });
        }
        let Some(checked) = &self.checked else {
            return Ok(());
        };
        let mut findings = checked.findings.clone();
        if let Some(counted) = counted {
            findings.extend(counted.clone());
        }
        let checks = Cutover::new(
            OffsetDateTime::now_utc(),
            findings.blockers,
            findings.warnings,
        );
        collector
            .send(Update::Checks(Box::new((
                checks,
                self.config.cutover.clone(),
            ))))
            .await;
        Ok(())
    }
}

/// Counts the rows of the tables `collector` shows, on both servers, every
/// `check_interval` until the receiver is dropped; the receiver holds the
/// newest findings (a failure to count is a warning).
pub(super) fn count_periodically(
    config: &MonitorConfig,
    options: CountOptions,
    collector: Collector,
) -> watch::Receiver<Option<Findings>> {
    let (tx, rx) = watch::channel(None);
    let (source, dest, interval) = (
        config.source.clone(),
        config.dest.clone(),
        config.check_interval,
    );
    tokio::spawn(async move {
        loop {
            let tables: Vec<TableName> = collector
                .snapshot()
                .tables
                .iter()
                .map(TableProgress::table_name)
                .collect();
            if !tables.is_empty() {
                let started = Instant::now();
                let count = tables.len();
                let mut quiet = |_| {};
                let counting = counts::compare(&source, &dest, tables, &options, &mut quiet);
                let findings = tokio::select! {
                    () = tx.closed() => return,
                    counted = counting => counted.unwrap_or_else(|err| Findings {
                        warnings: vec![CutoverItem {
                            kind: CutoverKind::RowCountMismatch,
                            table: None,
                            detail: format!("rows not counted: {err}"),
                        }],
                        ..Findings::default()
                    }),
                };
                tracing::debug!(tables = count, elapsed = ?started.elapsed(), "counted rows");
                tx.send_replace(Some(findings));
            }
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
    rx
}
