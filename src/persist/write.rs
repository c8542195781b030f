//! Writing the state file atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{DIR_MODE, FILE_MODE};
use crate::history::History;
use crate::model::{LogEntry, Snapshot};

/// Writes `snapshot` to `path` atomically: pretty JSON into a new, uniquely
/// named file in the same directory (created exclusively with mode 0600, so
/// neither another writer nor a planted symlink can be written through),
/// `fsync`, rename over `path`, `fsync` the directory. Readers see the old file or the new one,
/// never a mix, even if the process is killed or the machine loses power.
/// On error the previous file is untouched and the temporary file removed.
///
/// Blocking; [`StatePersister`](crate::StatePersister) calls it off the runtime's worker threads.
pub fn write_state_file(path: &Path, snapshot: &Snapshot) -> io::Result<()> {
    let mut json = serde_json::to_vec_pretty(snapshot).map_err(io::Error::other)?;
    json.push(b'\n');
    write_atomically(path, &json)
}

/// Writes `history` to `path` the way [`write_state_file`] writes.
pub fn write_history_file(path: &Path, history: &History) -> io::Result<()> {
    let json = serde_json::to_vec(history).map_err(io::Error::other)?;
    write_atomically(path, &json)
}

/// Writes the log viewer's entries to `path` the way [`write_state_file`]
/// writes (the persister keeps them beside the state file).
pub(crate) fn write_logs_file(path: &Path, logs: &[LogEntry]) -> io::Result<()> {
    let json = serde_json::to_vec(logs).map_err(io::Error::other)?;
    write_atomically(path, &json)
}

/// Writes `bytes` to `path` the way [`write_state_file`] does: a new 0600
/// file beside it, `fsync`, rename, `fsync` of the directory.
pub(crate) fn write_atomically(path: &Path, json: &[u8]) -> io::Result<()> {
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
        file.write_all(json)?;
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

pub(super) fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir),
        _ => Ok(()),
    }
}

/// Removes temporary files that writers killed mid-write left beside `path`
/// (`.{name}.{pid}.{n}.tmp` whose process no longer exists). Files of live
/// processes, including other writers of the same file, are left alone.
pub(super) fn remove_orphaned_temp_files(path: &Path) {
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
