use std::fs;
use std::os::unix::fs::PermissionsExt;
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

/// Waits (`secs` at most) until `check` holds, failing with `what`.
fn wait_until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What a child writes, read as it comes: tests wait for what they expect
/// to see instead of sleeping and hoping it was written.
struct Screen {
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Screen {
    fn read(mut from: impl std::io::Read + Send + 'static) -> Screen {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&seen);
        let reader = std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = from.read(&mut buffer) {
                kept.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Screen { seen, reader }
    }

    fn text(&self) -> String {
        text(&self.seen.lock().unwrap())
    }

    /// Waits (10 s at most) until `needle` was written `count` times.
    fn wait_for(&self, needle: &str, count: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.text().matches(needle).count() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} not written {count} times: {:?}",
                self.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Everything written, once the child closed its end.
    fn finish(self) -> String {
        let Screen { seen, reader } = self;
        reader.join().unwrap();
        text(&seen.lock().unwrap())
    }
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["status", "--watch", "--state-file"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let screen = Screen::read(child.stdout.take().unwrap());
    let drawing = "Phase:        streaming";
    screen.wait_for(drawing, 1);
    let first = std::time::Instant::now();
    screen.wait_for(drawing, 3);
    // Two redraws a second apart: never sooner (a lower bound cannot
    // fail on a slow machine).
    assert!(
        first.elapsed() >= std::time::Duration::from_millis(1500),
        "{:?}",
        first.elapsed()
    );
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(screen.finish().matches(drawing).count() >= 3);
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

/// `pgmigrator demo ARGS` for `duration`, with its state file at `path`.
fn demo(path: &Path, duration: &str, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "20",
            "--duration",
            duration,
        ])
        .arg("--state-file")
        .arg(path)
        .args(extra)
        .output()
        .unwrap()
}

/// Runs `pgmigrator demo` with its state file at `path` as the
/// unprivileged user `nobody`, when this test runs as root (CI does);
/// `None` otherwise.
fn demo_as_nobody(path: &Path) -> Option<Output> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root to run as nobody");
        return None;
    }
    Some(
        Command::new("runuser")
            .args(["-u", "nobody", "--", env!("CARGO_BIN_EXE_pgmigrator")])
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--duration",
                "5s",
                "--state-file",
            ])
            .arg(path)
            .env("PGMIGRATOR_HOME", "/nonexistent")
            .output()
            .unwrap(),
    )
}

#[test]
fn an_unwritable_state_file_fails_at_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // Root's 0700 temporary directory: nobody cannot write there.
    let path = dir.path().join("state.json");
    let Some(out) = demo_as_nobody(&path) else {
        return;
    };
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot use the state file"), "{stderr}");
    assert!(
        !text(&out.stdout).contains("Stopped"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_file_another_user_planted_in_a_sticky_directory_is_not_taken_for_ours() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // Root plants a state file nobody cannot replace (sticky bit).
    let path = saved_state(&shared);
    let planted = fs::read(&path).unwrap();
    let Some(out) = demo_as_nobody(&path) else {
        return;
    };
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot use the state file"), "{stderr}");
    assert_eq!(fs::read(&path).unwrap(), planted);
}

#[test]
fn a_fifo_or_device_at_the_state_file_path_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    crate::make_fifo(&fifo);
    let device = dir.path().join("null");
    let made = Command::new("mknod")
        .arg(&device)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    let mut paths = vec![fifo];
    if made {
        paths.push(device);
    }
    for path in paths {
        let before = fs::symlink_metadata(&path).unwrap().file_type();
        let out = demo(&path, "5s", &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
        assert_eq!(fs::symlink_metadata(&path).unwrap().file_type(), before);
    }
}

#[test]
fn a_second_pipeline_on_the_same_state_file_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (first, _url) =
        crate::start_pgmigrator(&["demo".as_ref(), "--state-file".as_ref(), path.as_os_str()]);
    // The dashboard's address is printed just before the state file is
    // taken: the first has it once it has written it.
    wait_until(10, "the first demo never wrote its state", || path.exists());
    let out = demo(&path, "5s", &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("another pgmigrator (pid {})", first.0.id())),
        "{stderr}"
    );
}

#[test]
fn a_final_write_that_fails_is_reported_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let path = home.join("state.json");
    let child = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["demo", "--listen", "127.0.0.1:0", "--duration", "3s"])
        .arg("--state-file")
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(10, "the demo never wrote its state", || path.exists());
    // The directory turns into a file: no write can land any more.
    fs::remove_dir_all(&home).unwrap();
    fs::write(&home, "").unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("the final state could not be written"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot write the state file"),
        "a warning while it ran: {stderr}"
    );
    assert!(
        !stdout.contains("the final state is in the state file"),
        "{stdout}"
    );
}

#[test]
fn status_escapes_control_characters_and_cuts_huge_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut table =
        pgmigrator_metrics::TableProgress::new("public", "t\x1b]52;c;ZXZpbA==\x07", 10, 0);
    table.name.push('\u{9b}');
    let snapshot = Snapshot {
        phase: Phase::Streaming,
        tables: vec![table],
        error_count: 1,
        last_error: format!("\x1b]0;owned\x07{}", "e".repeat(5_000_000)),
        timestamp: time::OffsetDateTime::now_utc(),
        ..Snapshot::default()
    };
    write_state_file(&path, &snapshot).unwrap();
    for json in [false, true] {
        let mut args = vec!["status", "--state-file", path.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let out = pgmigrator(&args, dir.path());
        assert!(out.status.success());
        let stdout = text(&out.stdout);
        assert!(!stdout.contains(['\x1b', '\x07', '\u{9b}']), "json={json}");
        if !json {
            assert!(stdout.len() < 10_000, "{} bytes", stdout.len());
        }
    }
    // A hostile path in an error line is escaped too.
    let out = pgmigrator(
        &["status", "--state-file", "/nonexistent/\x1b]0;x\x07"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).contains('\x1b'), "{}", text(&out.stderr));
}

#[test]
fn zero_negative_nan_and_overflowing_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["monitor", "--source", "x", "--dest", "y", "--interval", "0"][..],
        &[
            "monitor",
            "--source",
            "x",
            "--dest",
            "y",
            "--interval",
            "-1s",
        ],
        &["demo", "--speed", "1e-300"],
        &["demo", "--speed", "NaN"],
        &["demo", "--speed", "0"],
        &["demo", "--tables", "0"],
        &["demo", "--duration", "0s"],
        &["demo", "--duration", "99999999999999999999999h"],
    ] {
        let out = pgmigrator(args, dir.path());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn sighup_stops_demo_with_the_final_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (mut demo, _url) =
        crate::start_pgmigrator(&["demo".as_ref(), "--state-file".as_ref(), path.as_os_str()]);
    // The pipeline runs (and with it the wait for a signal) once the
    // state file shows a phase.
    wait_until(10, "the demo never started", || {
        pgmigrator_metrics::read_state_file(&path).is_ok_and(|s| s.phase != Phase::Idle)
    });
    // SAFETY: signals our own child.
    unsafe { libc::kill(demo.0.id() as i32, libc::SIGHUP) };
    let status = demo.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(pgmigrator_metrics::read_state_file(&path).is_ok());
}

#[test]
fn status_watch_ends_when_its_reader_goes() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let path = saved_state(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["status", "--watch", "--state-file"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read the first draw, then hang up, as `| head -2` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    let _ = stdout.read(&mut first).unwrap();
    drop(stdout);
    let status = exits_within(&mut child, 5, "status --watch with nobody reading");
    assert!(status.success(), "{status:?}");
}

/// The child's exit status, once it exits within `seconds`; panics naming
/// `what` (after killing it) otherwise.
fn exits_within(
    child: &mut std::process::Child,
    seconds: u64,
    what: &str,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not exit within {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn idle_connections_cannot_take_the_descriptors_the_state_file_needs() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgmigrator"));
    command
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--speed",
            "20",
            "--state-file",
        ])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 200,
                rlim_max: 200,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _child = crate::Running(child);
    let addr = line
        .trim()
        .trim_start_matches("Dashboard: http://")
        .trim_end_matches('/')
        .to_owned();
    // Twice the process's descriptors, held open and idle.
    let held: Vec<_> = (0..400)
        .filter_map(|_| std::net::TcpStream::connect(&addr).ok())
        .collect();
    assert!(held.len() > 200);
    let before = pgmigrator_metrics::read_state_file(&path)
        .unwrap()
        .timestamp;
    // Written again (every 2 s) while every descriptor is taken.
    let mut after = None;
    wait_until(20, "the state file stopped being written", || {
        after = pgmigrator_metrics::read_state_file(&path)
            .ok()
            .filter(|s| s.timestamp > before);
        after.is_some()
    });
    let after = after.unwrap();
    assert!(
        after
            .errors
            .iter()
            .all(|e| !e.message.contains("state file")),
        "{:?}",
        after.errors
    );
    drop(held);
    wait_until(10, "the places were never given back", || {
        raw_get(&addr, "/healthz").contains("200 OK")
    });
}

#[test]
fn serve_says_on_stderr_when_its_state_file_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
        .args(["serve", "--listen", "127.0.0.1:0", "--state-file"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stderr.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("pgmigrator: warn: no migration state at"),
        "{line}"
    );
    assert!(line.contains("typo.json"), "{line}");
}

#[test]
fn a_token_file_replaces_the_flag_and_weak_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    fs::write(&token, "0123456789abcdefXYZ\n").unwrap();
    let (_served, url) = crate::start_pgmigrator(&[
        "serve".as_ref(),
        "--state-file".as_ref(),
        saved_state(dir.path()).as_os_str(),
        "--token-file".as_ref(),
        token.as_os_str(),
    ]);
    // The line ends in `/?token=…` when a token is set.
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(raw_get(&addr, "/api/v1/status").contains("401"));
    assert!(raw_get(&addr, "/?token=0123456789abcdefXYZ").contains("200 OK"));

    fs::write(&token, "\n").unwrap();
    let empty = pgmigrator(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(empty.status.code(), Some(1));
    assert!(text(&empty.stderr).contains("empty"));
    // Not a token: a large file (or a device) is refused unread.
    fs::write(&token, "x".repeat(5000)).unwrap();
    for path in [token.to_str().unwrap(), "/dev/zero"] {
        let out = pgmigrator(
            &["serve", "--listen", "127.0.0.1:0", "--token-file", path],
            dir.path(),
        );
        assert_eq!(out.status.code(), Some(1), "{path}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("larger than 4 KiB") || stderr.contains("not a regular file"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("xxxx"),
            "the content is never shown: {stderr}"
        );
    }
    for weak in [" ", "short"] {
        let out = Command::new(env!("CARGO_BIN_EXE_pgmigrator"))
            .args(["serve", "--listen", "0.0.0.0:0", "--token", weak])
            .env("PGMIGRATOR_HOME", dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{weak:?}");
    }
}

/// `pgmigrator tui` on `state_file`, in a 100×30 terminal that `script`
/// provides.
fn tui_in_a_terminal(state_file: &Path) -> Command {
    let command = format!(
        "stty rows 30 cols 100; exec {} tui --state-file {}",
        env!("CARGO_BIN_EXE_pgmigrator"),
        state_file.display()
    );
    let mut script = Command::new("script");
    script
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stderr(std::process::Stdio::null());
    script
}

#[test]
fn sighup_restores_the_terminal_the_tui_took_over() {
    let dir = tempfile::tempdir().unwrap();
    // `script` gives the dashboard a terminal and records what it draws.
    let mut script = tui_in_a_terminal(&saved_state(dir.path()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let screen = Screen::read(script.stdout.take().unwrap());
    let running = crate::Running(script);
    // Wait for the dashboard to be drawn, then hang up on it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let tui = loop {
        let children = Command::new("pgrep")
            .args(["-P", &running.0.id().to_string()])
            .output()
            .unwrap();
        if let Some(pid) = text(&children.stdout).lines().next() {
            break pid.trim().parse::<i32>().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dashboard never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    // It took the alternate screen and drew.
    screen.wait_for("\x1b[?1049h", 1);
    screen.wait_for("STREAMING", 1);
    // SAFETY: signals our own grandchild.
    unsafe { libc::kill(tui, libc::SIGHUP) };
    let mut running = running;
    let status = running.0.wait().unwrap();
    let drawn = screen.finish();
    assert!(drawn.contains("\x1b[?1049l"), "and gave it back on SIGHUP");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_key_typed_in_a_real_terminal_reaches_the_tui() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut script = tui_in_a_terminal(&saved_state(dir.path()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once it drew, it reads keys.
    let screen = Screen::read(script.stdout.take().unwrap());
    screen.wait_for("\x1b[?1049h", 1);
    screen.wait_for("STREAMING", 1);
    // `q`, typed: script passes it to the terminal the TUI reads.
    script.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    let status = exits_within(&mut script, 10, "the TUI, told q,");
    assert!(status.success(), "{status:?}");
}

#[test]
fn serving_commands_take_a_certificate_and_say_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::pki::Ca::new("test CA");
    let (cert, key) = ca
        .issue(&["localhost"], "localhost")
        .write(dir.path(), "server", 0o600);
    let path = saved_state(dir.path());
    let (_serve, url) = crate::start_pgmigrator(&[
        "serve".as_ref(),
        "--state-file".as_ref(),
        path.as_os_str(),
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        key.as_os_str(),
    ]);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // A key that is not there, or a certificate without a key: refused
    // before anything listens.
    let missing = dir.path().join("missing.key");
    let out = pgmigrator(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            missing.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--tls-key") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let out = pgmigrator(&["serve", "--tls-cert", cert.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_token_served_without_tls_off_loopback_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    // A documentation address (TEST-NET-1) that no interface has: the
    // warning comes first, then binding fails; nothing is sent anywhere.
    let out = pgmigrator(
        &[
            "serve",
            "--listen",
            "192.0.2.1:7654",
            "--token",
            "0123456789abcdefXYZ",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("crosses the network in clear"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_follows_several_state_files_each_under_its_id_worst_first() {
    use futures_util::StreamExt;
    use pgmigrator_metrics::{Phase, Severity, SlotHealth, Snapshot, WalStatus, write_state_file};
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let shop = dir.path().join("shop");
    let billing = dir.path().join("billing.json");
    std::fs::create_dir(&shop).unwrap();
    write_state_file(
        &shop.join("state.json"),
        &Snapshot {
            phase: Phase::Copy,
            timestamp: now,
            tables_total: 3,
            lag_bytes: 4096,
            ..Snapshot::default()
        },
    )
    .unwrap();
    write_state_file(
        &billing,
        &Snapshot {
            phase: Phase::Streaming,
            timestamp: now,
            alerts: vec![crate::firing_lag(Severity::Warning, now)],
            ..Snapshot::default()
        },
    )
    .unwrap();
    let crm = dir.path().join("crm.json");
    write_state_file(
        &crm,
        &Snapshot {
            phase: Phase::Streaming,
            timestamp: now,
            slot: Some(SlotHealth {
                name: "crm_sub".into(),
                wal_status: WalStatus::Lost,
                ..SlotHealth::default()
            }),
            ..Snapshot::default()
        },
    )
    .unwrap();
    let shop_state = shop.join("state.json");
    let (_serve, url) = crate::start_pgmigrator(&[
        "serve".as_ref(),
        "--state-file".as_ref(),
        shop_state.as_os_str(),
        "--state-file".as_ref(),
        billing.as_os_str(),
        "--state-file".as_ref(),
        crm.as_os_str(),
    ]);
    let get = |path: &str| {
        let url = format!("{url}{path}");
        async move { crate::http::get(&url, &[]).await }
    };
    let (status, _, body) = get("api/v1/migrations").await;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Worst first: an alert firing, then a lost slot, then the rest.
    assert_eq!(list[0]["id"], "billing");
    assert_eq!(list[0]["alerts_firing"], 1);
    assert_eq!(list[0]["alert_severity"], "warning");
    assert_eq!(list[0]["cutover_ready"], serde_json::Value::Null);
    assert_eq!(list[1]["id"], "crm");
    assert_eq!(list[1]["slot_wal_status"], "lost");
    assert_eq!(list[2]["id"], "shop");
    assert_eq!(list[2]["phase"], "copy");
    assert_eq!(list[2]["lag_bytes"], 4096);
    for key in [
        "tables_total",
        "tables_copied",
        "lag_seconds",
        "eta_sec",
        "stale",
    ] {
        assert!(list[0].get(key).is_some(), "{key}: {body}");
    }
    let (_, _, billing_status) = get("api/v1/migrations/billing/status").await;
    let billing_status: serde_json::Value = serde_json::from_str(&billing_status).unwrap();
    assert_eq!(billing_status["phase"], "streaming");
    let (_, _, first) = get("api/v1/status").await;
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        first["phase"], "copy",
        "the unprefixed endpoints serve the first"
    );
    for missing in [
        "api/v1/migrations/nope/status",
        "api/v1/migrations/shop/nope",
    ] {
        assert_eq!(get(missing).await.0, 404, "{missing}");
    }

    // One scrape for the fleet: a `migration` label on each series.
    let (_, _, metrics) = get("metrics").await;
    for id in ["shop", "billing", "crm"] {
        let series = format!("pgmigrator_replication_lag_bytes{{migration=\"{id}\"}}");
        assert!(metrics.contains(&series), "{series}: {metrics}");
    }
    assert!(metrics.contains("pgmigrator_slot_wal_status{migration=\"crm\",status=\"lost\"} 1"));
    crate::tools::promtool_check(&metrics);

    // Each migration's own WebSocket.
    let ws_url = |id: &str| format!("{}api/v1/migrations/{id}/ws", url.replacen("http", "ws", 1));
    assert!(
        tokio_tungstenite::connect_async(ws_url("nope"))
            .await
            .is_err()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url("crm"))
        .await
        .unwrap();
    let first = ws.next().await.unwrap().unwrap().into_text().unwrap();
    let first: Snapshot = serde_json::from_str(&first).unwrap();
    assert_eq!(first.slot.unwrap().name, "crm_sub");
}

/// `demo` for a moment with `args` and `RUST_LOG` as given: its stderr.
fn demo_stderr(args: &[&str], rust_log: Option<&str>) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_pgmigrator"));
    command
        .args(["demo", "--listen", "127.0.0.1:0", "--duration", "1s"])
        .args(args)
        .env("PGMIGRATOR_HOME", dir.path())
        .env_remove("RUST_LOG");
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let out = command.output().unwrap();
    (out.status, text(&out.stderr))
}

#[test]
fn log_level_and_rust_log_choose_what_reaches_stderr() {
    const INFO: &str = "pgmigrator: info: connecting";
    let (status, quiet) = demo_stderr(&[], None);
    assert!(status.success(), "{quiet}");
    assert!(!quiet.contains(INFO), "warnings only by default: {quiet}");

    let (_, flag) = demo_stderr(&["--log-level", "info"], None);
    assert!(flag.contains(INFO), "{flag}");
    let (_, env) = demo_stderr(&[], Some("info"));
    assert!(env.contains(INFO), "{env}");
    let (_, directive) = demo_stderr(&[], Some("warn,pgmigrator_metrics::demo=info"));
    assert!(directive.contains(INFO), "{directive}");
    let (_, other_target) = demo_stderr(&[], Some("warn,hyper=info"));
    assert!(!other_target.contains(INFO), "{other_target}");
    let (_, flag_wins) = demo_stderr(&["--log-level", "error"], Some("info"));
    assert!(!flag_wins.contains(INFO), "{flag_wins}");

    let (status, bad) = demo_stderr(&["--log-level", "loud"], None);
    assert_eq!(status.code(), Some(2), "{bad}");
    assert!(bad.contains("--log-level"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_watches_a_directory_and_serves_each_migration_that_appears() {
    use pgmigrator_metrics::{Phase, Snapshot, write_state_file};
    let dir = tempfile::tempdir().unwrap();
    let (_serve, url) = crate::start_pgmigrator(&[
        "serve".as_ref(),
        "--state-dir".as_ref(),
        dir.path().as_os_str(),
    ]);
    let get = |path: &str| {
        let url = format!("{url}{path}");
        async move { crate::http::get(&url, &[]).await }
    };
    let (status, _, body) = get("api/v1/migrations").await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    let (status, _, body) = get("api/v1/status").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no migration yet"), "{body}");

    let ids = || async {
        let (_, _, body) = get("api/v1/migrations").await;
        let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let mut ids: Vec<String> = list
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let appear = |name: &str, phase: Phase| {
        let folder = dir.path().join(name);
        std::fs::create_dir(&folder).unwrap();
        let snapshot = Snapshot {
            phase,
            timestamp: time::OffsetDateTime::now_utc(),
            ..Snapshot::default()
        };
        write_state_file(&folder.join("state.json"), &snapshot).unwrap();
    };
    let wait_for = |want: Vec<&'static str>| {
        let ids = &ids;
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
            loop {
                let now = ids().await;
                if now == want {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{now:?}, not {want:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    };
    appear("shop", Phase::Copy);
    wait_for(vec!["shop"]).await;
    let (status, _, body) = get("api/v1/status").await;
    assert_eq!(status, 200, "the first that appeared is the unprefixed one");
    assert!(body.contains("\"phase\":\"copy\""), "{body}");
    appear("billing", Phase::Streaming);
    // A folder without a state file is not a migration.
    std::fs::create_dir(dir.path().join("scratch")).unwrap();
    wait_for(vec!["billing", "shop"]).await;
    let (_, _, body) = get("api/v1/migrations/billing/status").await;
    assert!(body.contains("\"phase\":\"streaming\""), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_behind_a_token_passes_each_migrations_forecasts_to_every_surface() {
    use pgmigrator_metrics::{CatchUp, CatchUpState, Eta, EtaState, SlotHealth, WalStatus};
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let shop = Snapshot {
        phase: Phase::Copy,
        timestamp: now,
        tables_total: 3,
        eta_sec: Some(750.0),
        eta: Some(crate::slipping_forecast()),
        slot: Some(SlotHealth {
            name: "shop_sub".into(),
            wal_status: WalStatus::Reserved,
            safe_wal_size: Some(1 << 30),
            max_slot_wal_keep_size: Some(2 << 30),
            exhausted_in_sec: Some(2730),
            ..SlotHealth::default()
        }),
        ..Snapshot::default()
    };
    let billing = Snapshot {
        phase: Phase::Copy,
        timestamp: now,
        tables_total: 2,
        eta: Some(Eta::bare(EtaState::Stalled)),
        lag_bytes: 64 << 20,
        catch_up: Some(CatchUp {
            state: CatchUpState::FallingBehind,
            seconds: None,
            growing_bytes_per_sec: Some(2_097_152.0),
        }),
        ..Snapshot::default()
    };
    for (id, snapshot) in [("shop", &shop), ("billing", &billing)] {
        fs::create_dir(dir.path().join(id)).unwrap();
        write_state_file(&dir.path().join(id).join("state.json"), snapshot).unwrap();
    }
    let token = "a-fleet-token-0123456789";
    let (_serve, url) = crate::start_pgmigrator(&[
        "serve".as_ref(),
        "--state-dir".as_ref(),
        dir.path().as_os_str(),
        "--token".as_ref(),
        token.as_ref(),
    ]);
    let base = url.replace("?token=…", "");
    let bearer = format!("Bearer {token}");
    let get = |path: &str, authorized: bool| {
        let (url, bearer) = (format!("{base}{path}"), bearer.clone());
        async move {
            let headers = [("authorization", bearer.as_str())];
            let headers: &[(&str, &str)] = if authorized { &headers } else { &[] };
            crate::http::get(&url, headers).await
        }
    };
    assert_eq!(get("api/v1/migrations", false).await.0, 401);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let list = loop {
        let (status, _, body) = get("api/v1/migrations", true).await;
        assert_eq!(status, 200, "{body}");
        let list: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        if list.len() == 2 {
            break list;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let row = |id: &str| list.iter().find(|m| m["id"] == id).unwrap().clone();
    assert_eq!(
        row("shop")["eta"],
        serde_json::json!({"state": "estimating", "seconds": 750.0, "low": 600.0,
                           "high": 1000.0, "drift_sec": 720.0})
    );
    assert_eq!(row("shop")["slot_exhausted_in_sec"], 2730);
    assert_eq!(row("billing")["eta"]["state"], "stalled");

    let (status, _, body) = get("api/v1/migrations/billing/status", true).await;
    assert_eq!(status, 200, "{body}");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["catch_up"]["state"], "falling_behind");
    assert_eq!(status["catch_up"]["growing_bytes_per_sec"], 2_097_152.0);

    assert_eq!(get("metrics", false).await.0, 401);
    let (status, _, metrics) = get("metrics", true).await;
    assert_eq!(status, 200, "{metrics}");
    for line in [
        "pgmigrator_eta_seconds{migration=\"shop\",bound=\"low\"} 600.0",
        "pgmigrator_eta_seconds{migration=\"shop\",bound=\"high\"} 1000.0",
        "pgmigrator_eta_drift_seconds{migration=\"shop\"} 720.0",
        "pgmigrator_slot_exhaustion_seconds{migration=\"shop\"} 2730.0",
        "pgmigrator_eta_state{migration=\"billing\",state=\"stalled\"} 1.0",
        "pgmigrator_lag_growth_bytes_per_second{migration=\"billing\"} 2097152.0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
}

#[test]
fn monitor_refuses_contradictory_subscription_and_state_flags() {
    let dir = tempfile::tempdir().unwrap();
    let servers = [
        "--source",
        "postgres://a@127.0.0.1/x",
        "--dest",
        "postgres://a@127.0.0.1/y",
    ];
    for extra in [
        &["--subscription", "a", "--all-subscriptions"][..],
        &["--state-file", "s.json", "--state-dir", "d"][..],
        &["--state-file", "s.json", "--all-subscriptions"][..],
    ] {
        let args: Vec<&str> = ["monitor"]
            .iter()
            .chain(&servers)
            .chain(extra)
            .copied()
            .collect();
        let out = pgmigrator(&args, dir.path());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{extra:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("cannot be used with"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn the_tui_of_a_server_with_several_migrations_behind_a_token_lists_them_and_opens_one() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    // Behind a token, as every server off loopback is.
    let token = "a-fleet-token-0123456789";
    let mut args: Vec<std::ffi::OsString> = vec!["serve".into(), "--token".into(), token.into()];
    for (name, phase) in [("shop", Phase::Copy), ("billing", Phase::Streaming)] {
        let path = dir.path().join(format!("{name}.json"));
        let snapshot = Snapshot {
            phase,
            timestamp: now,
            ..Snapshot::default()
        };
        write_state_file(&path, &snapshot).unwrap();
        args.extend(["--state-file".into(), path.into_os_string()]);
    }
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let (_serve, url) = crate::start_pgmigrator(&args);
    let command = format!(
        "stty rows 30 cols 120; exec {} tui --api-addr {} --token {token}",
        env!("CARGO_BIN_EXE_pgmigrator"),
        url.trim_end_matches("/?token=…")
    );
    let mut script = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let drawn = Arc::new(Mutex::new(Vec::new()));
    let mut screen = script.stdout.take().unwrap();
    let reader = std::thread::spawn({
        let drawn = Arc::clone(&drawn);
        move || {
            let mut buffer = [0; 4096];
            while let Ok(n @ 1..) = screen.read(&mut buffer) {
                drawn.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        }
    });
    // Waits until the terminal has been drawn `text` since byte `from`;
    // returns where the drawing is now.
    let wait_for = |text: &str, from: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let now = drawn.lock().unwrap().clone();
            if String::from_utf8_lossy(&now[from.min(now.len())..]).contains(text) {
                return now.len();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never drew {text:?}: {}",
                String::from_utf8_lossy(&now)
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let at = wait_for("2 migrations", 0);
    let mut keys = script.stdin.take().unwrap();
    keys.write_all(b"\r").unwrap();
    let at = wait_for("COPY", at);
    keys.write_all(b"\x1b").unwrap();
    wait_for("2 migrations", at);
    keys.write_all(b"q").unwrap();
    let status = exits_within(&mut script, 10, "the TUI, told q,");
    assert!(status.success(), "{status:?}");
    drop(keys);
    reader.join().unwrap();
}
