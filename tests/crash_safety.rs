//! Process-level faults: a writer killed with SIGKILL at random moments, and
//! a file system that refuses to grow (a full disk).
//!
//! A plain `main` (harness = false): the test re-runs its own binary as the
//! writer that gets killed, and lowers its own file-size limit, which must
//! not leak into other tests.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use pgmigrator_metrics::{
    Collector, Lsn, Phase, Snapshot, StatePersister, TableProgress, read_state_file,
    write_state_file,
};

const KILLS: usize = 200;

/// One check: `Err` says what went wrong.
type Check = fn() -> Result<(), String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child-writer") {
        child_writer(Path::new(&args[i + 1]));
    }
    if args.iter().any(|a| a == "--list") {
        return ExitCode::SUCCESS; // test listers (nextest) ask what is here: nothing listable
    }
    let tests: [(&str, Check); 2] = [
        (
            "sigkill_during_writes_never_corrupts_state_json",
            sigkill_during_writes,
        ),
        (
            "a_full_disk_keeps_the_previous_state_and_is_retried",
            full_disk,
        ),
    ];
    let mut failed = 0;
    for (name, test) in tests {
        match test() {
            Ok(()) => println!("test {name} ... ok"),
            Err(message) => {
                failed += 1;
                println!("test {name} ... FAILED\n  {message}");
            }
        }
    }
    println!(
        "crash_safety: {} passed, {failed} failed",
        tests.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A snapshot whose size varies with `n`, so a torn write would show.
fn snapshot(n: u64) -> Snapshot {
    Snapshot {
        phase: Phase::Copy,
        total_rows: n as i64,
        applied_lsn: Lsn(n),
        tables: (0..(n % 300) + 1)
            .map(|i| TableProgress::new("public", &format!("table_{n}_{i}"), i as i64, 8192))
            .collect(),
        ..Snapshot::default()
    }
}

/// Writes state in a tight loop until killed.
fn child_writer(path: &Path) -> ! {
    let seed = u64::from(std::process::id()) << 20;
    for n in seed.. {
        if let Err(err) = write_state_file(path, &snapshot(n)) {
            eprintln!("child write failed: {err}");
            std::process::exit(3);
        }
    }
    unreachable!()
}

/// A small xorshift: random kill delays without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn sigkill_during_writes() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("state.json");
    write_state_file(&path, &snapshot(0)).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut random = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    let mut changed = 0;
    let mut last_rows = 0;
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .arg("--child-writer")
            .arg(&path)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let delay = Duration::from_micros(2_000 + next_random(&mut random) % 18_000);
        std::thread::sleep(delay);
        child.kill().map_err(|e| e.to_string())?;
        let status = child.wait().map_err(|e| e.to_string())?;
        if status.code() == Some(3) {
            return Err(format!("kill {kill}: the child could not write"));
        }
        let state = read_state_file(&path)
            .map_err(|e| format!("kill {kill} after {delay:?}: state.json is damaged: {e}"))?;
        if state.tables.len() as u64 != state.total_rows as u64 % 300 + 1 {
            return Err(format!("kill {kill}: state.json mixes two writes"));
        }
        if state.total_rows != last_rows {
            changed += 1;
            last_rows = state.total_rows;
        }
    }
    // Most kills must land after the child wrote something, or this test
    // would prove nothing.
    if changed < KILLS / 2 {
        return Err(format!(
            "only {changed} of {KILLS} children wrote before being killed"
        ));
    }
    // Killed writers leave temporary files; a new persister removes them.
    let litter = temp_files(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let persister =
            StatePersister::start(Collector::new(), &path).map_err(|e| e.to_string())?;
        persister.stop().await.map_err(|e| e.to_string())?;
        let left = temp_files(dir.path());
        if left.is_empty() {
            println!(
                "  {KILLS} kills, {changed} with a new state, state.json valid every time; \
                 {} orphaned temporary files removed",
                litter.len()
            );
            Ok(())
        } else {
            Err(format!("orphaned temporary files were left: {left:?}"))
        }
    })
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// Lowers this process's file-size limit so that writes fail as on a full
/// disk (EFBIG instead of ENOSPC; the code path is the same).
struct FileSizeLimit(libc::rlimit);

impl FileSizeLimit {
    fn set(bytes: u64) -> Result<Self, String> {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain syscalls on valid, owned structs; SIGXFSZ would
        // otherwise kill the process instead of failing the write.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::getrlimit(libc::RLIMIT_FSIZE, &mut old) != 0 {
                return Err("getrlimit failed".into());
            }
            let new = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: old.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &new) != 0 {
                return Err("setrlimit failed".into());
            }
        }
        Ok(FileSizeLimit(old))
    }
}

impl Drop for FileSizeLimit {
    fn drop(&mut self) {
        // SAFETY: restores the limit read in `set`.
        unsafe {
            libc::setrlimit(libc::RLIMIT_FSIZE, &self.0);
        }
    }
}

fn full_disk() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("state.json");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let collector = Collector::new();
        collector.set_phase(Phase::Copy).await;
        let persister =
            StatePersister::start(collector.clone(), &path).map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = std::fs::read(&path).map_err(|e| e.to_string())?;

        // Grow the state past what the "disk" takes.
        let limit = FileSizeLimit::set(before.len() as u64 + 512)?;
        collector.set_tables(snapshot(299).tables).await;
        let started = Instant::now();
        while persister.failures() < 2 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if started.elapsed() > Duration::from_secs(30) {
                return Err("writes never failed under the file-size limit".into());
            }
        }
        let during = std::fs::read(&path).map_err(|e| e.to_string())?;
        if during != before {
            return Err("a failed write changed state.json".into());
        }
        if !temp_files(dir.path()).is_empty() {
            return Err("a failed write left its temporary file".into());
        }

        // Space again: the next tick writes the current state.
        drop(limit);
        let failures = persister.failures();
        tokio::time::sleep(Duration::from_secs(2)).await;
        persister.stop().await.map_err(|e| e.to_string())?;
        let after = read_state_file(&path).map_err(|e| e.to_string())?;
        if after.tables.len() != 300 {
            return Err(format!(
                "the retry did not write the new state ({} tables)",
                after.tables.len()
            ));
        }
        println!("  {failures} writes refused while the disk was full; state.json intact; retried");
        Ok(())
    })
}
