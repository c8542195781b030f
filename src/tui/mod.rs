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

mod fleet;
mod model;
mod remote;
mod view;

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;
use ratatui::layout::Rect;
use tokio::sync::watch;
use tokio::time::Instant;

pub use fleet::{FleetModel, draw_fleet};
pub use model::{HISTORY, Link, Mode, Model, POINT_SPACING, SortMode};
pub use remote::RemoteError;
pub use view::{draw, table_rows};

use crate::history::{History, HistoryPoint};
use crate::model::{LogEntry, MigrationSummary, Snapshot, summarize};
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

/// Several migrations: their summaries, worst first, and a [`Feed`] for
/// the one opened.
pub struct Fleet {
    /// Every migration, worst first.
    pub migrations: watch::Receiver<Arc<Vec<MigrationSummary>>>,
    open: Opener,
}

/// Makes the feed of a migration by id.
type Opener = Box<dyn Fn(&str) -> Option<Feed> + Send>;

impl fmt::Debug for Fleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fleet")
            .field("migrations", &self.migrations.borrow().len())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Migrations in this process, summed up once a second. Must be called
    /// inside a Tokio runtime.
    pub fn local(list: Vec<(String, Snapshots)>) -> Fleet {
        let summaries = |list: &[(String, Snapshots)]| {
            let now = time::OffsetDateTime::now_utc();
            Arc::new(summarize(
                list.iter().map(|(id, s)| (id.as_str(), s.snapshot())),
                now,
            ))
        };
        let (tx, migrations) = watch::channel(summaries(&list));
        let list = Arc::new(list);
        tokio::spawn({
            let list = Arc::clone(&list);
            async move {
                let mut ticks = tokio::time::interval(Duration::from_secs(1));
                while !tx.is_closed() {
                    ticks.tick().await;
                    tx.send_replace(summaries(&list));
                }
            }
        });
        Fleet {
            migrations,
            open: Box::new(move |id| {
                let (_, source) = list.iter().find(|(i, _)| i == id)?;
                Some(Feed::local(source.clone()))
            }),
        }
    }

    /// The migrations of a server (`api` as for [`Feed::remote`]): the
    /// list every 2 s, and each opened over its own WebSocket. Must be
    /// called inside a Tokio runtime.
    pub fn remote(
        api: &str,
        token: Option<String>,
        ca_cert: Option<&std::path::Path>,
    ) -> Result<Fleet, RemoteError> {
        remote::fleet(api, token, ca_cert)
    }

    /// A feed of migration `id`; `None` when there is no such migration.
    /// Dropping it stops following.
    pub fn open(&self, id: &str) -> Option<Feed> {
        (self.open)(id)
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
pub async fn run(feed: Feed, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let mut events = EventStream::new();
    tokio::pin!(shutdown);
    let screen = Screen {
        terminal: &mut terminal,
        events: &mut events,
    };
    let result = follow(screen, feed, Model::new(), &mut shutdown).await;
    ratatui::restore();
    result.map(|_| ())
}

/// Runs the dashboard of several migrations: their list first; Enter opens
/// one, whose Esc comes back to the list. Until a quit key, or `shutdown`.
pub async fn run_fleet(fleet: Fleet, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let mut events = EventStream::new();
    tokio::pin!(shutdown);
    let screen = Screen {
        terminal: &mut terminal,
        events: &mut events,
    };
    let result = list(screen, fleet, &mut shutdown).await;
    ratatui::restore();
    result
}

/// The terminal and its key presses.
struct Screen<'a> {
    terminal: &'a mut ratatui::DefaultTerminal,
    events: &'a mut EventStream,
}

/// How following one migration ended.
enum Ended {
    Quit,
    Back,
}

async fn list<S: Future<Output = ()> + Unpin>(
    screen: Screen<'_>,
    mut fleet: Fleet,
    shutdown: &mut S,
) -> io::Result<()> {
    let Screen { terminal, events } = screen;
    let mut model = FleetModel::new();
    model.on_migrations(fleet.migrations.borrow_and_update().clone());
    loop {
        terminal.draw(|frame| draw_fleet(frame, &model))?;
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => model.handle_key(key),
                Some(Ok(_)) => {} // a resize: the next draw uses the new size
                Some(Err(err)) => return Err(err),
                None => return Ok(()), // the terminal is gone
            },
            Ok(()) = fleet.migrations.changed() => {
                model.on_migrations(fleet.migrations.borrow_and_update().clone());
            }
            () = &mut *shutdown => return Ok(()),
        }
        if model.should_quit() {
            return Ok(());
        }
        let Some(id) = model.take_open() else {
            continue;
        };
        let Some(feed) = fleet.open(&id) else {
            continue;
        };
        let screen = Screen {
            terminal: &mut *terminal,
            events: &mut *events,
        };
        match follow(screen, feed, Model::of_migration(&id), shutdown).await? {
            Ended::Back => {}
            Ended::Quit => return Ok(()),
        }
    }
}

async fn follow<S: Future<Output = ()> + Unpin>(
    screen: Screen<'_>,
    mut feed: Feed,
    mut model: Model,
    shutdown: &mut S,
) -> io::Result<Ended> {
    let Screen { terminal, events } = screen;
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
                None => return Ok(Ended::Quit), // the terminal is gone
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
            () = &mut *shutdown => return Ok(Ended::Quit),
        }
        if model.should_quit() {
            return Ok(Ended::Quit);
        }
        if model.should_go_back() {
            return Ok(Ended::Back);
        }
    }
}
