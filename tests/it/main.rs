//! Integration tests through the public API only.

#[cfg(feature = "http")]
mod access;
#[cfg(all(feature = "alerts", feature = "http"))]
mod alerts;
#[cfg(all(feature = "http", feature = "tui"))]
mod app;
#[cfg(feature = "cli")]
mod browser;
#[cfg(feature = "cli")]
mod cli;
#[cfg(all(feature = "postgres", feature = "cli"))]
mod cluster;
mod collector;
#[cfg(feature = "http")]
mod contrib;
#[cfg(all(feature = "postgres", feature = "cli", feature = "http"))]
mod cutover;
mod forecast;
mod history;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "http")]
mod https;
#[cfg(all(feature = "postgres", feature = "cli"))]
mod majors;
#[cfg(all(feature = "otlp", feature = "cli"))]
mod otlp;
mod persist;
#[cfg(any(feature = "http", feature = "postgres"))]
#[allow(dead_code)]
mod pki;
#[cfg(all(feature = "postgres", feature = "cli"))]
mod postgres;
#[cfg(all(feature = "postgres", feature = "cli"))]
mod postgres_tls;
mod replay;
#[cfg(all(feature = "postgres", feature = "cli"))]
mod slot;
#[cfg(feature = "http")]
mod tools;
#[cfg(feature = "tracing-layer")]
mod tracing_layer;
#[cfg(all(feature = "tui", feature = "http"))]
mod tui;
#[cfg(all(feature = "postgres", feature = "cli", feature = "http"))]
mod verify;

use pgmigrator_metrics::TableProgress;

/// A FIFO at `path`, which nobody writes: what a hostile user plants
/// where a file should be.
pub fn make_fifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(
        made.is_ok_and(|status| status.success()),
        "mkfifo {}",
        path.display()
    );
}

/// Three tables: a known estimate, another, and a never-analysed one.
/// A `lag` alert firing at `severity` since `since`.
pub fn firing_lag(
    severity: pgmigrator_metrics::Severity,
    since: time::OffsetDateTime,
) -> pgmigrator_metrics::AlertStatus {
    pgmigrator_metrics::AlertStatus {
        name: "lag".into(),
        state: pgmigrator_metrics::AlertState::Firing,
        severity,
        since,
        value: String::new(),
        summary: String::new(),
    }
}

pub fn three_tables() -> Vec<TableProgress> {
    vec![
        TableProgress::new("public", "users", 1000, 64 * 1024),
        TableProgress::new("public", "orders", 4000, 256 * 1024),
        TableProgress::new("public", "events", -1, 32 * 1024),
    ]
}

/// A child process killed when dropped, so a failed test leaves nothing behind.
#[cfg(feature = "cli")]
pub struct Running(pub std::process::Child);

#[cfg(feature = "cli")]
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A forecast of 12m30s (10m0s to 16m40s) whose finish slipped 12 minutes
/// in the last hour.
pub fn slipping_forecast() -> pgmigrator_metrics::Eta {
    pgmigrator_metrics::Eta {
        state: pgmigrator_metrics::EtaState::Estimating,
        seconds: Some(750.0),
        low: Some(600.0),
        high: Some(1000.0),
        drift_sec: Some(720.0),
    }
}

/// Starts `pgmigrator ARGS --listen 127.0.0.1:0`; returns it and the
/// dashboard URL from its first line of output.
#[cfg(feature = "cli")]
pub fn start_pgmigrator(args: &[&std::ffi::OsStr]) -> (Running, String) {
    start_pgmigrator_with(args, &[])
}

/// [`start_pgmigrator`] with these variables set for it.
pub fn start_pgmigrator_with(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> (Running, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("Dashboard: ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (Running(child), url)
}
