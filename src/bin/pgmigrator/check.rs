//! `pgmigrator check`: the cutover checks, once, as a verdict and an exit
//! status for runbooks and CI gates.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use pgmigrator_metrics::Collector;
use pgmigrator_metrics::pg::{
    CheckOptions, CheckProgress, CheckReport, CountProgress, Monitor, VerifyOptions,
};
use pgmigrator_metrics::printable::{printable_json, printable_line};
use pgmigrator_metrics::status::{render_cutover, render_verify};
use pgmigrator_metrics::{VerifyProgress, units};

use crate::Failure;
use crate::args::{CheckArgs, parse_duration_within};
use crate::output::print;

/// Exit status: it is safe to switch over.
const READY: u8 = 0;
/// Exit status: the bad usage of a flag or connection string.
const USAGE: u8 = 2;
/// Exit status: the checks ran and something blocks the cutover.
const NOT_READY: u8 = 3;

/// Data verification, for `check` and `monitor`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Also verify the rows of every subscribed table: chunk by chunk of
    /// its key, a digest of the rows on each server, and the keys of the
    /// rows that differ (data_mismatch). Read-only, under live writes;
    /// `monitor` verifies each table once it streams, and again every
    /// --verify-interval.
    #[arg(long)]
    pub(crate) verify: bool,
    /// Rows per chunk, from 100 to 1000000 [default: sized so a chunk
    /// takes --verify-chunk-time]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(100..=1_000_000))]
    pub(crate) verify_chunk_rows: Option<u32>,
    /// The time one chunk should take on the source, from 10ms to 1m.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_chunk_time)]
    pub(crate) verify_chunk_time: Duration,
    /// Reads again of rows that differ before they count, from 0 to 10.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub(crate) verify_retries: u32,
    /// Differing keys named per table, from 1 to 10000.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub(crate) verify_max_rows: u16,
    /// Show a short hash of each differing key instead of the key.
    #[arg(long)]
    pub(crate) verify_hide_keys: bool,
    /// Megabytes of table a second read on the source, at most; 0 reads as
    /// fast as the servers answer.
    #[arg(long, value_name = "MB_PER_SEC", default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub(crate) verify_max_rate: u32,
    /// Pause verifying while the replication lag is above this (e.g.
    /// 64MiB); 0 never pauses.
    #[arg(long, value_name = "BYTES", default_value = "64MiB", value_parser = units::parse_bytes)]
    pub(crate) verify_pause_lag: u64,
    /// Connections verifying on each server, from 1 to 16.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub(crate) verify_concurrency: u8,
    /// `monitor`: verify a table again once its last verification is this
    /// old, from 1m to 30 days.
    #[arg(long, value_name = "DURATION", default_value = "6h", value_parser = parse_verify_interval)]
    pub(crate) verify_interval: Duration,
}

impl VerifyArgs {
    pub(crate) fn options(&self) -> Option<VerifyOptions> {
        self.verify.then(|| VerifyOptions {
            chunk_rows: self.verify_chunk_rows,
            chunk_time: self.verify_chunk_time,
            retries: self.verify_retries,
            max_rows: usize::from(self.verify_max_rows),
            hide_keys: self.verify_hide_keys,
            max_rate: (self.verify_max_rate > 0)
                .then(|| u64::from(self.verify_max_rate) * 1_000_000),
            pause_lag: self.verify_pause_lag,
            concurrency: usize::from(self.verify_concurrency),
            interval: self.verify_interval,
            ..VerifyOptions::default()
        })
    }
}

fn parse_chunk_time(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, Duration::from_millis(10), Duration::from_secs(60))
}

fn parse_verify_interval(text: &str) -> Result<Duration, String> {
    parse_duration_within(
        text,
        Duration::from_secs(60),
        Duration::from_secs(30 * 86_400),
    )
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
    if let Some(verification) = &report.verification {
        verdict.push_str(&render_verify(verification));
    }
    if args.sequences_sql {
        eprint!("{verdict}");
        print(&sequences_sql(&report, args.sequence_margin))?;
    } else if args.json {
        // The verdict object, with what verifying found when asked.
        let mut value = serde_json::to_value(&report.cutover)?;
        if let (Some(verification), Some(object)) = (&report.verification, value.as_object_mut()) {
            object.insert("verify".to_owned(), serde_json::to_value(verification)?);
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

/// `counting rows: 12 of 40 tables` or `verifying rows: 3 of 40 tables,
/// 1.20 GiB of 4.00 GiB` on stderr, at most once a second and when done.
fn progress_on_stderr() -> impl FnMut(CheckProgress<'_>) + Send {
    let mut last: Option<Instant> = None;
    move |progress| {
        let (line, done) = match progress {
            CheckProgress::Counts(CountProgress { done, total }) => (
                format!("counting rows: {done} of {total} tables counted on both servers"),
                done == total,
            ),
            CheckProgress::Verify(verify) => (verifying_line(verify), verify.finished_at.is_some()),
            _ => return,
        };
        if done || last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            eprintln!("{line}");
            last = Some(Instant::now());
        }
    }
}

fn verifying_line(verify: &VerifyProgress) -> String {
    let done = verify.tables.iter().filter(|t| t.status.is_done()).count();
    format!(
        "verifying rows: {done} of {} tables, {} of {}",
        verify.tables_total,
        units::format_bytes(verify.bytes_verified),
        units::format_bytes(verify.bytes_total)
    )
}
