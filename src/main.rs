//! `pgmigrator`: a thin command line over the library.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pgmigrator_metrics::demo::{self, DemoOptions};
use pgmigrator_metrics::http::{self, DEFAULT_LISTEN, HttpConfig, TOKEN_ENV};
use pgmigrator_metrics::pg::{self, MonitorConfig};
use pgmigrator_metrics::printable::{printable, printable_json, printable_line};
use pgmigrator_metrics::{
    Collector, Phase, StateFileMirror, StatePersister, StderrLayer, default_state_path,
    read_state_file, status, tui,
};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tracing_subscriber::layer::SubscriberExt;

/// Observe a pgmigrator PostgreSQL online migration.
#[derive(Debug, Parser)]
#[command(name = "pgmigrator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    Monitor(MonitorArgs),
}

#[derive(Debug, Args)]
struct MonitorArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// Connection URI of the source (publisher), e.g. postgres://monitor:…@source:5432/shop
    #[arg(
        long,
        value_name = "URI",
        env = "PGMIGRATOR_SOURCE",
        hide_env_values = true
    )]
    source: String,
    /// Connection URI of the destination (subscriber).
    #[arg(
        long,
        value_name = "URI",
        env = "PGMIGRATOR_DEST",
        hide_env_values = true
    )]
    dest: String,
    /// The subscription [default: the destination database's only one]
    #[arg(long, value_name = "NAME")]
    subscription: Option<String>,
    /// Time between polls, from 10ms to 1h (e.g. 1s, 500ms).
    #[arg(long, value_parser = parse_interval, default_value = "1s")]
    interval: Duration,
    /// The state file [default: $PGMIGRATOR_HOME/state.json, else ~/.pgmigrator/state.json]
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    /// Show the terminal dashboard in the foreground (q quits).
    #[arg(long)]
    tui: bool,
}

#[derive(Debug, Args)]
struct TuiArgs {
    /// A running pgmigrator server to follow over its WebSocket, e.g. http://127.0.0.1:7654
    #[arg(long, value_name = "URL", conflicts_with = "state_file")]
    api_addr: Option<String>,
    /// The server's token.
    #[arg(long, env = TOKEN_ENV, hide_env_values = true, requires = "api_addr")]
    token: Option<String>,
    /// A state file to follow instead [default: $PGMIGRATOR_HOME/state.json, else ~/.pgmigrator/state.json]
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct HttpArgs {
    /// Address to listen on; a non-loopback address needs a token.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Token required by the API, the dashboard and the metrics (16
    /// characters at least on a non-loopback address).
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    /// Read the token from this file instead, so it is not in the process
    /// list (a trailing newline is ignored).
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Another origin allowed to open the WebSocket (repeatable); its host
    /// name is also allowed in the Host header.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// A host name the server may be reached under besides IP addresses
    /// and localhost (repeatable), e.g. its DNS name behind a proxy.
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// The state file [default: $PGMIGRATOR_HOME/state.json, else ~/.pgmigrator/state.json]
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    /// Speed of the simulation, from 0.001 to 1000: 2 runs twice as fast.
    #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
    speed: f64,
    /// Number of tables to copy, from 1 to 100000.
    #[arg(long, default_value_t = 24, value_parser = parse_tables)]
    tables: usize,
    /// Stop by itself after this long, up to a year (e.g. 30s, 5m, 1h30m);
    /// runs until Ctrl-C otherwise.
    #[arg(long, value_parser = parse_run_time)]
    duration: Option<Duration>,
    /// Show the terminal dashboard in the foreground (q quits).
    #[arg(long)]
    tui: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// The state file to follow [default: $PGMIGRATOR_HOME/state.json, else ~/.pgmigrator/state.json]
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The state file [default: $PGMIGRATOR_HOME/state.json, else ~/.pgmigrator/state.json]
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    /// Print the whole snapshot as JSON instead of the report.
    #[arg(long, conflicts_with = "watch")]
    json: bool,
    /// Redraw every second until Ctrl-C (or the reader of a pipe goes).
    #[arg(long)]
    watch: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    panics::install();
    let result = match cli.command {
        Command::Status(args) if !args.watch => status_once(&args),
        command => runtime().and_then(|rt| rt.block_on(run(command))),
    };
    if let Some(panic) = panics::message() {
        eprintln!(
            "pgmigrator: internal error, stopped: {}",
            printable_line(&panic, 500)
        );
        return ExitCode::from(101);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pgmigrator: {}", printable_line(&message, 2000));
            ExitCode::FAILURE
        }
    }
}

/// A panic in any task stops the process, as a panic on the main thread
/// would: the hook records it and every command's stop signal fires, so
/// the state file still gets its final write and the exit status says
/// something went wrong, instead of a live-looking process that serves a
/// frozen state.
mod panics {
    use std::sync::LazyLock;

    use tokio::sync::watch;

    static PANICKED: LazyLock<watch::Sender<Option<String>>> =
        LazyLock::new(|| watch::channel(None).0);

    /// Chains a hook that records the first panic after the default one
    /// (which prints it).
    pub(crate) fn install() {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a task panicked".to_owned());
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            PANICKED.send_if_modified(|first| {
                first.is_none() && first.replace(format!("{message}{location}")).is_none()
            });
        }));
    }

    /// The first panic's message, if any task panicked.
    pub(crate) fn message() -> Option<String> {
        PANICKED.borrow().clone()
    }

    /// Completes once any task has panicked.
    pub(crate) async fn occurred() {
        let mut panicked = PANICKED.subscribe();
        let _ = panicked.wait_for(Option::is_some).await;
    }

    #[cfg(test)]
    mod tests {
        use std::time::Duration;

        #[tokio::test]
        async fn a_panicking_task_fires_the_stop_signal_with_its_message() {
            super::install();
            let waiting = tokio::spawn(super::occurred());
            let _ = tokio::spawn(async { panic!("boom in a background task") }).await;
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .expect("the signal fires")
                .unwrap();
            let message = super::message().unwrap();
            assert!(
                message.starts_with("boom in a background task at src/main.rs:"),
                "{message}"
            );
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("starting the runtime: {err}"))
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Demo(args) => demo_command(args).await,
        Command::Serve(args) => serve_command(args).await,
        Command::Status(args) => status_watch(&args).await,
        Command::Tui(args) => tui_command(args).await,
        Command::Monitor(args) => monitor_command(args).await,
    }
}

fn state_path(arg: Option<PathBuf>) -> Result<PathBuf, String> {
    match arg {
        Some(path) => Ok(path),
        None => default_state_path().map_err(|err| err.to_string()),
    }
}

/// Binds the listener after checking the address is safe to serve on, and
/// prints its URL when `announce`.
async fn listen(args: &HttpArgs, announce: bool) -> Result<(TcpListener, HttpConfig), String> {
    let token = match &args.token_file {
        Some(path) => Some(read_token_file(path)?),
        None => args.token.clone().filter(|t| !t.is_empty()),
    };
    let config = HttpConfig {
        token,
        allowed_origins: args.allow_origins.clone(),
        allowed_hosts: args.allow_hosts.clone(),
        ..HttpConfig::default()
    }
    .within_fd_limit();
    http::check_listen_address(args.listen, &config).map_err(|err| err.to_string())?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", args.listen))?;
    let addr = listener.local_addr().map_err(|err| err.to_string())?;
    if announce {
        let query = if config.token.is_some() {
            "?token=…"
        } else {
            ""
        };
        say(&format!("Dashboard: http://{addr}/{query}"));
    }
    Ok((listener, config))
}

/// The token in `path`: a regular file of at most 4 KiB, trailing white
/// space ignored.
fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|err| format!("--token-file {shown}: {err}"))?;
    let is_file = file.metadata().is_ok_and(|m| m.is_file());
    if !is_file {
        return Err(format!("--token-file {shown}: not a regular file"));
    }
    let mut text = String::new();
    file.take(4097)
        .read_to_string(&mut text)
        .map_err(|err| format!("--token-file {shown}: {err}"))?;
    if text.len() > 4096 {
        return Err(format!("--token-file {shown}: larger than 4 KiB"));
    }
    let token = text.trim_end();
    if token.is_empty() {
        return Err(format!("--token-file {shown}: the file is empty"));
    }
    Ok(token.to_owned())
}

async fn demo_command(args: DemoArgs) -> Result<(), String> {
    let collector = live_collector(args.tui)?;
    let options = DemoOptions {
        tables: args.tables,
        speed: args.speed,
        ..DemoOptions::default()
    };
    let surfaces = Surfaces {
        http: args.http,
        state_file: args.state_file,
        tui: args.tui,
        duration: args.duration,
    };
    run_live(collector, surfaces, |collector, stop| {
        demo::run(collector, options, stop)
    })
    .await
}

async fn monitor_command(args: MonitorArgs) -> Result<(), String> {
    let collector = live_collector(args.tui)?;
    collector.set_phase(Phase::Connecting).await;
    let parse = |which: &str, text: &str| {
        text.parse::<pg::ConnInfo>()
            .map_err(|err| format!("--{which}: {err}"))
    };
    let config = MonitorConfig {
        source: parse("source", &args.source)?,
        dest: parse("dest", &args.dest)?,
        subscription: args.subscription,
        interval: args.interval,
    };
    // Bad input fails here, before anything is served.
    let monitor = pg::Monitor::connect(config)
        .await
        .map_err(|err| err.to_string())?;
    let surfaces = Surfaces {
        http: args.http,
        state_file: args.state_file,
        tui: args.tui,
        duration: None,
    };
    run_live(collector, surfaces, |collector, stop| {
        pg::run(collector, monitor, stop)
    })
    .await
}

/// A collector whose log ring also receives this process's `tracing` events;
/// warnings also go to stderr unless the terminal dashboard owns the screen.
fn live_collector(tui: bool) -> Result<Collector, String> {
    let collector = Collector::new();
    let stderr = (!tui).then(StderrLayer::default);
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(collector.tracing_layer())
            .with(stderr),
    )
    .map_err(|err| err.to_string())?;
    Ok(collector)
}

/// Warnings (an unreadable state file, a refused connection) on stderr.
fn log_to_stderr() -> Result<(), String> {
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(StderrLayer::default()),
    )
    .map_err(|err| err.to_string())
}

/// Where a live collector is shown.
struct Surfaces {
    http: HttpArgs,
    state_file: Option<PathBuf>,
    tui: bool,
    duration: Option<Duration>,
}

/// Runs `job` on `collector` while serving it over HTTP, persisting it, and
/// showing the terminal dashboard when asked; everything stops on Ctrl-C,
/// SIGTERM, the duration, or (with the dashboard) its quit key.
async fn run_live<J, F>(collector: Collector, surfaces: Surfaces, job: J) -> Result<(), String>
where
    J: FnOnce(Collector, WaitStop) -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let path = state_path(surfaces.state_file)?;
    let persister = StatePersister::start(collector.clone(), &path)
        .map_err(|err| format!("cannot use the state file {}: {err}", path.display()))?;
    let (listener, config) = listen(&surfaces.http, !surfaces.tui).await?;
    if !surfaces.tui {
        say(&format!("State file: {}", path.display()));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = std::sync::Arc::new(stop);
    let signal = std::sync::Arc::clone(&stop);
    let duration = surfaces.duration;
    tokio::spawn(async move {
        shutdown_signal(duration).await;
        signal.send_replace(true);
    });
    let work = tokio::spawn(job(collector.clone(), wait_stop(stopped.clone())));
    let server = tokio::spawn(http::serve(
        listener,
        collector.clone(),
        config,
        wait_stop(stopped.clone()),
    ));
    if surfaces.tui {
        let shown = tui::run(tui::Feed::local(collector.clone()), wait_stop(stopped)).await;
        stop.send_replace(true);
        shown.map_err(|err| format!("terminal: {err}"))?;
    }
    let served = server.await.map_err(|err| err.to_string())?;
    let _ = work.await;
    let saved = persister.stop().await;
    collector.close().await;
    served.map_err(|err| format!("serving: {err}"))?;
    saved.map_err(|err| {
        format!(
            "the final state could not be written to {}: {err}",
            path.display()
        )
    })?;
    if !surfaces.tui {
        say("Stopped; the final state is in the state file.");
    }
    Ok(())
}

/// Completes once the stop flag is set.
type WaitStop = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

fn wait_stop(mut stopped: tokio::sync::watch::Receiver<bool>) -> WaitStop {
    Box::pin(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    })
}

async fn serve_command(args: ServeArgs) -> Result<(), String> {
    log_to_stderr()?;
    let path = state_path(args.state_file)?;
    let mirror = StateFileMirror::start(&path);
    let (listener, config) = listen(&args.http, true).await?;
    say(&format!("Following: {}", path.display()));
    http::serve(listener, mirror, config, shutdown_signal(None))
        .await
        .map_err(|err| format!("serving: {err}"))
}

async fn tui_command(args: TuiArgs) -> Result<(), String> {
    let feed = match args.api_addr {
        Some(api) => tui::Feed::remote(&api, args.token.filter(|t| !t.is_empty()))?,
        None => tui::Feed::local(StateFileMirror::start(state_path(args.state_file)?)),
    };
    tui::run(feed, shutdown_signal(None))
        .await
        .map_err(|err| format!("terminal: {err}"))
}

fn status_once(args: &StatusArgs) -> Result<(), String> {
    let path = state_path(args.state_file.clone())?;
    let snapshot = read_state_file(&path).map_err(|err| err.to_string())?;
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&snapshot).map_err(|err| err.to_string())?;
        json.push('\n');
        printable_json(json)
    } else {
        status::render(&snapshot, OffsetDateTime::now_utc())
    };
    print(&text).map(|_| ())
}

/// Redraws the report every second until Ctrl-C; a file that goes missing
/// or turns invalid is reported in place and the watch goes on.
async fn status_watch(args: &StatusArgs) -> Result<(), String> {
    let path = state_path(args.state_file.clone())?;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let stop = shutdown_signal(None);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            _ = ticks.tick() => {
                let text = match read_state_file(&path) {
                    Ok(snapshot) => status::render(&snapshot, OffsetDateTime::now_utc()),
                    Err(err) => format!("{}\n", printable(&err.to_string())),
                };
                // Home the cursor and clear the screen, then draw; stop
                // once nobody reads (`status --watch | head`).
                if !print(&format!("\x1b[H\x1b[2J{text}"))? {
                    return Ok(());
                }
            }
        }
    }
}

/// Completes on Ctrl-C, SIGTERM, SIGHUP (the terminal or SSH session went
/// away), a panic in any task, or after `limit`.
async fn shutdown_signal(limit: Option<Duration>) {
    use tokio::signal::unix::{SignalKind, signal};
    let on = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let limit = async {
        match limit {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = on(SignalKind::interrupt()) => {}
        () = on(SignalKind::terminate()) => {}
        () = on(SignalKind::hangup()) => {}
        () = panics::occurred() => {}
        () = limit => {}
    }
}

/// A duration as `30s`, `5m`, `1h30m`, `500ms` (humantime), or plain
/// seconds, within `min..=max`.
fn parse_duration_within(text: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let text = text.trim();
    let duration = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(text)
            .map_err(|err| format!("{err} (e.g. 30s, 5m, 1h30m, 500ms)"))?,
    };
    if duration < min || duration > max {
        return Err(format!(
            "must be from {} to {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
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

/// One line on stdout, flushed at once (tests and scripts read it); its
/// control characters (a hostile path, say) escaped.
fn say(line: &str) {
    let _ = print(&format!("{}\n", printable(line)));
}

/// Writes to stdout; `false` when the reader has gone (`status | head`),
/// which is not an error.
fn print(text: &str) -> Result<bool, String> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(format!("writing output: {err}")),
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
