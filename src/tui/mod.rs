//! The terminal dashboard, for operators who watch a migration over SSH.
//!
//! A [`Feed`] brings snapshots, the link state and log lines from any
//! source: in-process from a [`Collector`](crate::Collector)'s `watch`
//! receiver, from a state file ([`StateFileMirror`](crate::StateFileMirror)),
//! or remotely over a running server's WebSocket ([`Feed::remote`]). [`run`]
//! takes over the terminal until `q`, Esc or Ctrl-C, or until its shutdown
//! future completes, and always gives the terminal back (also on panic).
//! The dashboard only ever holds the latest snapshot, so a terminal that
//! stops drawing never slows the collector.

mod model;
mod remote;
mod view;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;
use ratatui::layout::Rect;
use tokio::sync::watch;
use tokio::time::Instant;

pub use model::{HISTORY, Link, Mode, Model, POINT_SPACING, STALE_AFTER, SortMode};
pub use remote::RemoteError;
pub use view::{draw, table_rows};

use crate::history::{History, HistoryPoint};
use crate::model::{LogEntry, Snapshot};
use crate::publish::Snapshots;

/// What the dashboard follows.
#[derive(Debug)]
pub struct Feed {
    /// The newest snapshot.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// The state of the link to the source.
    pub link: watch::Receiver<Link>,
    /// The newest log lines, oldest first.
    pub logs: watch::Receiver<Arc<Vec<LogEntry>>>,
    /// The source's history of the last minutes, for sparklines that are
    /// full the moment the dashboard opens (empty until known).
    pub history: watch::Receiver<Arc<Vec<HistoryPoint>>>,
}

impl Feed {
    /// Follows a source in this process: its `watch` receiver, and its log
    /// ring once a second. Must be called inside a Tokio runtime.
    pub fn local(source: impl Into<Snapshots>) -> Feed {
        let source = source.into();
        let snapshots = source.watch();
        let (logs_tx, logs) = watch::channel(Arc::new(source.logs()));
        let history = watch::channel(Arc::new(sparkline_history(&source.history()))).1;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            while !logs_tx.is_closed() {
                ticks.tick().await;
                logs_tx.send_replace(Arc::new(source.logs()));
            }
        });
        Feed {
            snapshots,
            link: watch::channel(Link::Live).1,
            logs,
            history,
        }
    }

    /// Follows a server over its WebSocket (`api` like
    /// `http://127.0.0.1:7654`, or `https://…`, verified against the
    /// system's trusted roots): the whole snapshot on every tick,
    /// reconnecting with backoff (1 s doubling to 30 s) when it goes away,
    /// and its log lines every 2 s. Must be called inside a Tokio runtime.
    pub fn remote(api: &str, token: Option<String>) -> Result<Feed, RemoteError> {
        remote::connect(api, token, None)
    }

    /// [`remote`](Self::remote) over `https://`, trusting the CA
    /// certificate (PEM) in `ca_cert` instead of the system's roots. A
    /// certificate that does not verify shows as the reconnecting reason.
    pub fn remote_trusting(
        api: &str,
        token: Option<String>,
        ca_cert: &std::path::Path,
    ) -> Result<Feed, RemoteError> {
        remote::connect(api, token, Some(ca_cert))
    }
}

/// The history points the sparklines start from: the newest
/// [`HISTORY`] at 10 s.
fn sparkline_history(history: &History) -> Vec<HistoryPoint> {
    let span = SPARKLINE_STEP * HISTORY as u32;
    history.points(time::OffsetDateTime::now_utc() - span, SPARKLINE_STEP)
}

/// The spacing of history points in the sparklines.
const SPARKLINE_STEP: Duration = Duration::from_secs(10);

/// Runs the dashboard on the terminal until a quit key, or `shutdown`.
pub async fn run(mut feed: Feed, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, &mut feed, shutdown).await;
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    feed: &mut Feed,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(shutdown);
    let mut events = EventStream::new();
    let mut model = Model::new();
    model.on_snapshot(feed.snapshots.borrow_and_update().clone(), Instant::now());
    model.on_link(feed.link.borrow_and_update().clone());
    model.on_history(&feed.history.borrow_and_update());
    // Redraw at least every second, so elapsed time and staleness move.
    let mut second = tokio::time::interval(Duration::from_secs(1));
    let mut source_open = true;
    loop {
        let size = terminal.size()?;
        model.set_page(table_rows(Rect::new(0, 0, size.width, size.height), &model));
        terminal.draw(|frame| draw(frame, &model, Instant::now()))?;
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => model.handle_key(key),
                Some(Ok(_)) => {} // a resize: the next draw uses the new size
                Some(Err(err)) => return Err(err),
                None => return Ok(()), // the terminal is gone
            },
            changed = feed.snapshots.changed(), if source_open => {
                if changed.is_err() {
                    // The source stopped: keep showing its last state.
                    source_open = false;
                    continue;
                }
                let snapshot = feed.snapshots.borrow_and_update().clone();
                model.on_snapshot(snapshot, Instant::now());
            }
            Ok(()) = feed.link.changed() => model.on_link(feed.link.borrow_and_update().clone()),
            Ok(()) = feed.logs.changed() => model.on_logs(feed.logs.borrow_and_update().clone()),
            Ok(()) = feed.history.changed() => model.on_history(&feed.history.borrow_and_update()),
            _ = second.tick() => {}
            () = &mut shutdown => return Ok(()),
        }
        if model.should_quit() {
            return Ok(());
        }
    }
}
