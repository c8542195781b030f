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

#[test]
fn demo_with_a_duration_stops_by_itself_and_leaves_a_valid_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--duration",
            "3s",
            "--speed",
            "10",
        ])
        .arg("--state-file")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("Dashboard: http://127.0.0.1:"),
        "{stdout}"
    );
    let snapshot = pgmigrator_metrics::read_state_file(&path).unwrap();
    assert_eq!(snapshot.tables_total, 24);
    assert!(snapshot.phase != Phase::Idle);
}

#[test]
fn demo_refuses_a_public_address_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["demo", "--listen", "0.0.0.0:0", "--duration", "1s"])
        .env("PGMIGRATOR_HOME", dir.path())
        .env_remove("PGMIGRATOR_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("without a token"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn serve_republishes_a_state_file_and_flags_it_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved_state(dir.path());
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (_serve, url) =
        crate::start_pgmigrator(&["serve".as_ref(), "--state-file".as_ref(), path.as_os_str()]);
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut body = String::new();
    for _ in 0..50 {
        body = raw_get(&addr, "/api/v1/status");
        if body.contains("\"stale\":true") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(body.contains("\"stale\":true"), "{body}");
    assert!(body.contains("\"phase\":\"streaming\""), "{body}");
    assert!(body.contains("\"applied_lsn\":\"0/1A3B4C5\""), "{body}");
}

#[test]
fn status_watch_redraws_every_second_until_terminated() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved_state(dir.path());
    let child = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["status", "--watch", "--state-file"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let draws = text(&out.stdout).matches("Phase:        streaming").count();
    assert!((2..=4).contains(&draws), "{draws} draws");
}

/// A minimal HTTP GET for the CLI tests (the server is another process).
fn raw_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}
