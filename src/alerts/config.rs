//! The alerts file (TOML): rules and notifiers. Every mistake is one line
//! naming the file's line, never a rule silently ignored.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::engine::Rule;
use super::rule::Condition;
use crate::model::Severity;
use crate::units::parse_duration;

/// Largest alerts file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Rules and where to send what they find.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// The migration's name in notifications (default `pgmigrator`).
    pub migration: String,
    /// The dashboard's address in notifications, when known.
    pub dashboard_url: Option<String>,
    /// The rules; the defaults when the file names notifiers but no rule.
    pub rules: Vec<Rule>,
    /// Where notifications go.
    pub notifiers: Vec<NotifierConfig>,
}

/// A notifier.
#[derive(Clone, PartialEq, Eq)]
pub enum NotifierConfig {
    /// POST the notification as JSON.
    Webhook {
        /// `http://` or `https://`.
        url: String,
        /// For HTTPS: trust this CA (PEM) instead of the system's roots.
        ca_cert: Option<PathBuf>,
    },
    /// POST a readable message to a Slack incoming webhook.
    Slack {
        /// The incoming webhook's address.
        url: String,
        /// For HTTPS: trust this CA (PEM) instead of the system's roots.
        ca_cert: Option<PathBuf>,
    },
    /// Run a program with the notification's JSON on its standard input,
    /// in a clean environment: only [`COMMAND_ENV`] and the variables
    /// `env` names are passed on (never, say, `PGMIGRATOR_TOKEN` or
    /// `PGPASSWORD`, unless named).
    Command {
        /// The program and its arguments (no shell).
        argv: Vec<String>,
        /// More variables to pass on (`env = ["SLACK_TOKEN"]`).
        env: Vec<String>,
    },
}

/// The variables a command notifier gets from pgmigrator's environment
/// when they are set: what a program needs to run, and no secret.
pub const COMMAND_ENV: [&str; 8] = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

impl NotifierConfig {
    /// `webhook hooks.example.com`: the kind and the host only, since a
    /// webhook's path is often its secret.
    pub fn describe(&self) -> String {
        match self {
            NotifierConfig::Webhook { url, .. } => format!("webhook {}", host_of(url)),
            NotifierConfig::Slack { url, .. } => format!("slack {}", host_of(url)),
            NotifierConfig::Command { argv, .. } => {
                format!("command {}", argv.first().map_or("", String::as_str))
            }
        }
    }
}

impl fmt::Debug for NotifierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn host_of(url: &str) -> &str {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    // Credentials before an `@` are never shown.
    authority.rsplit('@').next().unwrap_or(authority)
}

/// A mistake in the alerts file: `alerts.toml:7: unknown quantity "lag" …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsError(String);

impl fmt::Display for AlertsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AlertsError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    migration: Option<String>,
    dashboard_url: Option<String>,
    repeat: Option<Spanned<String>>,
    #[serde(default)]
    rule: Vec<RuleEntry>,
    #[serde(default)]
    notifier: Vec<NotifierEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    name: Spanned<String>,
    when: Spanned<String>,
    #[serde(rename = "for")]
    hold_for: Option<Spanned<String>>,
    severity: Option<Spanned<String>>,
    summary: Option<String>,
    repeat: Option<Spanned<String>>,
    window: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifierEntry {
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    ca_cert: Option<PathBuf>,
    command: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    env: Vec<String>,
}

const DEFAULT_REPEAT: Duration = Duration::from_secs(3600);
const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

impl AlertsConfig {
    /// The default rules, told to no one: alerts that only the surfaces
    /// show (the demo shows them this way).
    pub fn shown_only() -> AlertsConfig {
        AlertsConfig {
            migration: "pgmigrator".to_owned(),
            dashboard_url: None,
            rules: default_rules(DEFAULT_REPEAT),
            notifiers: Vec::new(),
        }
    }

    /// Reads and checks the alerts file at `path` (a regular file of at
    /// most 1 MiB).
    pub fn load(path: &Path) -> Result<AlertsConfig, AlertsError> {
        let shown = path.display();
        let fail = |reason: String| AlertsError(format!("{shown}: {reason}"));
        let bytes =
            crate::persist::read_small_file(path, MAX_FILE_BYTES, crate::persist::Links::Follow)
                .map_err(|err| fail(err.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| fail("not UTF-8 text".to_owned()))?;
        AlertsConfig::parse(&text, &shown.to_string())
    }

    /// Checks the text of an alerts file; `name` prefixes every message.
    pub fn parse(text: &str, name: &str) -> Result<AlertsConfig, AlertsError> {
        let at = |span: std::ops::Range<usize>, reason: String| {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            AlertsError(format!("{name}:{line}: {reason}"))
        };
        let file: File = toml::from_str(text).map_err(|err| {
            let reason = err.message().trim().replace('\n', " ");
            match err.span() {
                Some(span) => at(span, reason),
                None => AlertsError(format!("{name}: {reason}")),
            }
        })?;
        let duration = |value: &Spanned<String>| {
            parse_duration(value.get_ref()).map_err(|reason| at(value.span(), reason))
        };
        let repeat = match &file.repeat {
            Some(value) => duration(value)?,
            None => DEFAULT_REPEAT,
        };
        let mut rules = Vec::new();
        for entry in &file.rule {
            let name = entry.name.get_ref().trim().to_owned();
            if name.is_empty() {
                return Err(at(entry.name.span(), "a rule needs a name".to_owned()));
            }
            if rules.iter().any(|r: &Rule| r.name == name) {
                return Err(at(
                    entry.name.span(),
                    format!("a second rule named {name:?}"),
                ));
            }
            let condition = Condition::parse(entry.when.get_ref())
                .map_err(|reason| at(entry.when.span(), reason))?;
            let severity = match &entry.severity {
                None => Severity::Warning,
                Some(value) => Severity::from_name(value.get_ref()).ok_or_else(|| {
                    at(
                        value.span(),
                        format!(
                            "unknown severity {:?} (info, warning or critical)",
                            value.get_ref()
                        ),
                    )
                })?,
            };
            let repeat = match &entry.repeat {
                Some(value) => duration(value)?,
                None => repeat,
            };
            if repeat.is_zero() {
                return Err(at(
                    entry.name.span(),
                    "repeat must be more than 0".to_owned(),
                ));
            }
            rules.push(Rule {
                name,
                condition,
                hold_for: entry
                    .hold_for
                    .as_ref()
                    .map(duration)
                    .transpose()?
                    .unwrap_or_default(),
                severity,
                summary: entry.summary.clone(),
                repeat,
                window: entry
                    .window
                    .as_ref()
                    .map(duration)
                    .transpose()?
                    .unwrap_or(DEFAULT_WINDOW),
            });
        }
        let mut notifiers = Vec::new();
        for entry in &file.notifier {
            let url = |what: &str| match &entry.url {
                Some(url)
                    if url.get_ref().starts_with("https://")
                        || url.get_ref().starts_with("http://") =>
                {
                    Ok(url.get_ref().clone())
                }
                Some(url) => Err(at(
                    url.span(),
                    format!("a {what} url starts with https:// or http://"),
                )),
                None => Err(at(
                    entry.kind.span(),
                    format!("a {what} notifier needs a url"),
                )),
            };
            notifiers.push(match entry.kind.get_ref().as_str() {
                "webhook" => NotifierConfig::Webhook {
                    url: url("webhook")?,
                    ca_cert: entry.ca_cert.clone(),
                },
                "slack" => NotifierConfig::Slack {
                    url: url("slack")?,
                    ca_cert: entry.ca_cert.clone(),
                },
                "command" => match &entry.command {
                    Some(argv) if !argv.get_ref().is_empty() => NotifierConfig::Command {
                        argv: argv.get_ref().clone(),
                        env: entry.env.clone(),
                    },
                    _ => {
                        return Err(at(
                            entry.kind.span(),
                            "a command notifier needs command = [\"program\", \"arg\", …]"
                                .to_owned(),
                        ));
                    }
                },
                other => {
                    return Err(at(
                        entry.kind.span(),
                        format!("unknown notifier kind {other:?} (webhook, slack or command)"),
                    ));
                }
            });
        }
        if rules.is_empty() && !notifiers.is_empty() {
            rules = default_rules(repeat);
        }
        Ok(AlertsConfig {
            migration: file.migration.unwrap_or_else(|| "pgmigrator".to_owned()),
            dashboard_url: file.dashboard_url,
            rules,
            notifiers,
        })
    }
}

/// The rules used when notifiers are configured and no rule is.
pub fn default_rules(repeat: Duration) -> Vec<Rule> {
    let rule = |name: &str, when: &str, hold_for: u64, severity: Severity, summary: &str| Rule {
        name: name.to_owned(),
        // The defaults are written here and tested to parse.
        condition: Condition::parse(when).unwrap_or_else(|err| panic!("{when}: {err}")),
        hold_for: Duration::from_secs(hold_for),
        severity,
        summary: Some(summary.to_owned()),
        repeat,
        window: DEFAULT_WINDOW,
    };
    vec![
        rule(
            "slot_in_danger",
            "slot.wal_status == unreserved|lost",
            0,
            Severity::Critical,
            "the replication slot is {value}: the source may remove WAL it still needs",
        ),
        rule(
            "slot_headroom",
            "slot.safe_wal_size < 10%",
            0,
            Severity::Critical,
            "the replication slot can take only {value} more WAL",
        ),
        rule(
            "slot_exhaustion",
            "slot.exhausted_in < 1h",
            0,
            Severity::Critical,
            "at the rate its headroom shrinks, the replication slot is lost in {value}",
        ),
        rule(
            "lag",
            "lag_seconds > 5m",
            300,
            Severity::Warning,
            "replication is {value} behind (over {threshold} for 5 minutes)",
        ),
        rule(
            "stalled",
            "stalled_seconds > 10m",
            0,
            Severity::Warning,
            "no progress for {value}",
        ),
        rule(
            "errors",
            "error_count > 0",
            0,
            Severity::Warning,
            "{value} new error(s) in the last 5 minutes",
        ),
        rule(
            "cutover_ready",
            "cutover.ready == true",
            0,
            Severity::Info,
            "ready to cut over: nothing blocks the switch",
        ),
        rule(
            "done",
            "phase == done",
            0,
            Severity::Info,
            "the migration is done",
        ),
    ]
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
