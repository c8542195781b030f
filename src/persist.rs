//! `state.json`: writing it safely while the pipeline runs, reading it back
//! for `pgmigrator status`, even after the pipeline died.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::collector::Collector;
use crate::model::Snapshot;

/// Time between two writes of the state file.
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(2);
/// Largest state file [`read_state_file`] reads.
pub const MAX_STATE_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Environment variable naming the directory of `state.json`.
pub const HOME_ENV: &str = "PGMIGRATOR_HOME";
/// The state file's name.
pub const STATE_FILE_NAME: &str = "state.json";

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

/// Writes `snapshot` to `path` atomically: pretty JSON into a new, uniquely
/// named file in the same directory (created exclusively with mode 0600, so
/// neither another writer nor a planted symlink can be written through),
/// `fsync`, rename over `path`, `fsync` the directory. Readers see the old file or the new one,
/// never a mix, even if the process is killed or the machine loses power.
/// On error the previous file is untouched and the temporary file removed.
///
/// Blocking; [`StatePersister`] calls it off the runtime's worker threads.
pub fn write_state_file(path: &Path, snapshot: &Snapshot) -> io::Result<()> {
    let mut json = serde_json::to_vec_pretty(snapshot).map_err(io::Error::other)?;
    json.push(b'\n');
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let (temp_path, mut file) = create_temp(dir, &name.to_string_lossy())?;
    let written = (|| {
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp_path, path)
    })();
    if let Err(err) = written {
        let _ = fs::remove_file(&temp_path);
        return Err(err);
    }
    File::open(dir)?.sync_all()
}

/// Mode of a new state file: only its owner reads it (it names every
/// table and error of a production database); the umask may narrow it.
const FILE_MODE: u32 = 0o600;
/// Mode of a directory the persister creates.
const DIR_MODE: u32 = 0o700;

/// Creates `.{name}.{pid}.{n}.tmp` in `dir` with `O_CREAT | O_EXCL`.
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".{name}.{pid}.{n}.tmp"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            // Left by an earlier process with the same pid: try the next name.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
}

/// Removes temporary files that writers killed mid-write left beside `path`
/// (`.{name}.{pid}.{n}.tmp` whose process no longer exists). Files of live
/// processes, including other writers of the same file, are left alone.
fn remove_orphaned_temp_files(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".tmp"))
        else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid > 0 && !process_exists(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks whether `pid` exists; nothing is sent.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

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

/// Reads a state file written by [`StatePersister`], [`write_state_file`] or
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
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => error(StateFileErrorKind::NotFound),
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
            message: err.to_string(),
        })
    })
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

/// Counts of a persister's writes.
#[derive(Debug, Default)]
struct Counters {
    writes: AtomicU64,
    failures: AtomicU64,
}

/// Writes a collector's snapshot to a state file every 2 s, and once more
/// when stopped, so `pgmigrator status` can read it, even after the pipeline
/// died.
///
/// [`start`](Self::start) fails at once, rather than later and silently,
/// when the path cannot serve: something other than a regular file is there
/// (a directory, FIFO, socket, device or symbolic link, which a rename
/// would replace), another process writes it (an advisory lock on
/// `.state.json.lock` beside it, naming the holder's pid), or the first
/// write fails (no permission, a file another user owns in a sticky
/// directory, a full disk).
///
/// A later failed write (directory removed, disk full) is counted, retried
/// on the next tick, and reported: as a `tracing` warning and an error in
/// the collector's snapshot, at once and then at most once a minute while
/// it lasts. It never damages the previous file. [`stop`](Self::stop) says
/// whether the final write landed. Dropping the persister without `stop`
/// still makes the final write, in the background.
#[derive(Debug)]
pub struct StatePersister {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    counters: Arc<Counters>,
}

impl StatePersister {
    /// Starts persisting `collector` to `path`, creating its directory (mode
    /// 0700) when missing, and makes the first write before returning (a
    /// short blocking write), so a path that cannot be written fails here.
    /// Must be called inside a Tokio runtime.
    pub fn start(collector: Collector, path: impl Into<PathBuf>) -> io::Result<StatePersister> {
        let path = path.into();
        if path.file_name().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} does not name a file", path.display()),
            ));
        }
        check_target(&path)?;
        create_parent(&path)?;
        let lock = WriterLock::take(&path)?;
        remove_orphaned_temp_files(&path);
        write_state_file(&path, &collector.snapshot())?;
        let (stop, stopped) = oneshot::channel();
        let counters = Arc::new(Counters::default());
        counters.writes.store(1, Ordering::Relaxed);
        let writer = Writer {
            collector,
            path: path.clone(),
            counters: Arc::clone(&counters),
            failing_since: None,
            reported_at: None,
            _lock: lock,
        };
        let task = tokio::spawn(writer.run(stopped));
        Ok(StatePersister {
            path,
            stop: Some(stop),
            task: Some(task),
            counters,
        })
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Successful writes so far.
    pub fn writes(&self) -> u64 {
        self.counters.writes.load(Ordering::Relaxed)
    }

    /// Failed writes so far.
    pub fn failures(&self) -> u64 {
        self.counters.failures.load(Ordering::Relaxed)
    }

    /// Flushes the collector, writes the state one final time, releases the
    /// file, and says whether that final write landed.
    pub async fn stop(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task
                .await
                .unwrap_or_else(|join| Err(io::Error::other(join))),
            None => Ok(()),
        }
    }
}

impl Drop for StatePersister {
    fn drop(&mut self) {
        // Dropping the sender tells the task to make its final write.
        self.stop.take();
    }
}

/// Refuses a path where something other than a regular file is: renaming
/// over it would replace a device such as `/dev/null`, a FIFO or a socket
/// another program uses, or a link someone planted.
fn check_target(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) => match not_regular(metadata.file_type()) {
            None => Ok(()),
            Some(what) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is {what}, not a regular file; refusing to replace it",
                    path.display()
                ),
            )),
        },
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir),
        _ => Ok(()),
    }
}

/// An exclusive advisory lock (`flock`) on `.{name}.lock` beside the state
/// file, held while a persister runs; the file holds the holder's pid for
/// the message another writer gets.
#[derive(Debug)]
struct WriterLock {
    _file: File,
}

impl WriterLock {
    fn take(path: &Path) -> io::Result<WriterLock> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let lock_path = path.with_file_name(format!(".{name}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&lock_path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", lock_path.display()),
            ));
        }
        // SAFETY: flock on a descriptor we own; it only takes a lock.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err);
            }
            let mut holder = String::new();
            let _ = (&mut file).take(32).read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if !holder.is_empty() && holder.bytes().all(|b| b.is_ascii_digit()) {
                format!("pid {holder}")
            } else {
                "another process".to_owned()
            };
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "{} is being written by another pgmigrator ({holder}); \
                     stop it or choose another --state-file",
                    path.display()
                ),
            ));
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(WriterLock { _file: file })
    }
}

/// How often a lasting write failure is reported again.
const REPORT_FAILURES_EVERY: Duration = Duration::from_secs(60);

/// The persister's task: owns the lock for as long as it runs.
struct Writer {
    collector: Collector,
    path: PathBuf,
    counters: Arc<Counters>,
    /// Failed writes in a row, since the first of them.
    failing_since: Option<u64>,
    /// When the current failure was last reported.
    reported_at: Option<tokio::time::Instant>,
    _lock: WriterLock,
}

impl Writer {
    /// Writes every interval until stopped (or the persister is dropped),
    /// then once more; returns how that final write went.
    async fn run(mut self, mut stop: oneshot::Receiver<()>) -> io::Result<()> {
        // `start` made the first write.
        let first = tokio::time::Instant::now() + PERSIST_INTERVAL;
        let mut ticker = tokio::time::interval_at(first, PERSIST_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let _ = self.write_once().await;
                }
                // A stop request, or the persister was dropped.
                _ = &mut stop => break,
            }
        }
        self.collector.flush().await;
        self.write_once().await
    }

    async fn write_once(&mut self) -> io::Result<()> {
        let snapshot = self.collector.snapshot();
        let target = self.path.clone();
        // One blocking job for serialising and the whole write sequence
        // keeps both off the runtime's worker threads (tokio::fs would hop
        // to the blocking pool once per call anyway).
        let result = tokio::task::spawn_blocking(move || {
            // The directory may have been removed since the last write.
            create_parent(&target)?;
            write_state_file(&target, &snapshot)
        })
        .await
        .unwrap_or_else(|join| Err(io::Error::other(join)));
        match &result {
            Ok(()) => {
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                if let Some(failed) = self.failing_since.take() {
                    self.reported_at = None;
                    tracing::info!(
                        path = %self.path.display(),
                        failed,
                        "the state file is written again"
                    );
                }
            }
            Err(err) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                let failed = self.failing_since.map_or(1, |n| n + 1);
                self.failing_since = Some(failed);
                let now = tokio::time::Instant::now();
                let due = self
                    .reported_at
                    .is_none_or(|at| now.duration_since(at) >= REPORT_FAILURES_EVERY);
                if due {
                    self.reported_at = Some(now);
                    let message = format!(
                        "cannot write the state file {}: {err} ({failed} failed writes in a row; \
                         `pgmigrator status` shows older data until this is fixed)",
                        self.path.display()
                    );
                    tracing::warn!("{message}");
                    self.collector.record_error(message).await;
                }
            }
        }
        result
    }
}

/// The state-file reader over hostile files: arbitrary bytes, and valid
/// files with any JSON in any field. It returns a snapshot or a typed
/// error, and whatever it returns can be reported and written back.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::Value;

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
