//! What a serving command sets up: its logging, its listener and the
//! surfaces of a live job.

use std::path::{Path, PathBuf};

use pgmigrator_metrics::alerts::{self, AlertsConfig, Dispatcher, RetryPolicy};
use pgmigrator_metrics::app::Surfaces;
use pgmigrator_metrics::http::{self, HttpConfig};
use pgmigrator_metrics::otlp::{Export, Otlp, Source};
use pgmigrator_metrics::{Collector, Snapshots, StderrLayer};
use tokio::net::TcpListener;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

use crate::Failure;
use crate::output::say;
use crate::serving_args::{AlertArgs, HttpArgs, OtlpArgs};

/// A collector whose log ring also receives this process's `tracing` events
/// (see [`install_logging`]). The history kept beside `state_file` by an
/// earlier run goes on.
pub(crate) fn live_collector(
    tui: bool,
    state_file: &Path,
    log_filter: &Targets,
) -> Result<Collector, Failure> {
    let collector = resumed_collector(state_file);
    install_logging(log_filter, Some(&collector), tui)?;
    Ok(collector)
}

/// A collector that goes on with the history kept beside `state_file` by
/// an earlier run (a history that cannot be read is a warning).
pub(crate) fn resumed_collector(state_file: &Path) -> Collector {
    let history_path = pgmigrator_metrics::companion_path(state_file, "history");
    let history = match pgmigrator_metrics::read_history_file(&history_path) {
        Ok(history) => Some(history),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            crate::output::warn(&format!(
                "{}: {err}; the history starts afresh",
                history_path.display()
            ));
            None
        }
    };
    Collector::builder()
        .resume_history(history.unwrap_or_default())
        .build()
}

/// Carries the verification recorded in `state_file` by an earlier run
/// over into `collector`, so `monitor --verify` goes on from it instead of
/// verifying again what it verified lately.
pub(crate) async fn resume_verify(collector: &Collector, state_file: &Path) {
    let previous = pgmigrator_metrics::read_state_file(state_file).ok();
    if let Some(verify) = previous.and_then(|snapshot| snapshot.verify) {
        collector.record_verify(verify).await;
        collector.flush().await;
    }
}

/// Where this process's own `tracing` events go: into `collector`'s log
/// ring when there is one, and on stderr through `filter` (`--log-level`)
/// unless the terminal dashboard owns the screen.
pub(crate) fn install_logging(
    filter: &Targets,
    collector: Option<&Collector>,
    tui: bool,
) -> Result<(), Failure> {
    tracing::subscriber::set_global_default(logging(filter, collector, tui))?;
    Ok(())
}

/// The subscriber [`install_logging`] installs; also one migration's own,
/// when one process follows several (each job's events reach its own log).
pub(crate) fn logging(
    filter: &Targets,
    collector: Option<&Collector>,
    tui: bool,
) -> impl tracing::Subscriber + Send + Sync + 'static {
    let stderr = (!tui).then(|| {
        StderrLayer::default()
            .with_max_level(tracing::Level::TRACE)
            .with_filter(filter.clone())
    });
    tracing_subscriber::registry()
        .with(collector.map(Collector::tracing_layer))
        .with(stderr)
}

/// Where a live job is shown: the listener bound, the state file chosen,
/// and alerts on the collector's snapshots when `--alerts` asks.
pub(crate) async fn surfaces(
    http: &HttpArgs,
    alerting: &AlertArgs,
    collector: &Collector,
    state_file: PathBuf,
    tui: bool,
) -> Result<Surfaces, Failure> {
    start_alerts(
        alerting.file.as_deref(),
        collector.snapshots(),
        Some(collector.clone()),
        (alerts::saved_path(&state_file), None),
    )?;
    let (listener, config) = listen(http, !tui).await?;
    if !tui {
        say(&format!("State file: {}", state_file.display()));
    }
    Ok(Surfaces {
        listener,
        http: config,
        state_file,
        tui,
    })
}

/// With `--otlp-endpoint` or the OTEL_* variables: pushes what `source`
/// gives (a mistake in the settings stops the command here), and says
/// where when `announce`.
pub(crate) fn start_otlp(
    args: &OtlpArgs,
    http: &mut HttpConfig,
    source: Source,
    announce: bool,
) -> Result<Option<Export>, Failure> {
    let Some(otlp) = Otlp::from_env(args.endpoint.as_deref(), args.ca_cert.as_deref())? else {
        return Ok(None);
    };
    if announce {
        say(&format!("OTLP export: {}", otlp.endpoint()));
    }
    let export = otlp.metrics_tables(http.metrics_tables).spawn(source);
    http.counters.push(export.failure_counter());
    Ok(Some(export))
}

/// Stops `export`, if any, after its last push.
pub(crate) async fn stop_otlp(export: Option<Export>) {
    if let Some(export) = export {
        export.stop().await;
    }
}

/// Binds the listener after checking the address is safe to serve on, and
/// prints its URL when `announce`.
pub(crate) async fn listen(
    args: &HttpArgs,
    announce: bool,
) -> Result<(TcpListener, HttpConfig), Failure> {
    let config = args.config()?;
    http::check_listen_address(args.listen, &config)?;
    if let Some(tls) = &config.tls {
        tls.check()?;
    } else if !args.listen.ip().is_loopback() {
        tracing::warn!(
            "serving plain HTTP on {}: the token crosses the network in clear; \
             pass --tls-cert and --tls-key",
            args.listen
        );
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", args.listen))?;
    let addr = listener.local_addr()?;
    if announce {
        let query = if config.token.is_some() {
            "?token=…"
        } else {
            ""
        };
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        say(&format!("Dashboard: {scheme}://{addr}/{query}"));
    }
    Ok((listener, config))
}

/// With `--alerts`: checks the file (a mistake stops the command here, with
/// the line named) and evaluates its rules on every snapshot of
/// `snapshots`, recording the alerts into `record` when there is one. The
/// firing alerts are kept in `saved`. One of several migrations is named
/// `NAME/id` in notifications (`NAME`: the file's `migration`).
pub(crate) fn start_alerts(
    file: Option<&Path>,
    snapshots: Snapshots,
    record: Option<Collector>,
    (saved, one_of_several): (PathBuf, Option<&str>),
) -> Result<Option<tokio::task::JoinHandle<()>>, Failure> {
    let Some(file) = file else {
        return Ok(None);
    };
    start_alerts_with(
        AlertsConfig::load(file)?,
        snapshots,
        record,
        (saved, one_of_several),
    )
}

/// Alerts of `config` on `snapshots`, as [`start_alerts`].
pub(crate) fn start_alerts_with(
    mut config: AlertsConfig,
    snapshots: Snapshots,
    record: Option<Collector>,
    (saved, one_of_several): (PathBuf, Option<&str>),
) -> Result<Option<tokio::task::JoinHandle<()>>, Failure> {
    if let Some(id) = one_of_several {
        config.migration = format!("{}/{id}", config.migration);
    }
    let dispatcher = Dispatcher::start(&config, RetryPolicy::default())?;
    Ok(Some(tokio::spawn(alerts::run(
        snapshots,
        record,
        config,
        dispatcher,
        Some(saved),
    ))))
}
