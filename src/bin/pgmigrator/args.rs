//! The command line: every command, flag and the checks on their values.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::serving_args::{AlertArgs, HttpArgs, OtlpArgs};
use pgmigrator_metrics::cutover::CutoverLimits;
use pgmigrator_metrics::http::TOKEN_ENV;
use pgmigrator_metrics::pg::{ConnInfo, CountOptions, DEFAULT_SEQUENCE_MARGIN, MonitorConfig};
use pgmigrator_metrics::units;
use tracing_subscriber::filter::Targets;

#[derive(Debug, Parser)]
#[command(name = "pgmigrator", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// What this process logs on stderr: a level (off, error, warn, info,
    /// debug, trace) or directives such as `warn,pgmigrator_metrics=debug`.
    /// Under the terminal dashboard nothing is printed: its log panel shows
    /// the events.
    #[arg(
        long,
        global = true,
        value_name = "FILTER",
        env = "RUST_LOG",
        default_value = "warn",
        value_parser = parse_log_filter
    )]
    pub(crate) log_level: Targets,
}

/// A level or `target=level` directives, separated by commas. A word
/// alone must be a level: `RUST_LOG`'s bare target (all its levels) would
/// turn a misspelt level into a filter that prints nothing.
fn parse_log_filter(text: &str) -> Result<Targets, String> {
    let hint = "a level such as warn or debug, or directives such as warn,hyper=info";
    for part in text.split(',').filter(|p| !p.contains('=')) {
        part.trim()
            .parse::<tracing_subscriber::filter::LevelFilter>()
            .map_err(|_| format!("{part:?} is not a level ({hint})"))?;
    }
    text.parse::<Targets>()
        .map_err(|err| format!("{err} ({hint})"))
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a simulated migration and serve its dashboard, API and metrics.
    Demo(DemoArgs),
    /// Serve the dashboard, API and metrics of a pipeline running in another
    /// process, from its state file.
    Serve(ServeArgs),
    /// Show the migration's state from its state file; works after the
    /// pipeline has stopped.
    Status(StatusArgs),
    /// The terminal dashboard: follow a running server, or a state file.
    Tui(TuiArgs),
    /// Follow a native PostgreSQL logical-replication migration (a
    /// publication and a subscription) and serve it like demo.
    Monitor(Box<MonitorArgs>),
    /// Check once whether it is safe to switch over now; exit status 0
    /// ready, 3 not ready, 1 cannot check, 2 usage.
    Check(Box<CheckArgs>),
    /// Alerting tools.
    #[command(subcommand)]
    Alerts(AlertsCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum AlertsCommand {
    /// Send one test notification to every notifier of the alerts file and
    /// say how each went (exit 1 if any failed).
    Test {
        /// The alerts file.
        #[arg(long = "alerts", value_name = "PATH", env = "PGMIGRATOR_ALERTS")]
        file: PathBuf,
    },
}

/// The two servers and the subscription, for `monitor` and `check`.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// The source (publisher): a postgres:// URI or libpq key=value pairs,
    /// with sslmode and friends; PG* variables and ~/.pgpass fill what it
    /// leaves out (e.g. postgres://monitor@source:5432/shop?sslmode=verify-full)
    #[arg(
        long,
        value_name = "URI",
        env = "PGMIGRATOR_SOURCE",
        hide_env_values = true
    )]
    pub(crate) source: String,
    /// The destination (subscriber), in the same forms.
    #[arg(
        long,
        value_name = "URI",
        env = "PGMIGRATOR_DEST",
        hide_env_values = true
    )]
    pub(crate) dest: String,
}

impl ServerArgs {
    /// The monitor's settings for these servers. libpq's environment and
    /// password file fill what the strings leave out, so no password needs
    /// to be on the command line.
    pub(crate) fn config(
        &self,
        subscription: Option<String>,
        cutover: &CutoverArgs,
    ) -> Result<MonitorConfig, String> {
        let parse = |which: &str, text: &str| {
            text.parse::<ConnInfo>()
                .and_then(ConnInfo::with_libpq_environment)
                .map_err(|err| format!("--{which}: {err}"))
        };
        Ok(MonitorConfig {
            subscription,
            cutover: cutover.limits(),
            ..MonitorConfig::new(parse("source", &self.source)?, parse("dest", &self.dest)?)
        })
    }
}

/// What the cutover verdict tolerates.
#[derive(Debug, Args)]
pub(crate) struct CutoverArgs {
    /// Most WAL not yet applied for a ready verdict (e.g. 0, 16MB, 1GiB).
    #[arg(long, value_name = "BYTES", default_value = "0", value_parser = units::parse_bytes)]
    pub(crate) cutover_max_lag: u64,
    /// Most time lag for a ready verdict, in seconds.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_lag_seconds)]
    pub(crate) cutover_max_lag_seconds: f64,
}

impl CutoverArgs {
    pub(crate) fn limits(&self) -> CutoverLimits {
        CutoverLimits {
            max_lag_bytes: self.cutover_max_lag,
            max_lag_seconds: self.cutover_max_lag_seconds,
            ..CutoverLimits::default()
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,
    #[command(flatten)]
    pub(crate) alerts: AlertArgs,
    #[command(flatten)]
    pub(crate) otlp: OtlpArgs,
    #[command(flatten)]
    pub(crate) servers: ServerArgs,
    /// The subscription to follow; repeat it to follow several, each a
    /// migration of its own [default: the destination database's only one]
    #[arg(long = "subscription", value_name = "NAME")]
    pub(crate) subscriptions: Vec<String>,
    /// Follow every subscription of the destination's database, each a
    /// migration of its own.
    #[arg(long, conflicts_with = "subscriptions")]
    pub(crate) all_subscriptions: bool,
    #[command(flatten)]
    pub(crate) cutover: CutoverArgs,
    #[command(flatten)]
    pub(crate) counts: CountArgs,
    #[command(flatten)]
    pub(crate) verify: crate::check::VerifyArgs,
    /// An apply or sync error the monitor saw this recently blocks the
    /// cutover, from 1s to 7 days.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_error_window)]
    pub(crate) cutover_error_window: Duration,
    /// Time between polls, from 10ms to 1h (e.g. 1s, 500ms).
    #[arg(long, value_parser = parse_interval, default_value = "1s")]
    pub(crate) interval: Duration,
    /// Time between readings of the catalogs for the cutover checks
    /// (publications, replica identity, columns, sequences), from 10ms to 1h.
    #[arg(long, value_parser = parse_interval, default_value = "30s")]
    pub(crate) check_interval: Duration,
    /// The state file of a single subscription [default: $PGMIGRATOR_HOME/state.json,
    /// else ~/.pgmigrator/state.json]
    #[arg(long, value_name = "PATH", conflicts_with_all = ["state_dir", "all_subscriptions"])]
    pub(crate) state_file: Option<PathBuf>,
    /// Where each subscription keeps its state, as DIR/NAME/state.json,
    /// when several are followed (`serve --state-dir DIR` serves them all)
    /// [default: $PGMIGRATOR_HOME, else ~/.pgmigrator]
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: Option<PathBuf>,
    /// Show the terminal dashboard in the foreground (q quits).
    #[arg(long)]
    pub(crate) tui: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) servers: ServerArgs,
    /// The subscription [default: the destination database's only one]
    #[arg(long, value_name = "NAME")]
    pub(crate) subscription: Option<String>,
    #[command(flatten)]
    pub(crate) cutover: CutoverArgs,
    #[command(flatten)]
    pub(crate) counts: CountArgs,
    #[command(flatten)]
    pub(crate) verify: crate::check::VerifyArgs,
    /// Print the verdict as JSON.
    #[arg(long, conflicts_with = "sequences_sql")]
    pub(crate) json: bool,
    /// Print only the SQL that puts the destination's sequences ahead of
    /// the source's, to run on the destination (the verdict goes to
    /// stderr); nothing is written by pgmigrator.
    #[arg(long)]
    pub(crate) sequences_sql: bool,
    /// What --sequences-sql adds to the source's value, from 0 to 1000000000.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEQUENCE_MARGIN,
          value_parser = clap::value_parser!(i64).range(0..=1_000_000_000))]
    pub(crate) sequence_margin: i64,
}

/// Row counts, for `check` and `monitor`.
#[derive(Debug, Args)]
pub(crate) struct CountArgs {
    /// Also compare exact row counts (count(*)) of every subscribed table
    /// (monitor: in the background, every --check-interval); they agree
    /// only once writes to the source have stopped.
    #[arg(long)]
    pub(crate) counts: bool,
    /// Tables counted at once on each server, from 1 to 64.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) count_concurrency: u16,
    /// The longest one table's count may take (statement_timeout), from
    /// 1s to 24h.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_count_timeout)]
    pub(crate) count_timeout: Duration,
}

impl CountArgs {
    pub(crate) fn options(&self) -> Option<CountOptions> {
        self.counts.then(|| CountOptions {
            concurrency: usize::from(self.count_concurrency),
            statement_timeout: self.count_timeout,
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct TuiArgs {
    /// A running pgmigrator server to follow over its WebSocket, e.g. http://127.0.0.1:7654
    #[arg(long, value_name = "URL", conflicts_with = "state_file")]
    pub(crate) api_addr: Option<String>,
    /// The server's token.
    #[arg(long, env = TOKEN_ENV, hide_env_values = true, requires = "api_addr")]
    pub(crate) token: Option<String>,
    /// For an https:// server: trust this CA certificate (PEM) instead of
    /// the system's roots.
    #[arg(long, value_name = "PATH", requires = "api_addr")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// A state file to follow instead [default: $PGMIGRATOR_HOME/state.json, else ~/.pgmigrator/state.json]
    #[arg(long, value_name = "PATH")]
    pub(crate) state_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,
    #[command(flatten)]
    pub(crate) alerts: AlertArgs,
    #[command(flatten)]
    pub(crate) otlp: OtlpArgs,
    /// The state file [default: $PGMIGRATOR_HOME/state.json, else ~/.pgmigrator/state.json]
    #[arg(long, value_name = "PATH")]
    pub(crate) state_file: Option<PathBuf>,
    /// Speed of the simulation, from 0.001 to 1000: 2 runs twice as fast.
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
    pub(crate) speed: f64,
    /// Number of tables to copy, from 1 to 100000.
    #[arg(long, default_value_t = 24, value_parser = parse_tables)]
    pub(crate) tables: usize,
    /// Stop by itself after this long, up to a year (e.g. 30s, 5m, 1h30m);
    /// runs until Ctrl-C otherwise.
    #[arg(long, value_parser = parse_run_time)]
    pub(crate) duration: Option<Duration>,
    /// Show the terminal dashboard in the foreground (q quits).
    #[arg(long)]
    pub(crate) tui: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) http: HttpArgs,
    #[command(flatten)]
    pub(crate) alerts: AlertArgs,
    #[command(flatten)]
    pub(crate) otlp: OtlpArgs,
    /// The state file to follow; repeat it to serve several migrations,
    /// each under /api/v1/migrations/ID (ID: the file's name, or its
    /// directory's for a state.json) [default: $PGMIGRATOR_HOME/state.json,
    /// else ~/.pgmigrator/state.json]
    #[arg(long = "state-file", value_name = "PATH")]
    pub(crate) state_files: Vec<PathBuf>,
    /// A directory whose folders each hold a migration's state.json
    /// (DIR/shop/state.json is migration shop), watched for migrations that
    /// start later; may be repeated, and mixed with --state-file.
    #[arg(long = "state-dir", value_name = "DIR")]
    pub(crate) state_dirs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The state file [default: $PGMIGRATOR_HOME/state.json, else ~/.pgmigrator/state.json]
    #[arg(long, value_name = "PATH")]
    pub(crate) state_file: Option<PathBuf>,
    /// Print the whole snapshot as JSON instead of the report.
    #[arg(long, conflicts_with = "watch")]
    pub(crate) json: bool,
    /// Redraw every second until Ctrl-C (or the reader of a pipe goes).
    #[arg(long)]
    pub(crate) watch: bool,
    /// Also print the newest N log lines kept beside the state file
    /// (20 without N).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "20",
          conflicts_with = "json")]
    pub(crate) logs: Option<usize>,
}

/// A duration in the one grammar of `units::parse_duration` (`30s`, `5m`,
/// `1h30m`, `1.5s`, `500ms`, or plain seconds), within `min..=max`.
pub(crate) fn parse_duration_within(
    text: &str,
    min: Duration,
    max: Duration,
) -> Result<Duration, String> {
    let duration = units::parse_duration(text)?;
    if duration < min || duration > max {
        return Err(format!(
            "must be from {} to {}",
            units::format_duration(min),
            units::format_duration(max)
        ));
    }
    Ok(duration)
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, Duration::from_millis(10), Duration::from_secs(3600))
}

fn parse_run_time(text: &str) -> Result<Duration, String> {
    parse_duration_within(
        text,
        Duration::from_millis(1),
        Duration::from_secs(365 * 86_400),
    )
}

fn parse_error_window(text: &str) -> Result<Duration, String> {
    parse_duration_within(
        text,
        Duration::from_secs(1),
        Duration::from_secs(7 * 86_400),
    )
}

fn parse_count_timeout(text: &str) -> Result<Duration, String> {
    parse_duration_within(text, Duration::from_secs(1), Duration::from_secs(86_400))
}

fn parse_lag_seconds(text: &str) -> Result<f64, String> {
    parse_duration_within(text, Duration::ZERO, Duration::from_secs(86_400))
        .map(|d| d.as_secs_f64())
}

fn parse_speed(text: &str) -> Result<f64, String> {
    let speed: f64 = text.trim().parse().map_err(|_| "not a number".to_owned())?;
    if (0.001..=1000.0).contains(&speed) {
        Ok(speed)
    } else {
        Err("must be from 0.001 to 1000".to_owned())
    }
}

fn parse_tables(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n @ 1..=100_000) => Ok(n),
        _ => Err("must be a whole number from 1 to 100000".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_flags_refuse_zero_overflow_and_nonsense() {
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_run_time("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in [
            "0",
            "0s",
            "1ms",
            "2h",
            "-1s",
            "NaNs",
            "",
            "99999999999999999999999h",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        for bad in ["0", "366days", "1e400", "x"] {
            assert!(parse_run_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lag_seconds_are_finite_and_within_a_day() {
        assert_eq!(parse_lag_seconds("0.5"), Ok(0.5));
        for bad in ["-1", "NaN", "inf", "1e9"] {
            assert!(parse_lag_seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn number_flags_refuse_zero_negative_nan_and_overflow() {
        assert_eq!(parse_speed("2"), Ok(2.0));
        for bad in ["0", "-1", "NaN", "inf", "1e-300", "1e300", ""] {
            assert!(parse_speed(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_tables("24"), Ok(24));
        for bad in ["0", "-3", "100001", "18446744073709551616", "2.5"] {
            assert!(parse_tables(bad).is_err(), "{bad}");
        }
    }
}
