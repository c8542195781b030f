//! `state.json`: writing it safely while the pipeline runs, reading it back
//! for `pgmigrator status`, even after the pipeline died.
//!
//! - `write`: [`write_state_file`], atomic and crash-safe.
//! - `read`: [`read_state_file`] and its typed errors.
//! - `persister`: [`StatePersister`], the task that writes every 2 s.

mod persister;
mod read;
mod write;

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::time::Duration;

pub use persister::StatePersister;
#[cfg(any(feature = "alerts", feature = "http"))]
pub(crate) use read::{Links, read_small_file};
pub use read::{
    StateFileError, StateFileErrorKind, read_history_file, read_logs_file, read_state_file,
};
#[cfg(feature = "alerts")]
pub(crate) use write::write_atomically;
pub use write::{write_history_file, write_state_file};

/// Time between two writes of the state file.
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(2);
/// Largest state file [`read_state_file`] reads.
pub const MAX_STATE_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Environment variable naming the directory of `state.json`.
pub const HOME_ENV: &str = "PGMIGRATOR_HOME";
/// The state file's name.
pub const STATE_FILE_NAME: &str = "state.json";

/// Mode of a new state file: only its owner reads it (it names every
/// table and error of a production database); the umask may narrow it.
const FILE_MODE: u32 = 0o600;
/// Mode of a directory the persister creates.
const DIR_MODE: u32 = 0o700;

/// Largest history file [`read_history_file`] reads (a full history is
/// about 700 KB of JSON).
pub const MAX_HISTORY_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Largest log file [`read_logs_file`] reads.
pub const MAX_LOGS_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Most log entries [`read_logs_file`] returns (the newest).
pub const MAX_LOG_ENTRIES: usize = 10_000;

/// A file kept beside the state file: `state.json` → `state.{what}.json`
/// (`state.history.json`, `state.alerts.json`).
pub fn companion_path(state_file: &std::path::Path, what: &str) -> PathBuf {
    let stem = state_file
        .file_stem()
        .map_or_else(|| "state".into(), |s| s.to_string_lossy().into_owned());
    state_file.with_file_name(format!("{stem}.{what}.json"))
}

/// Where the state file lives by default: `$PGMIGRATOR_HOME/state.json` when
/// that variable is set and not empty, else `~/.pgmigrator/state.json`.
pub fn default_state_path() -> io::Result<PathBuf> {
    if let Some(home) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home).join(STATE_FILE_NAME));
    }
    let base = directories::BaseDirs::new().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no home directory found; set {HOME_ENV} to choose where state.json lives"),
        )
    })?;
    Ok(base.home_dir().join(".pgmigrator").join(STATE_FILE_NAME))
}

/// What a file that is not regular is, for messages; `None` for a regular
/// file.
fn not_regular(file_type: fs::FileType) -> Option<&'static str> {
    Some(if file_type.is_file() {
        return None;
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else {
        "not a file"
    })
}
