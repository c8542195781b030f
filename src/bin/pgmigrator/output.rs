//! What the command line writes: its lines on stdout, and errors as one
//! line each.

use std::error::Error;
use std::io::{self, Write};

use pgmigrator_metrics::printable::printable;

/// An error and its causes on one line (a cause its message already
/// quotes is not repeated).
pub(crate) fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let text = inner.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = inner.source();
    }
    line
}

/// One line on stdout, flushed at once (tests and scripts read it); its
/// control characters (a hostile path, say) escaped.
pub(crate) fn say(line: &str) {
    let _ = print(&format!("{}\n", printable(line)));
}

/// One warning line on stderr, its control characters escaped.
pub(crate) fn warn(line: &str) {
    eprintln!("pgmigrator: {}", printable(line));
}

/// Writes to stdout; `false` when the reader has gone (`status | head`),
/// which is not an error.
pub(crate) fn print(text: &str) -> io::Result<bool> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(err),
    }
}
