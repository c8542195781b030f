use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use pgmigrator_metrics::{Lsn, Phase, Snapshot, write_state_file};

fn pgmigrator(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(args)
        .env("PGMIGRATOR_HOME", home)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn saved_state(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("state.json");
    let snapshot = Snapshot {
        phase: Phase::Streaming,
        applied_lsn: Lsn(0x1A3B4C5),
        timestamp: time::OffsetDateTime::now_utc(),
        ..Snapshot::default()
    };
    write_state_file(&path, &snapshot).unwrap();
    path
}

#[test]
fn status_reads_the_state_file_from_pgmigrator_home() {
    let dir = tempfile::tempdir().unwrap();
    saved_state(dir.path());
    let out = pgmigrator(&["status"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("Phase:        streaming\n"), "{stdout}");
    assert!(stdout.contains("Applied LSN:  0/1A3B4C5\n"));
}

#[test]
fn status_json_prints_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved_state(dir.path());
    let out = pgmigrator(
        &["status", "--json", "--state-file", path.to_str().unwrap()],
        Path::new("/nonexistent"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let snapshot: Snapshot = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snapshot.applied_lsn, Lsn(0x1A3B4C5));
}

#[test]
fn missing_or_invalid_state_exits_1_with_one_line_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let out = pgmigrator(&["status"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(out.stdout.is_empty());

    fs::write(&path, "{\"phase\": ").unwrap();
    let out = pgmigrator(&["status"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("invalid JSON at line 1, column"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let out = pgmigrator(&["status"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a regular file"));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        pgmigrator(&["status", "--bogus"], dir.path()).status.code(),
        Some(2)
    );
    assert_eq!(
        pgmigrator(&["frobnicate"], dir.path()).status.code(),
        Some(2)
    );
    assert_eq!(pgmigrator(&[], dir.path()).status.code(), Some(2));
}
