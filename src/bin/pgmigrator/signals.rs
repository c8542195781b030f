//! What stops a command: signals, a time limit, and a panic in any task.

use std::time::Duration;

/// Completes on Ctrl-C, SIGTERM, SIGHUP (the terminal or SSH session went
/// away), a panic in any task, or after `limit`.
pub(crate) async fn shutdown_signal(limit: Option<Duration>) {
    use tokio::signal::unix::{SignalKind, signal};
    let on = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let limit = async {
        match limit {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = on(SignalKind::interrupt()) => {}
        () = on(SignalKind::terminate()) => {}
        () = on(SignalKind::hangup()) => {}
        () = panics::occurred() => {}
        () = limit => {}
    }
}

/// A panic in any task stops the process, as a panic on the main thread
/// would: the hook records it and every command's stop signal fires, so
/// the state file still gets its final write and the exit status says
/// something went wrong, instead of a live-looking process that serves a
/// frozen state.
pub(crate) mod panics {
    use std::sync::LazyLock;

    use tokio::sync::watch;

    static PANICKED: LazyLock<watch::Sender<Option<String>>> =
        LazyLock::new(|| watch::channel(None).0);

    /// Chains a hook that records the first panic after the default one
    /// (which prints it).
    pub(crate) fn install() {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a task panicked".to_owned());
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            PANICKED.send_if_modified(|first| {
                first.is_none() && first.replace(format!("{message}{location}")).is_none()
            });
        }));
    }

    /// The first panic's message, if any task panicked.
    pub(crate) fn message() -> Option<String> {
        PANICKED.borrow().clone()
    }

    /// Completes once any task has panicked.
    pub(crate) async fn occurred() {
        let mut panicked = PANICKED.subscribe();
        let _ = panicked.wait_for(Option::is_some).await;
    }

    #[cfg(test)]
    mod tests {
        use std::time::Duration;

        #[tokio::test]
        async fn a_panicking_task_fires_the_stop_signal_with_its_message() {
            super::install();
            let waiting = tokio::spawn(super::occurred());
            let _ = tokio::spawn(async { panic!("boom in a background task") }).await;
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .expect("the signal fires")
                .unwrap();
            let message = super::message().unwrap();
            assert!(
                message.starts_with("boom in a background task at src/bin/pgmigrator/signals.rs:"),
                "{message}"
            );
        }
    }
}
