use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgmigrator_metrics::{
    Collector, Lsn, Phase, Snapshot, StateFileErrorKind, StatePersister, TableStatus,
    read_state_file, write_state_file,
};

use crate::three_tables;

/// A state file as the Go original wrote it: nanosecond timestamps, a
/// zero-offset `Z`, no fields of ours, and `null` for an empty list.
const GO_STATE: &str = r#"{
  "timestamp": "2026-02-27T14:23:01.234567891Z",
  "phase": "streaming",
  "elapsed_sec": 5025.7,
  "applied_lsn": "0/1A3B4C5",
  "confirmed_lsn": "0/1A3B4C0",
  "lag_bytes": 1258291,
  "lag_formatted": "1.20 MB (latency: 0s)",
  "tables_total": 2,
  "tables_copied": 1,
  "tables": [
    {"schema": "public", "name": "users", "status": "streaming", "rows_total": 1200000,
     "rows_copied": 1200000, "size_bytes": 104857600, "bytes_copied": 104857600,
     "percent": 100, "elapsed_sec": 812.5},
    {"schema": "public", "name": "orders", "status": "copying", "rows_total": 2100000,
     "rows_copied": 890000, "size_bytes": 0, "bytes_copied": 0,
     "percent": 42.38095238095238, "elapsed_sec": 301.2}
  ],
  "rows_per_sec": 4521.3,
  "bytes_per_sec": 1048576.0,
  "total_rows": 22670800,
  "total_bytes": 5368709120,
  "error_count": 0
}"#;

fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_state_file_written_by_the_go_original_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    fs::write(&path, GO_STATE).unwrap();
    let s = read_state_file(&path).unwrap();
    assert_eq!(s.phase, Phase::Streaming);
    assert_eq!(s.applied_lsn, Lsn(0x1A3B4C5));
    assert_eq!(s.tables.len(), 2);
    assert_eq!(s.tables[1].status, TableStatus::Copying);
    assert_eq!(s.total_bytes, 5_368_709_120);
    assert!(s.last_error.is_empty() && s.phases.is_empty() && s.eta_sec.is_none());

    let nulls = GO_STATE.replace(
        &GO_STATE
            [GO_STATE.find("\"tables\": [").unwrap()..GO_STATE.find("\"rows_per_sec\"").unwrap()],
        "\"tables\": null,\n  ",
    );
    fs::write(&path, nulls).unwrap();
    assert!(read_state_file(&path).unwrap().tables.is_empty());
}

#[test]
fn unknown_phases_table_statuses_and_fields_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let newer = GO_STATE
        .replace(
            "\"streaming\",\n  \"elapsed",
            "\"validating\",\n  \"elapsed",
        )
        .replace("\"status\": \"copying\"", "\"status\": \"verifying\"")
        .replace(
            "\"error_count\": 0",
            "\"error_count\": 0, \"from_the_future\": {\"x\": [1]}",
        );
    fs::write(&path, newer).unwrap();
    let s = read_state_file(&path).unwrap();
    assert_eq!(s.phase, Phase::Other("validating".into()));
    assert_eq!(s.phase.to_string(), "validating");
    assert_eq!(s.tables[1].status, TableStatus::Other("verifying".into()));
    let report = pgmigrator_metrics::status::render(&s, s.timestamp);
    assert!(
        report
            .lines()
            .any(|l| l.contains("orders") && l.contains("verifying")),
        "{report}"
    );

    // Written back, the names we do not know are kept.
    write_state_file(&path, &s).unwrap();
    let again = read_state_file(&path).unwrap();
    assert_eq!(again.phase, s.phase);
    assert_eq!(again.tables[1].status, s.tables[1].status);
}

#[test]
fn bad_state_files_get_typed_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let check = |kind_ok: &dyn Fn(&StateFileErrorKind) -> bool, wording: &str| {
        let err = read_state_file(&path).unwrap_err();
        assert!(kind_ok(err.kind()), "{err:?}");
        assert_eq!(err.path(), path);
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(wording), "{message}");
    };

    check(
        &|k| matches!(k, StateFileErrorKind::NotFound),
        "no migration state at",
    );

    fs::write(&path, "").unwrap();
    check(
        &|k| {
            matches!(
                k,
                StateFileErrorKind::InvalidJson {
                    line: 1,
                    column: 0,
                    ..
                }
            )
        },
        "invalid JSON at line 1, column 0",
    );

    let full = serde_json::to_string_pretty(&Snapshot::default()).unwrap();
    fs::write(&path, &full[..full.len() / 2]).unwrap();
    check(
        &|k| matches!(k, StateFileErrorKind::InvalidJson { .. }),
        "invalid JSON at line",
    );

    fs::write(&path, b"\x00\xffgarbage\x89PNG").unwrap();
    check(
        &|k| {
            matches!(
                k,
                StateFileErrorKind::InvalidJson {
                    line: 1,
                    column: 1,
                    ..
                }
            )
        },
        "invalid JSON at line 1, column 1",
    );

    fs::write(&path, "[1, 2, 3]").unwrap();
    check(
        &|k| matches!(k, StateFileErrorKind::InvalidJson { .. }),
        "invalid JSON",
    );

    fs::write(&path, r#"{"timestamp": "yesterday", "phase": "copy"}"#).unwrap();
    check(
        &|k| matches!(k, StateFileErrorKind::InvalidJson { .. }),
        "invalid JSON",
    );

    fs::write(&path, GO_STATE.replace("\"0/1A3B4C5\"", "\"0/ZZZ\"")).unwrap();
    check(
        &|k| matches!(k, StateFileErrorKind::InvalidJson { .. }),
        "invalid LSN",
    );
}

#[test]
fn a_directory_or_fifo_fails_at_once_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let as_dir = dir.path().join("state.json");
    fs::create_dir(&as_dir).unwrap();
    let err = read_state_file(&as_dir).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            StateFileErrorKind::NotRegularFile("a directory")
        ),
        "{err}"
    );

    let fifo = dir.path().join("fifo.json");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c_path` is a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            read_state_file(&fifo)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    });
    let result = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a FIFO must not block");
    let message = result.unwrap_err();
    assert!(
        message.contains("not a regular file (it is a FIFO)"),
        "{message}"
    );
}

#[test]
fn a_100_mb_file_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let file = fs::File::create(&path).unwrap();
    file.set_len(100 * 1024 * 1024).unwrap(); // sparse: no 100 MB written
    let err = read_state_file(&path).unwrap_err();
    assert!(
        matches!(err.kind(), StateFileErrorKind::TooLarge(104_857_600)),
        "{err}"
    );
    assert!(err.to_string().contains("too large"));
}

#[test]
fn write_state_file_round_trips_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let snapshot: Snapshot = serde_json::from_str(GO_STATE).unwrap();
    write_state_file(&path, &snapshot).unwrap();
    let first = read_state_file(&path).unwrap();
    // Timestamps are kept to the millisecond; everything else as it was.
    assert_eq!(first.timestamp.nanosecond(), 234_000_000);
    assert_eq!(
        Snapshot {
            timestamp: snapshot.timestamp,
            ..first.clone()
        },
        snapshot
    );
    write_state_file(&path, &first).unwrap();
    assert_eq!(read_state_file(&path).unwrap(), first);
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("{\n  \"timestamp\": \"2026-02-27T14:23:01.234Z\",\n"),
        "{text}"
    );
    // Only its owner may read it (the umask may narrow that, never widen).
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn a_planted_symlink_is_replaced_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "precious").unwrap();
    let path = dir.path().join("state.json");
    std::os::unix::fs::symlink(&victim, &path).unwrap();
    write_state_file(&path, &Snapshot::default()).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    assert!(
        !fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_failed_write_keeps_the_previous_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    write_state_file(&path, &Snapshot::default()).unwrap();
    // Writing through a path whose directory is a regular file fails.
    let blocked = path.join("state.json");
    assert!(write_state_file(&blocked, &Snapshot::default()).is_err());
    assert_eq!(read_state_file(&path).unwrap(), Snapshot::default());
    assert!(temp_files(dir.path()).is_empty());
}

#[tokio::test(start_paused = true)]
async fn persister_writes_every_two_seconds_and_once_more_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("state.json");
    let collector = Collector::new();
    let persister = StatePersister::start(collector.clone(), &path).unwrap();
    assert_eq!(persister.path(), path);
    let parent_mode = fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(parent_mode & 0o777, 0o700);

    collector.set_phase(Phase::Copy).await;
    collector.set_tables(three_tables()).await;
    tokio::time::sleep(Duration::from_millis(4100)).await;
    assert!(persister.writes() >= 3, "{}", persister.writes());

    collector.record_applied(Lsn(42), 7, 70).await;
    persister.stop().await.unwrap();
    let saved = read_state_file(&path).unwrap();
    assert_eq!(
        saved.total_rows, 7,
        "the final write includes the last updates"
    );
    assert_eq!(saved.phase, Phase::Copy);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(temp_files(path.parent().unwrap()).is_empty());
}

/// A persister writing `home/state.json` below `dir`, once it has written.
async fn persister_in(dir: &Path) -> (PathBuf, PathBuf, StatePersister) {
    let home = dir.join("home");
    let path = home.join("state.json");
    let persister = StatePersister::start(Collector::new(), &path).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(persister.writes(), 1);
    (home, path, persister)
}

#[tokio::test(start_paused = true)]
async fn a_removed_directory_is_recreated_on_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let (home, path, persister) = persister_in(dir.path()).await;
    fs::remove_dir_all(&home).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(read_state_file(&path).is_ok());
    persister.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_writes_are_counted_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (home, path, persister) = persister_in(dir.path()).await;
    let good = fs::read(&path).unwrap();
    // Swap the directory for a regular file: every write now fails.
    fs::remove_dir_all(&home).unwrap();
    fs::File::create(&home).unwrap().write_all(&good).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(persister.failures() >= 2, "{}", persister.failures());
    // Put the directory back: the next tick writes again.
    fs::remove_file(&home).unwrap();
    fs::create_dir(&home).unwrap();
    let writes = persister.writes();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(persister.writes() > writes);
    assert!(read_state_file(&path).is_ok());
    persister.stop().await.unwrap();
}

#[tokio::test]
async fn a_persister_refuses_a_directory_as_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = StatePersister::start(Collector::new(), dir.path()).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
}

#[tokio::test]
async fn dropping_a_persister_still_makes_the_final_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let collector = Collector::new();
    let persister = StatePersister::start(collector.clone(), &path).unwrap();
    collector.set_phase(Phase::Done).await;
    let mut watcher = collector.watch();
    drop(persister);
    // The final write flushes the collector first; wait for it to land.
    for _ in 0..500 {
        if read_state_file(&path).is_ok_and(|s| s.phase == Phase::Done) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = watcher.changed().await;
    panic!("the dropped persister never wrote the final state");
}

#[tokio::test]
async fn a_persister_refuses_a_device_fifo_socket_or_link_at_its_path() {
    use std::os::unix::net::UnixListener;
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("null");
    // The same device as /dev/null (char 1:3); only root may make it.
    let made = std::process::Command::new("mknod")
        .arg(&device)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    let fifo = dir.path().join("fifo");
    crate::make_fifo(&fifo);
    let socket = dir.path().join("socket");
    let _listener = UnixListener::bind(&socket).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
    let mut cases = vec![
        (fifo, "a FIFO"),
        (socket, "a socket"),
        (link, "a symbolic link"),
    ];
    if made {
        cases.push((device, "a device"));
    }
    for (path, what) in cases {
        let before = fs::symlink_metadata(&path).unwrap().file_type();
        let err = StatePersister::start(Collector::new(), &path).unwrap_err();
        assert!(err.to_string().contains(what), "{err}");
        // Left exactly as it was.
        assert_eq!(fs::symlink_metadata(&path).unwrap().file_type(), before);
    }
}

#[tokio::test]
async fn a_second_writer_of_one_state_file_is_refused_with_the_holders_pid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let first = StatePersister::start(Collector::new(), &path).unwrap();
    let err = StatePersister::start(Collector::new(), &path).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("being written by another pgmigrator"),
        "{message}"
    );
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    // Once the first stops, the file is free again.
    first.stop().await.unwrap();
    StatePersister::start(Collector::new(), &path)
        .unwrap()
        .stop()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_new_directory_is_private_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("home").join("state.json");
    StatePersister::start(Collector::new(), &path)
        .unwrap()
        .stop()
        .await
        .unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test(start_paused = true)]
async fn failed_writes_reach_the_snapshot_and_stop_reports_the_final_one() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let path = home.join("state.json");
    let collector = Collector::new();
    let persister = StatePersister::start(collector.clone(), &path).unwrap();
    fs::remove_dir_all(&home).unwrap();
    fs::File::create(&home).unwrap();
    // Many failures, one report a minute: not one error per tick.
    tokio::time::sleep(Duration::from_secs(30)).await;
    collector.flush().await;
    let snapshot = collector.snapshot();
    assert!(persister.failures() >= 10, "{}", persister.failures());
    assert_eq!(snapshot.error_count, 1, "{:?}", snapshot.errors);
    assert!(
        snapshot.last_error.contains("cannot write the state file"),
        "{}",
        snapshot.last_error
    );
    let err = persister.stop().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists, "{err}");
}

#[test]
fn a_state_file_that_is_a_link_is_refused_and_a_bad_one_is_not_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("other-migration.json");
    write_state_file(&elsewhere, &Snapshot::default()).unwrap();
    let link = dir.path().join("state.json");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let err = read_state_file(&link).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            StateFileErrorKind::NotRegularFile("a symbolic link")
        ),
        "{err}"
    );

    // A planted file of the wrong shape: the error says where, not what.
    let planted = dir.path().join("planted.json");
    fs::write(&planted, r#"{"phase": "copy", "tables": "SECRET-CONTENT"}"#).unwrap();
    let err = read_state_file(&planted).unwrap_err().to_string();
    assert!(!err.contains("SECRET"), "{err}");
    assert!(err.contains("line 1"), "{err}");
    fs::write(&planted, "SECRET-CONTENT").unwrap();
    let err = read_state_file(&planted).unwrap_err().to_string();
    assert!(!err.contains("SECRET"), "{err}");
}

#[test]
fn companion_files_that_are_links_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.json");
    fs::write(&target, "[]").unwrap();
    let logs = dir.path().join("state.logs.json");
    std::os::unix::fs::symlink(&target, &logs).unwrap();
    let err = pgmigrator_metrics::read_logs_file(&logs).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    let history = dir.path().join("state.history.json");
    std::os::unix::fs::symlink(&target, &history).unwrap();
    assert!(pgmigrator_metrics::read_history_file(&history).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_state_file_swapped_for_a_link_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let ours = Snapshot {
        total_rows: 1,
        ..Snapshot::default()
    };
    write_state_file(&path, &ours).unwrap();
    let mirror = pgmigrator_metrics::StateFileMirror::start(&path);
    let snapshots = mirror.snapshots();
    assert_eq!(snapshots.snapshot().total_rows, 1);

    let theirs = dir.path().join("another-migration.json");
    write_state_file(
        &theirs,
        &Snapshot {
            total_rows: 999,
            ..Snapshot::default()
        },
    )
    .unwrap();
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&theirs, &path).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown = snapshots.snapshot();
        if shown.last_error.contains("symbolic link") {
            break shown;
        }
        assert!(tokio::time::Instant::now() < deadline, "{shown:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(shown.total_rows, 1, "the link's target is never served");
    assert!(shown.stale);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_state_file_listing_too_many_tables_is_cut_and_says_so() {
    use pgmigrator_metrics::mirror::MAX_MIRRORED_TABLES;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let tables: Vec<_> = (0..=MAX_MIRRORED_TABLES)
        .map(|n| pgmigrator_metrics::TableProgress::new("s", &format!("t{n}"), 1, 1))
        .collect();
    write_state_file(
        &path,
        &Snapshot {
            tables,
            ..Snapshot::default()
        },
    )
    .unwrap();
    let mirror = pgmigrator_metrics::StateFileMirror::start(&path);
    let shown = mirror.snapshots().snapshot();
    assert_eq!(shown.tables.len(), MAX_MIRRORED_TABLES);
    assert!(
        shown
            .last_error
            .contains(&format!("lists {} tables", MAX_MIRRORED_TABLES + 1)),
        "{}",
        shown.last_error
    );
}
