//! `pgmigrator`: a thin command line over the library.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pgmigrator_metrics::{default_state_path, read_state_file, status};
use time::OffsetDateTime;

/// Observe a pgmigrator PostgreSQL online migration.
#[derive(Debug, Parser)]
#[command(name = "pgmigrator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the migration's state from its state file; works after the
    /// pipeline has stopped.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// The state file [default: $PGMIGRATOR_HOME/state.json, else ~/.pgmigrator/state.json]
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    /// Print the whole snapshot as JSON instead of the report.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Status(args) => status_command(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pgmigrator: {message}");
            ExitCode::FAILURE
        }
    }
}

fn status_command(args: &StatusArgs) -> Result<(), String> {
    let path = match &args.state_file {
        Some(path) => path.clone(),
        None => default_state_path().map_err(|err| err.to_string())?,
    };
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
