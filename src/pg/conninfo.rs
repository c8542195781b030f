//! A connection string parsed once, by the parser that connects, with a
//! masked form for every message that names the server.

use std::fmt;
use std::str::FromStr;

use tokio_postgres::config::Host;

/// A parsed connection string (a `postgres://` URI or libpq `key=value`
/// pairs).
///
/// Its [`Display`](fmt::Display) and [`Debug`] forms are built from the
/// parsed parts and never hold the password:
///
/// ```
/// use pgmigrator_metrics::pg::ConnInfo;
///
/// let source: ConnInfo = "host=db port=5433 user=app dbname=shop password='a b/c'".parse()?;
/// assert_eq!(source.to_string(), "postgres://app@db:5433/shop");
/// assert!(!format!("{source:?}").contains("a b/c"));
/// # Ok::<(), pgmigrator_metrics::pg::ConnInfoError>(())
/// ```
#[derive(Clone)]
pub struct ConnInfo {
    config: tokio_postgres::Config,
    masked: String,
}

impl ConnInfo {
    /// The parsed settings, to connect with.
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

impl FromStr for ConnInfo {
    type Err = ConnInfoError;

    fn from_str(text: &str) -> Result<ConnInfo, ConnInfoError> {
        let config: tokio_postgres::Config =
            text.parse()
                .map_err(|err: tokio_postgres::Error| ConnInfoError {
                    reason: without_quoted_parts(&err.to_string()),
                })?;
        let masked = masked_uri(&config);
        Ok(ConnInfo { config, masked })
    }
}

impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ConnInfo").field(&self.masked).finish()
    }
}

/// A connection string that cannot be parsed. Its message names what is
/// wrong but quotes no part of the string, which may hold a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfoError {
    reason: String,
}

impl fmt::Display for ConnInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid connection string ({}; the string is not shown, as it may hold a password)",
            self.reason
        )
    }
}

impl std::error::Error for ConnInfoError {}

/// The parser's message with every `` `quoted` `` piece of the input
/// replaced: an "unknown option" or "unexpected character" may be a piece
/// of a password that a space cut in two.
fn without_quoted_parts(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (i, part) in parts.enumerate() {
        if i % 2 == 0 {
            out.push_str("`…`");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// `postgres://user@host:port,host:port/dbname`, from the parsed parts.
fn masked_uri(config: &tokio_postgres::Config) -> String {
    let mut out = String::from("postgres://");
    if let Some(user) = config.get_user() {
        out.push_str(user);
        out.push('@');
    }
    let ports = config.get_ports();
    let hosts = config.get_hosts();
    for (i, host) in hosts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match host {
            Host::Tcp(name) if name.contains(':') => out.push_str(&format!("[{name}]")),
            Host::Tcp(name) => out.push_str(name),
            Host::Unix(path) => out.push_str(&path.display().to_string()),
        }
        // One port for every host, or one for all.
        if let Some(port) = ports
            .get(i)
            .or_else(|| ports.first().filter(|_| ports.len() == 1))
        {
            out.push_str(&format!(":{port}"));
        }
    }
    if hosts.is_empty() {
        out.push_str("localhost");
    }
    if let Some(dbname) = config.get_dbname() {
        out.push('/');
        out.push_str(dbname);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_masked_form_comes_from_the_parsed_parts() {
        let uri: ConnInfo = "postgresql://mon:p%2F%3F%23@a:5433,b:5434/shop?sslmode=disable"
            .parse()
            .unwrap();
        assert_eq!(uri.to_string(), "postgres://mon@a:5433,b:5434/shop");
        let keywords: ConnInfo = r"host=/run/pg user=mon password=x\ y".parse().unwrap();
        assert_eq!(keywords.to_string(), "postgres://mon@/run/pg");
        let bare: ConnInfo = "dbname=shop".parse().unwrap();
        assert_eq!(bare.to_string(), "postgres://localhost/shop");
    }

    #[test]
    fn no_form_shows_the_password() {
        for text in [
            "postgres://mon:/?#' \"@127.0.0.1:5432/postgres",
            "host=h user=mon password='/?#\\' \"'",
            "postgres://h/db?pass%77ord=%2F%3F%23%27%20%22",
        ] {
            let info: ConnInfo = text.parse().unwrap();
            assert_eq!(
                info.config().get_password(),
                Some(&b"/?#' \""[..]),
                "{text}"
            );
            for shown in [info.to_string(), format!("{info:?}")] {
                assert!(!shown.contains("/?#"), "{shown}");
            }
        }
    }

    #[test]
    fn parse_errors_quote_no_part_of_the_string() {
        // A space typed into a bare password makes its tail look like an
        // option; the error must not name it.
        for text in [
            "host=h password=abc secretpart",
            "host=h password=ab cd=ef",
            "x",
        ] {
            let err = text.parse::<ConnInfo>().unwrap_err().to_string();
            assert!(!err.contains("secretpart") && !err.contains("cd"), "{err}");
            assert!(err.starts_with("invalid connection string ("), "{err}");
        }
    }
}
