//! Delivering notifications: a bounded queue, each delivery retried with
//! backoff, and a count of what was given up on. A dead receiver never
//! blocks the rules, the collector or another receiver.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsConnector;

use crate::client::ConnectorError;

use super::config::{AlertsConfig, COMMAND_ENV, NotifierConfig};
use super::engine::Notification;
use super::post::post_json;
use crate::client::Url;
use crate::model::AlertState;

/// A command may take this long at least (it may send mail).
const COMMAND_DEADLINE: Duration = Duration::from_secs(30);

/// Notifications waiting for delivery at most; more are dropped and counted.
pub const QUEUE_CAPACITY: usize = 256;
/// Deliveries in flight at most.
const IN_FLIGHT: usize = 16;

/// How hard a delivery is tried: each attempt within `attempt_timeout`,
/// again after each of `waits` (by default 10 s, and waits of 5, 15, 35
/// and 65 s: five attempts over about two minutes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The waits between attempts.
    pub waits: Vec<Duration>,
    /// The longest one attempt may take.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            waits: [5, 15, 35, 65].map(Duration::from_secs).to_vec(),
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

/// What a receiver gets: the notification, the migration and where its
/// dashboard is.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// The notification.
    #[serde(flatten)]
    pub notification: Notification,
    /// The migration's name.
    pub migration: String,
    /// The dashboard's address, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
}

impl Message {
    /// The message `pgmigrator alerts test` sends.
    pub fn test(config: &AlertsConfig) -> Message {
        Message {
            notification: Notification {
                alert: "test".to_owned(),
                state: AlertState::Firing,
                reminder: false,
                severity: crate::model::Severity::Info,
                value: String::new(),
                threshold: String::new(),
                since: time::OffsetDateTime::now_utc(),
                summary: "a test notification from pgmigrator alerts test".to_owned(),
            },
            migration: config.migration.clone(),
            dashboard_url: config.dashboard_url.clone(),
        }
    }

    /// The Slack text: `[FIRING] critical · shop · lag: lag is 1.20 GiB (over 1GB)`.
    fn slack_text(&self) -> String {
        let n = &self.notification;
        let state = match (n.state, n.reminder) {
            (AlertState::Resolved, _) => "RESOLVED",
            (_, true) => "STILL FIRING",
            _ => "FIRING",
        };
        let mut text = format!(
            "[{state}] {} · {} · {}: {} (value {}, threshold {})",
            n.severity, self.migration, n.alert, n.summary, n.value, n.threshold
        );
        if let Some(url) = &self.dashboard_url {
            text.push_str(&format!(" · {url}"));
        }
        slack_escape(&text)
    }
}

/// Text as Slack reads it literally: `&`, `<` and `>` escaped, as Slack
/// requires, so that no field (a phase or a summary from a state file, a
/// migration name) becomes a mention (`<!channel>`) or a link
/// (`<http://…|…>`).
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A notifier ready to deliver.
#[derive(Clone)]
enum Receiver {
    Webhook(Url, TlsConnector),
    Slack(Url, TlsConnector),
    /// The program and its arguments, and the environment it gets.
    Command(Vec<String>, Vec<(String, std::ffi::OsString)>),
}

/// The delivery queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    tx: mpsc::Sender<Message>,
    failed: Arc<AtomicU64>,
    receivers: usize,
}

impl Dispatcher {
    /// Starts delivering to `config`'s notifiers, on a task of the current
    /// Tokio runtime. A notifier whose address or CA file cannot be used is
    /// an error here, before anything runs.
    pub fn start(config: &AlertsConfig, retry: RetryPolicy) -> Result<Dispatcher, String> {
        let receivers = config
            .notifiers
            .iter()
            .map(|n| receiver(n).map_err(|err| format!("{}: {err}", n.describe())))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let failed = Arc::new(AtomicU64::new(0));
        let count = receivers.len();
        tokio::spawn(deliver_all(
            rx,
            Arc::new(receivers),
            retry,
            Arc::clone(&failed),
        ));
        Ok(Dispatcher {
            tx,
            failed,
            receivers: count,
        })
    }

    /// Queues `message` for every notifier; with the queue full, it is
    /// dropped, counted as failed for each, and said on stderr.
    pub fn send(&self, message: Message) {
        if self.receivers == 0 {
            return;
        }
        if let Err(err) = self.tx.try_send(message) {
            self.failed
                .fetch_add(self.receivers as u64, Ordering::Relaxed);
            let alert = match &err {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => {
                    m.notification.alert.clone()
                }
            };
            tracing::warn!(
                alert,
                "the notification queue is full; dropped a notification"
            );
        }
    }

    /// Deliveries given up on so far (after every retry, or dropped).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Delivers `message` to every notifier once, now, without retries;
    /// returns each notifier's outcome (for `pgmigrator alerts test`).
    pub async fn test_each(
        config: &AlertsConfig,
        message: &Message,
    ) -> Vec<(String, Result<(), String>)> {
        let mut outcomes = Vec::new();
        for notifier in &config.notifiers {
            let outcome = match receiver(notifier) {
                Ok(receiver) => {
                    attempt(&receiver, message, RetryPolicy::default().attempt_timeout).await
                }
                Err(err) => Err(err),
            };
            outcomes.push((notifier.describe(), outcome));
        }
        outcomes
    }
}

fn receiver(notifier: &NotifierConfig) -> Result<Receiver, String> {
    Ok(match notifier {
        NotifierConfig::Webhook { url, ca_cert } => {
            Receiver::Webhook(Url::parse(url)?, connector(ca_cert.as_deref())?)
        }
        NotifierConfig::Slack { url, ca_cert } => {
            Receiver::Slack(Url::parse(url)?, connector(ca_cert.as_deref())?)
        }
        NotifierConfig::Command { argv, env } => {
            let passed = COMMAND_ENV
                .iter()
                .copied()
                .chain(env.iter().map(String::as_str))
                .filter_map(|name| Some((name.to_owned(), std::env::var_os(name)?)))
                .collect();
            Receiver::Command(argv.clone(), passed)
        }
    })
}

/// TLS trusting `ca_cert`, or the system's roots.
fn connector(ca_cert: Option<&Path>) -> Result<TlsConnector, String> {
    crate::client::connector(ca_cert).map_err(|err| match err {
        ConnectorError::CaCert(reason) => format!(
            "ca_cert {}: {reason}",
            ca_cert
                .map(Path::display)
                .map(|d| d.to_string())
                .unwrap_or_default()
        ),
        ConnectorError::Config(reason) => format!("TLS: {reason}"),
    })
}

async fn deliver_all(
    mut rx: mpsc::Receiver<Message>,
    receivers: Arc<Vec<Receiver>>,
    retry: RetryPolicy,
    failed: Arc<AtomicU64>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(message) = rx.recv().await {
        let message = Arc::new(message);
        for index in 0..receivers.len() {
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            let (receivers, message, retry, failed) = (
                Arc::clone(&receivers),
                Arc::clone(&message),
                retry.clone(),
                Arc::clone(&failed),
            );
            tokio::spawn(async move {
                let receiver = &receivers[index];
                if let Err(reason) = deliver(receiver, &message, &retry).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        alert = message.notification.alert,
                        notifier = describe(receiver),
                        reason,
                        "gave up on a notification after its retries"
                    );
                }
                drop(permit);
            });
        }
    }
}

/// One delivery with its retries.
async fn deliver(
    receiver: &Receiver,
    message: &Message,
    retry: &RetryPolicy,
) -> Result<(), String> {
    let mut waits = retry.waits.iter();
    loop {
        match attempt(receiver, message, retry.attempt_timeout).await {
            Ok(()) => return Ok(()),
            Err(reason) => match waits.next() {
                Some(wait) => tokio::time::sleep(*wait).await,
                None => return Err(reason),
            },
        }
    }
}

async fn attempt(receiver: &Receiver, message: &Message, deadline: Duration) -> Result<(), String> {
    match receiver {
        Receiver::Webhook(target, tls) => {
            let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
            post_json(target, body, tls, deadline).await
        }
        Receiver::Slack(target, tls) => {
            let body = serde_json::to_vec(&serde_json::json!({ "text": message.slack_text() }))
                .map_err(|e| e.to_string())?;
            post_json(target, body, tls, deadline).await
        }
        Receiver::Command(argv, env) => {
            run_command(argv, env, message, deadline.max(COMMAND_DEADLINE)).await
        }
    }
}

/// Runs `argv` with the message's JSON on its standard input; success is
/// exit status 0 within the deadline (the program is killed otherwise).
async fn run_command(
    argv: &[String],
    env: &[(String, std::ffi::OsString)],
    message: &Message,
    deadline: Duration,
) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("no program")?;
    let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    let run = async {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| format!("starting {program}: {err}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A program that does not read its input may close it early.
            let _ = stdin.write_all(&body).await;
        }
        let status = child.wait().await.map_err(|err| err.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{program} exited with {status}"))
        }
    };
    tokio::time::timeout(deadline, run)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{program} did not finish within {}s",
                deadline.as_secs()
            ))
        })
}

fn describe(receiver: &Receiver) -> String {
    match receiver {
        Receiver::Webhook(target, _) => format!("webhook {}", target.authority()),
        Receiver::Slack(target, _) => format!("slack {}", target.authority()),
        Receiver::Command(argv, _) => {
            format!("command {}", argv.first().map_or("", String::as_str))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_turns_no_field_into_a_mention_or_a_link() {
        let config = AlertsConfig::parse("", "alerts.toml").unwrap();
        let mut message = Message::test(&config);
        message.notification.summary = "<!channel> phase <http://evil.example|x> & more".into();
        message.migration = "<@U123>".into();
        message.dashboard_url = Some("http://host:7654/?a=1&b=2".into());
        let text = message.slack_text();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(text.contains("&lt;!channel&gt;"), "{text}");
        assert!(text.contains("&lt;@U123&gt;"), "{text}");
        assert!(text.contains("a=1&amp;b=2"), "{text}");
    }
}
