//! `pgmigrator`: a thin command line over the library.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pgmigrator_metrics::demo::{self, DemoOptions};
use pgmigrator_metrics::http::{self, DEFAULT_LISTEN, HttpConfig, TOKEN_ENV};
use pgmigrator_metrics::{
    Collector, StateFileMirror, StatePersister, default_state_path, read_state_file, status, tui,
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
    let collector = Collector::new();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(collector.tracing_layer()),
    )
    .map_err(|err| err.to_string())?;
    let path = state_path(args.state_file)?;
    let persister = StatePersister::start(collector.clone(), &path)
        .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    let (listener, config) = listen(&args.http, !args.tui).await?;
    if !args.tui {
        say(&format!("State file: {}", path.display()));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = std::sync::Arc::new(stop);
    let signal = std::sync::Arc::clone(&stop);
    tokio::spawn(async move {
        shutdown_signal(args.duration).await;
        signal.send_replace(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let options = DemoOptions {
        tables: args.tables,
        speed: args.speed,
        ..DemoOptions::default()
    };
    let simulation = tokio::spawn(demo::run(collector.clone(), options, wait(stopped.clone())));
    let server = tokio::spawn(http::serve(
        listener,
        collector.clone(),
        config,
        wait(stopped.clone()),
    ));
    if args.tui {
        let shown = tui::run(tui::Feed::local(collector.clone()), wait(stopped)).await;
        stop.send_replace(true);
        shown.map_err(|err| format!("terminal: {err}"))?;
    }
    let served = server.await.map_err(|err| err.to_string())?;
    let _ = simulation.await;
    persister.stop().await;
    collector.close().await;
    served.map_err(|err| format!("serving: {err}"))?;
    if !args.tui {
        say("Stopped; the final state is in the state file.");
    }
    Ok(())
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
