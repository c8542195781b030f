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
use pgmigrator_metrics::{
    Collector, Phase, StateFileMirror, StatePersister, default_state_path, read_state_file, status,
    tui,
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
    /// Time between polls (e.g. 1s, 500ms).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
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
    /// Token required by the API, the dashboard and the metrics.
    #[arg(long, env = TOKEN_ENV, hide_env_values = true)]
    token: Option<String>,
    /// Another origin allowed to open the WebSocket (repeatable).
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    #[command(flatten)]
    http: HttpArgs,
    /// The state file [default: $PGMIGRATOR_HOME/state.json, else ~/.pgmigrator/state.json]
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    /// Speed of the simulation: 2 runs twice as fast.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Number of tables to copy.
    #[arg(long, default_value_t = 24)]
    tables: usize,
    /// Stop by itself after this long (e.g. 30s, 5m); runs until Ctrl-C otherwise.
    #[arg(long, value_parser = parse_duration)]
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
    /// Redraw every second until Ctrl-C.
    #[arg(long)]
    watch: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Status(args) if !args.watch => status_once(&args),
        command => runtime().and_then(|rt| rt.block_on(run(command))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pgmigrator: {message}");
            ExitCode::FAILURE
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
    let config = HttpConfig {
        token: args.token.clone().filter(|t| !t.is_empty()),
        allowed_origins: args.allow_origins.clone(),
        ..HttpConfig::default()
    };
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

async fn demo_command(args: DemoArgs) -> Result<(), String> {
    let collector = live_collector()?;
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
    let collector = live_collector()?;
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

/// A collector whose log ring also receives this process's `tracing` events.
fn live_collector() -> Result<Collector, String> {
    let collector = Collector::new();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(collector.tracing_layer()),
    )
    .map_err(|err| err.to_string())?;
    Ok(collector)
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
        .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
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
    persister.stop().await;
    collector.close().await;
    served.map_err(|err| format!("serving: {err}"))?;
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
        json
    } else {
        status::render(&snapshot, OffsetDateTime::now_utc())
    };
    print(&text)
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
                    Err(err) => format!("{err}\n"),
                };
                // Home the cursor and clear the screen, then draw.
                print(&format!("\x1b[H\x1b[2J{text}"))?;
            }
        }
    }
}

/// Completes on Ctrl-C, SIGTERM, or after `limit`.
async fn shutdown_signal(limit: Option<Duration>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
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
        () = ctrl_c => {}
        () = terminate => {}
        () = limit => {}
    }
}

/// `30s`, `5m`, `1h`, `500ms`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 30s, 5m, 1h, 500ms"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("invalid duration unit {unit:?}: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|err| format!("invalid duration {text:?}: {err}"))
}

/// One line on stdout, flushed at once (tests and scripts read it).
fn say(line: &str) {
    let _ = print(&format!("{line}\n"));
}

/// Writes to stdout; a closed pipe (`status | head`) is not an error.
fn print(text: &str) -> Result<(), String> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
            Err(format!("writing output: {err}"))
        }
        _ => Ok(()),
    }
}
