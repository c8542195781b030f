//! `pgmigrator`: a thin command line over the library. Each command parses
//! its flags and makes one call; the library does the work.

mod args;
mod check;
mod fleet;
mod output;
mod serving;
mod serving_args;
mod signals;
mod status;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pgmigrator_metrics::alerts::{self, AlertsConfig};
use pgmigrator_metrics::app;
use pgmigrator_metrics::demo::{self, DemoOptions};
use pgmigrator_metrics::pg::{self, MonitorConfig};
use pgmigrator_metrics::printable::printable_line;
use pgmigrator_metrics::{Phase, StateFileMirror, default_state_path, tui};
use tracing_subscriber::filter::Targets;

use crate::args::{AlertsCommand, Cli, Command, DemoArgs, MonitorArgs, TuiArgs};
use crate::output::{one_line, say};
use crate::serving::{install_logging, live_collector, surfaces};
use crate::signals::{panics, shutdown_signal};

type Failure = Box<dyn Error + Send + Sync>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    panics::install();
    let result = match cli.command {
        Command::Status(args) if !args.watch => status::once(&args).map(|()| ExitCode::SUCCESS),
        command => runtime().and_then(|rt| rt.block_on(run(command, cli.log_level))),
    };
    if let Some(panic) = panics::message() {
        eprintln!(
            "pgmigrator: internal error, stopped: {}",
            printable_line(&panic, 500)
        );
        return ExitCode::from(101);
    }
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pgmigrator: {}", printable_line(&one_line(&*err), 2000));
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("starting the runtime: {err}").into())
}

async fn run(command: Command, log_filter: Targets) -> Result<ExitCode, Failure> {
    match command {
        Command::Demo(args) => demo_command(args, &log_filter).await,
        Command::Serve(args) => fleet::serve(args, &log_filter).await,
        Command::Status(args) => status::watch(&args).await,
        Command::Tui(args) => tui_command(args).await,
        Command::Monitor(args) => monitor_command(*args, &log_filter).await,
        Command::Check(args) => {
            install_logging(&log_filter, None, false)?;
            return check::run(*args).await;
        }
        Command::Alerts(AlertsCommand::Test { file }) => return alerts_test(&file).await,
    }
    .map(|()| ExitCode::SUCCESS)
}

async fn demo_command(args: DemoArgs, log_filter: &Targets) -> Result<(), Failure> {
    let state_file = state_path(args.state_file)?;
    let collector = live_collector(args.tui, &state_file, log_filter)?;
    let options = DemoOptions {
        tables: args.tables,
        speed: args.speed,
        ..DemoOptions::default()
    };
    if args.alerts.file.is_none() {
        // The default rules on show, with no one to tell.
        serving::start_alerts_with(
            AlertsConfig::shown_only(),
            collector.snapshots(),
            Some(collector.clone()),
            (alerts::saved_path(&state_file), None),
        )?;
    }
    let mut surfaces = surfaces(&args.http, &args.alerts, &collector, state_file, args.tui).await?;
    let source = single_source(&collector);
    let export = serving::start_otlp(&args.otlp, &mut surfaces.http, source, !args.tui)?;
    let ran = app::run(
        collector,
        surfaces,
        |collector, stop| demo::run(collector, options, stop),
        shutdown_signal(args.duration),
    )
    .await;
    serving::stop_otlp(export).await;
    ran?;
    stopped(args.tui);
    Ok(())
}

async fn monitor_command(args: MonitorArgs, log_filter: &Targets) -> Result<(), Failure> {
    let several =
        args.all_subscriptions || args.subscriptions.len() > 1 || args.state_dir.is_some();
    if several {
        return fleet::monitor_several(args, log_filter).await;
    }
    let state_file = state_path(args.state_file.clone())?;
    let collector = live_collector(args.tui, &state_file, log_filter)?;
    if args.verify.verify {
        serving::resume_verify(&collector, &state_file).await;
    }
    collector.set_phase(Phase::Connecting).await;
    let subscription = args.subscriptions.first().cloned();
    // Bad input fails here, before anything is served.
    let monitor = pg::Monitor::connect(monitor_config(&args, subscription)?).await?;
    let mut surfaces = surfaces(&args.http, &args.alerts, &collector, state_file, args.tui).await?;
    let source = single_source(&collector);
    let export = serving::start_otlp(&args.otlp, &mut surfaces.http, source, !args.tui)?;
    let ran = app::run(
        collector,
        surfaces,
        |collector, stop| pg::run(collector, monitor, stop),
        shutdown_signal(None),
    )
    .await;
    serving::stop_otlp(export).await;
    ran?;
    stopped(args.tui);
    Ok(())
}

/// What one migration's OTLP export pushes: its newest snapshot,
/// unlabelled, as its `/metrics` is.
fn single_source(collector: &pgmigrator_metrics::Collector) -> pgmigrator_metrics::otlp::Source {
    let snapshots = collector.snapshots();
    std::sync::Arc::new(move || vec![(None, snapshots.snapshot())])
}

/// The monitor's settings for one subscription.
pub(crate) fn monitor_config(
    args: &MonitorArgs,
    subscription: Option<String>,
) -> Result<MonitorConfig, Failure> {
    let mut config = MonitorConfig {
        interval: args.interval,
        check_interval: args.check_interval,
        counts: args.counts.options(),
        verify: args.verify.options(),
        ..args.servers.config(subscription, &args.cutover)?
    };
    config.cutover.error_window = args.cutover_error_window;
    Ok(config)
}

async fn tui_command(args: TuiArgs) -> Result<(), Failure> {
    let shown = match args.api_addr {
        Some(api) => {
            let token = args.token.filter(|t| !t.is_empty());
            // A server with several migrations opens on their list; one
            // that does not answer within 2 s is followed as a single one
            // (its screen says it is reconnecting).
            let mut fleet = tui::Fleet::remote(&api, token.clone(), args.ca_cert.as_deref())?;
            let listed = tokio::time::timeout(Duration::from_secs(2), fleet.migrations.changed());
            if matches!(listed.await, Ok(Ok(()))) && fleet.migrations.borrow().len() > 1 {
                tui::run_fleet(fleet, shutdown_signal(None)).await
            } else {
                let feed = match &args.ca_cert {
                    Some(ca) => tui::Feed::remote_trusting(&api, token, ca)?,
                    None => tui::Feed::remote(&api, token)?,
                };
                tui::run(feed, shutdown_signal(None)).await
            }
        }
        None => {
            let mirror = StateFileMirror::start(state_path(args.state_file)?);
            tui::run(tui::Feed::local(mirror), shutdown_signal(None)).await
        }
    };
    shown.map_err(|err| format!("terminal: {err}"))?;
    Ok(())
}

/// One test notification to every notifier, each outcome on its own line.
async fn alerts_test(file: &std::path::Path) -> Result<ExitCode, Failure> {
    let config = alerts::AlertsConfig::load(file)?;
    if config.notifiers.is_empty() {
        return Err(format!("{}: no [[notifier]] to test", file.display()).into());
    }
    let outcomes = alerts::Dispatcher::test_each(&config, &alerts::Message::test(&config)).await;
    let mut failed = false;
    for (notifier, outcome) in outcomes {
        match outcome {
            Ok(()) => say(&format!("{notifier}: delivered")),
            Err(reason) => {
                failed = true;
                say(&format!("{notifier}: failed: {reason}"));
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn state_path(arg: Option<PathBuf>) -> Result<PathBuf, Failure> {
    match arg {
        Some(path) => Ok(path),
        None => Ok(default_state_path()?),
    }
}

pub(crate) fn stopped(tui: bool) {
    if !tui {
        say("Stopped; the final state is in the state file.");
    }
}
