//! Reading a state file back, whoever wrote it.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{MAX_STATE_FILE_BYTES, not_regular};
use crate::history::History;
use crate::model::{LogEntry, Snapshot};

/// Why a state file could not be read.
#[derive(Debug)]
pub struct StateFileError {
    path: PathBuf,
    kind: StateFileErrorKind,
}

/// The kinds of [`StateFileError`].
#[derive(Debug)]
#[non_exhaustive]
pub enum StateFileErrorKind {
    /// No file at the path: no pipeline has written state there.
    NotFound,
    /// The file exists but could not be opened or read.
    Unreadable(io::Error),
    /// The path is a directory, FIFO, socket or device.
    NotRegularFile(&'static str),
    /// The file is larger than [`MAX_STATE_FILE_BYTES`].
    TooLarge(u64),
    /// The file is not a valid state (bad JSON, or JSON of the wrong shape).
    InvalidJson {
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1 (0 at the very start of a line).
        column: usize,
        /// What is wrong.
        message: String,
    },
}

impl StateFileError {
    /// The path that was read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What went wrong.
    pub fn kind(&self) -> &StateFileErrorKind {
        &self.kind
    }
}

impl fmt::Display for StateFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            StateFileErrorKind::NotFound => write!(
                f,
                "no migration state at {path} (no pipeline has written it yet)"
            ),
            StateFileErrorKind::Unreadable(err) => write!(f, "cannot read {path}: {err}"),
            StateFileErrorKind::NotRegularFile(what) => {
                write!(f, "{path} is not a regular file (it is {what})")
            }
            StateFileErrorKind::TooLarge(size) => write!(
                f,
                "{path} is too large for a state file ({} bytes; the limit is {} bytes)",
                size, MAX_STATE_FILE_BYTES
            ),
            StateFileErrorKind::InvalidJson {
                line,
                column,
                message,
            } => write!(
                f,
                "invalid JSON at line {line}, column {column} in {path}: {message}"
            ),
        }
    }
}

impl std::error::Error for StateFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            StateFileErrorKind::Unreadable(err) => Some(err),
            _ => None,
        }
    }
}

/// Reads a state file written by [`StatePersister`](crate::StatePersister), [`write_state_file`](crate::write_state_file) or
/// the Go original.
///
/// Never blocks on a FIFO and never reads more than
/// [`MAX_STATE_FILE_BYTES`]: the file is opened non-blocking and checked to
/// be a regular file before anything is read.
pub fn read_state_file(path: &Path) -> Result<Snapshot, StateFileError> {
    let error = |kind| StateFileError {
        path: path.to_owned(),
        kind,
    };
    let mut file = open_no_follow(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => error(StateFileErrorKind::NotFound),
        _ if err.raw_os_error() == Some(libc::ELOOP) => {
            error(StateFileErrorKind::NotRegularFile("a symbolic link"))
        }
        _ => error(StateFileErrorKind::Unreadable(err)),
    })?;
    let metadata = file
        .metadata()
        .map_err(|err| error(StateFileErrorKind::Unreadable(err)))?;
    if let Some(what) = not_regular(metadata.file_type()) {
        return Err(error(StateFileErrorKind::NotRegularFile(what)));
    }
    if metadata.len() > MAX_STATE_FILE_BYTES {
        return Err(error(StateFileErrorKind::TooLarge(metadata.len())));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    // `take` guards against a file that grows while it is read.
    (&mut file)
        .take(MAX_STATE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| error(StateFileErrorKind::Unreadable(err)))?;
    if bytes.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(error(StateFileErrorKind::TooLarge(bytes.len() as u64)));
    }
    serde_json::from_slice(&bytes).map_err(|err| {
        error(StateFileErrorKind::InvalidJson {
            line: err.line(),
            column: err.column(),
            message: json_problem(&err),
        })
    })
}

/// What is wrong with a file's JSON, in words that quote none of it:
/// serde_json's messages quote values (`invalid type: string "…"`), and
/// the file may be any file, or planted. Quoted parts become `…`; what is
/// left is the schema's words.
fn json_problem(err: &serde_json::Error) -> String {
    let mut out = String::new();
    let mut quote = None;
    for c in err.to_string().chars() {
        match (quote, c) {
            (None, '"' | '`') => {
                quote = Some(c);
                out.push('…');
            }
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, c) => out.push(c),
        }
    }
    out
}

/// Opens `path` for reading without following a link at its end and
/// without blocking on a FIFO.
fn open_no_follow(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
}

/// Reads a history file written by [`write_history_file`](crate::write_history_file)
/// (or the persister, beside its state file), the way [`read_state_file`]
/// reads: never blocking on a FIFO, at most
/// [`MAX_HISTORY_FILE_BYTES`](super::MAX_HISTORY_FILE_BYTES); a hostile
/// file cannot grow the history past its bounds.
pub fn read_history_file(path: &Path) -> io::Result<History> {
    let bytes = read_small_file(path, super::MAX_HISTORY_FILE_BYTES, Links::Refuse)?;
    let history: History = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
    Ok(history.sanitized())
}

/// Reads the log entries the persister keeps beside a state file
/// (`state.logs.json`), the way [`read_state_file`] reads: at most
/// [`MAX_LOGS_FILE_BYTES`](super::MAX_LOGS_FILE_BYTES), and the newest
/// [`MAX_LOG_ENTRIES`](super::MAX_LOG_ENTRIES) of them.
pub fn read_logs_file(path: &Path) -> io::Result<Vec<LogEntry>> {
    let bytes = read_small_file(path, super::MAX_LOGS_FILE_BYTES, Links::Refuse)?;
    let mut logs: Vec<LogEntry> = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
    let skip = logs.len().saturating_sub(super::MAX_LOG_ENTRIES);
    logs.drain(..skip);
    Ok(logs)
}

/// Whether a read follows a link at the end of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Links {
    /// A file the operator names (a certificate, an alerts file): links
    /// are how such files are often deployed.
    #[cfg_attr(
        not(any(feature = "http", feature = "alerts")),
        allow(dead_code, reason = "certificates and alerts files")
    )]
    Follow,
    /// A file this crate writes or serves: a link there was planted.
    Refuse,
}

/// The whole of a small file the way [`read_state_file`] reads: opened
/// non-blocking (a FIFO cannot hang it), a regular file only, at most
/// `max` bytes.
pub(crate) fn read_small_file(path: &Path, max: u64, links: Links) -> io::Result<Vec<u8>> {
    let mut file = match links {
        Links::Refuse => open_no_follow(path).map_err(|err| {
            if err.raw_os_error() == Some(libc::ELOOP) {
                io::Error::other("a symbolic link, not a regular file")
            } else {
                err
            }
        })?,
        Links::Follow => OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?,
    };
    if let Some(what) = not_regular(file.metadata()?.file_type()) {
        return Err(io::Error::other(format!("{what}, not a regular file")));
    }
    let mut bytes = Vec::new();
    (&mut file).take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

/// The state-file reader over hostile files: arbitrary bytes, and valid
/// files with any JSON in any field. It returns a snapshot or a typed
/// error, and whatever it returns can be reported and written back.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::Value;

    use std::fs;

    use super::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop::sample::select(vec![-1.0, 0.0, 1e300, -1e300, 5e-324]).prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
            prop::sample::select(vec!["0/0", "FFFFFFFF/FFFFFFFF", "1/", "x", "done"])
                .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// A valid state file with one table, as JSON.
    fn valid() -> Value {
        let mut snapshot = Snapshot::default();
        snapshot
            .tables
            .push(crate::model::TableProgress::new("public", "t", 10, 100));
        serde_json::to_value(&snapshot).unwrap()
    }

    fn check(path: &Path, bytes: &[u8]) -> Result<(), TestCaseError> {
        fs::write(path, bytes).unwrap();
        match read_state_file(path) {
            Ok(snapshot) => {
                let _ = crate::status::render(&snapshot, time::OffsetDateTime::now_utc());
                let json = serde_json::to_string(&snapshot)
                    .map_err(|err| TestCaseError::fail(format!("cannot write back: {err}")))?;
                let back: Snapshot = serde_json::from_str(&json)
                    .map_err(|err| TestCaseError::fail(format!("cannot read back: {err}")))?;
                prop_assert_eq!(back.tables.len(), snapshot.tables.len());
            }
            Err(err) => {
                let invalid_json = matches!(err.kind(), StateFileErrorKind::InvalidJson { .. });
                prop_assert!(invalid_json, "{}", err);
                let _ = err.to_string();
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256)
        ))]

        #[test]
        fn arbitrary_bytes_are_a_snapshot_or_a_typed_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let dir = tempfile::tempdir().unwrap();
            check(&dir.path().join("state.json"), &bytes)?;
        }

        #[test]
        fn any_value_in_any_field_is_a_snapshot_or_a_typed_error(
            in_table in any::<bool>(),
            field in prop::sample::select(vec![
                "timestamp", "phase", "elapsed_sec", "applied_lsn", "lag_bytes", "lag_formatted",
                "tables_total", "tables", "rows_per_sec", "total_rows", "error_count",
                "last_error", "lag_seconds", "eta_sec", "phases", "errors", "status", "name",
                "rows_total", "rows_copied", "percent", "size_bytes", "elapsed_sec",
            ]),
            value in json(),
        ) {
            let mut doc = valid();
            let target = if in_table { &mut doc["tables"][0] } else { &mut doc };
            target[field] = value;
            let dir = tempfile::tempdir().unwrap();
            check(&dir.path().join("state.json"), &serde_json::to_vec(&doc).unwrap())?;
        }
    }
}
