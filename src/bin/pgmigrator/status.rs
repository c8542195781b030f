//! `status`: the state file as a report, once or redrawn every second.

use std::time::Duration;

use pgmigrator_metrics::printable::{printable, printable_json};
use pgmigrator_metrics::{read_state_file, status};
use time::OffsetDateTime;

use crate::args::StatusArgs;
use crate::output::print;
use crate::signals::shutdown_signal;
use crate::{Failure, state_path};

pub(crate) fn once(args: &StatusArgs) -> Result<(), Failure> {
    let path = state_path(args.state_file.clone())?;
    let snapshot = read_state_file(&path)?;
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&snapshot)?;
        json.push('\n');
        printable_json(json)
    } else {
        let mut text = status::render(&snapshot, OffsetDateTime::now_utc());
        if let Some(count) = args.logs {
            let logs = pgmigrator_metrics::companion_path(&path, "logs");
            match pgmigrator_metrics::read_logs_file(&logs) {
                Ok(entries) => text.push_str(&status::render_logs(&entries, count)),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    text.push_str(&status::render_logs(&[], count));
                }
                Err(err) => return Err(format!("{}: {err}", logs.display()).into()),
            }
        }
        text
    };
    print(&text)?;
    Ok(())
}

/// Redraws the report every second until Ctrl-C; a file that goes missing
/// or turns invalid is reported in place and the watch goes on.
pub(crate) async fn watch(args: &StatusArgs) -> Result<(), Failure> {
    let path = state_path(args.state_file.clone())?;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let stop = shutdown_signal(None);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return Ok(()),
            _ = ticks.tick() => {
                let text = match read_state_file(&path) {
                    Ok(snapshot) => status::render(&snapshot, OffsetDateTime::now_utc()),
                    Err(err) => format!("{}\n", printable(&err.to_string())),
                };
                // Home the cursor and clear the screen, then draw; stop
                // once nobody reads (`status --watch | head`).
                if !print(&format!("\x1b[H\x1b[2J{text}"))? {
                    return Ok(());
                }
            }
        }
    }
}
