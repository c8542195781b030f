//! External tools some tests need (`promtool`, `chromium`). `.ci/run`
//! installs them and sets `PGMIGRATOR_REQUIRE_TOOLS=1`, which turns a
//! missing tool into a failure; elsewhere such a test says it skipped.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Whether `tool` is there; panics when it is missing and CI requires it.
pub fn available(tool: &str) -> bool {
    if Path::new(tool).exists() {
        return true;
    }
    assert!(
        std::env::var_os("PGMIGRATOR_REQUIRE_TOOLS").is_none(),
        "{tool} is required (PGMIGRATOR_REQUIRE_TOOLS is set) but missing"
    );
    eprintln!("SKIPPED: {tool} is not installed (.ci/run installs it)");
    false
}

/// `promtool check metrics` on `text`; panics with its complaints.
pub fn promtool_check(text: &str) {
    let promtool = "/usr/bin/promtool";
    if !available(promtool) {
        return;
    }
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
