//! `pgmigrator check`: the cutover checks, once, as a verdict and an exit
//! status for runbooks and CI gates.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use pgmigrator_metrics::Collector;
use pgmigrator_metrics::pg::{
    CheckOptions, CheckReport, CountProgress, Monitor, VerifyOptions, VerifyStatus,
};
use pgmigrator_metrics::printable::{printable_json, printable_line};
use pgmigrator_metrics::status::render_cutover;

use crate::Failure;
use crate::args::CheckArgs;
use crate::output::print;

/// Exit status: it is safe to switch over.
const READY: u8 = 0;
/// Exit status: the bad usage of a flag or connection string.
const USAGE: u8 = 2;
/// Exit status: the checks ran and something blocks the cutover.
const NOT_READY: u8 = 3;

/// Data verification, for `check`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Also verify the rows of every subscribed table: chunk by chunk of
    /// its key, a digest of the rows on each server, and the keys of the
    /// rows that differ (data_mismatch). Read-only, under live writes.
    #[arg(long)]
    pub(crate) verify: bool,
    /// Rows per chunk, from 100 to 1000000.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    pub(crate) verify_chunk_rows: u32,
    /// Reads again of a chunk that differs before it counts, from 0 to 10.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub(crate) verify_retries: u32,
    /// Differing keys named per table, from 1 to 10000.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub(crate) verify_max_rows: u16,
    /// Show a short hash of each differing key instead of the key.
    #[arg(long)]
    pub(crate) verify_hide_keys: bool,
}

impl VerifyArgs {
    pub(crate) fn options(&self) -> Option<VerifyOptions> {
        self.verify.then(|| VerifyOptions {
            chunk_rows: self.verify_chunk_rows,
            retries: self.verify_retries,
            max_rows: usize::from(self.verify_max_rows),
            hide_keys: self.verify_hide_keys,
            ..VerifyOptions::default()
        })
    }
}

/// Runs the checks and prints the verdict; a server that cannot be
/// reached or checked is an error (exit status 1).
pub(crate) async fn run(args: CheckArgs) -> Result<ExitCode, Failure> {
    let config = match args
        .servers
        .config(args.subscription.clone(), &args.cutover)
    {
        Ok(config) => config,
        Err(message) => {
            eprintln!("pgmigrator: {message}");
            return Ok(ExitCode::from(USAGE));
        }
    };
    let mut monitor = Monitor::connect(config).await?;
    let collector = Collector::new();
    let options = CheckOptions {
        counts: args.counts.options(),
        sequence_margin: args.sequence_margin,
        verify: args.verify.options(),
    };
    let report = monitor
        .check(&collector, &options, &mut progress_on_stderr())
        .await;
    collector.close().await;
    let report = report?;
    // The report's own text is printable already; the name is the server's.
    let mut verdict = format!(
        "Subscription: {}\n{}",
        printable_line(monitor.subscription(), 200),
        render_cutover(&report.cutover, report.cutover.checked_at)
    );
    if args.verify.verify {
        verdict.push_str(&verify_lines(&report));
    }
    if args.sequences_sql {
        eprint!("{verdict}");
        print(&sequences_sql(&report, args.sequence_margin))?;
    } else if args.json {
        // The verdict object, with what verifying found when asked.
        let mut value = serde_json::to_value(&report.cutover)?;
        if let (true, Some(object)) = (args.verify.verify, value.as_object_mut()) {
            object.insert(
                "verify".to_owned(),
                serde_json::to_value(&report.verification)?,
            );
        }
        let mut json = serde_json::to_string_pretty(&value)?;
        json.push('\n');
        print(&printable_json(json))?;
    } else {
        print(&verdict)?;
    }
    Ok(ExitCode::from(if report.cutover.ready {
        READY
    } else {
        NOT_READY
    }))
}

/// The `setval` statements, under a comment that says where to run them.
fn sequences_sql(report: &CheckReport, margin: i64) -> String {
    let fixes = &report.sequence_fixes;
    let mut sql = match fixes.len() {
        0 => "-- No sequence on the destination is behind the source.\n".to_owned(),
        n => format!(
            "-- Run on the destination: puts {n} sequence(s) {margin} past the source's value.\n\
             -- Names are E'' strings: the same under any standard_conforming_strings.\n"
        ),
    };
    for fix in fixes {
        if fix.clamped {
            sql.push_str(
                "-- Next: less than the margin, stopped at the sequence's MAXVALUE or MINVALUE.\n",
            );
        }
        sql.push_str(&fix.sql());
        sql.push('\n');
    }
    sql
}

/// `Verify: 3 tables, 2 verified, 1 mismatch; 1 chunk read twice`, then a
/// line per table that is not verified.
fn verify_lines(report: &CheckReport) -> String {
    let tables = &report.verification;
    let count = |status| tables.iter().filter(|t| t.status == status).count();
    let retried: u64 = tables.iter().map(|t| t.chunks_retried).sum();
    let mut text = format!(
        "Verify:       {} tables, {} verified, {} mismatch, {} unstable, {} unverifiable; \
         {retried} chunk(s) read more than once\n",
        tables.len(),
        count(VerifyStatus::Verified),
        count(VerifyStatus::Mismatch),
        count(VerifyStatus::Unstable),
        count(VerifyStatus::Unverifiable),
    );
    for table in tables.iter().filter(|t| t.status != VerifyStatus::Verified) {
        let name = printable_line(&table.table.to_string(), 200).into_owned();
        text.push_str(&format!(
            "  {} {name}: {} rows in {} chunks\n",
            table.status, table.rows, table.chunks
        ));
        for difference in &table.differences {
            text.push_str(&format!("    {} {}\n", difference.kind, difference.key));
        }
        let unnamed = table.mismatched_rows - table.differences.len() as u64;
        if unnamed > 0 {
            text.push_str(&format!("  … and {unnamed} more (--verify-max-rows)\n"));
        }
    }
    text
}

/// `counting rows: 12 of 40 tables` on stderr, at most once a second and
/// when done.
fn progress_on_stderr() -> impl FnMut(CountProgress) + Send {
    let mut last: Option<Instant> = None;
    move |CountProgress { done, total }| {
        let due = last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if due || done == total {
            eprintln!("counting rows: {done} of {total} tables counted on both servers");
            last = Some(Instant::now());
        }
    }
}
