//! A connection string parsed once, by the parser that connects, with a
//! masked form for every message that names the server.

use std::fmt;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use tokio_postgres::config::Host;

use super::libpq_env::{home_dir, pgpass_password, pgpass_path};
use super::tls::{RootCert, SslMode, TlsSettings};

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
    tls: TlsSettings,
    /// Whether the string named an `sslmode` (else `PGSSLMODE` may).
    mode_given: bool,
    masked: String,
}

impl ConnInfo {
    /// The parsed settings, to connect with.
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The TLS settings, with libpq's meanings.
    pub(crate) fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    /// The `sslmode`.
    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    /// The same connection with what libpq would fill in from this
    /// process's environment for whatever the string leaves out: `PGHOST`,
    /// `PGPORT`, `PGUSER`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`,
    /// `PGSSLCERT`, `PGSSLKEY`, and the password from `PGPASSWORD`, else
    /// the password file (`PGPASSFILE`, else `~/.pgpass`; ignored with a
    /// warning when group or others can read it).
    pub fn with_libpq_environment(self) -> Result<ConnInfo, ConnInfoError> {
        self.filled_from(&|key| std::env::var(key).ok())
    }

    fn filled_from(
        mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConnInfo, ConnInfoError> {
        let invalid = |reason: String| ConnInfoError { reason };
        let var = |key: &str| env(key).filter(|value| !value.is_empty());
        let config = &mut self.config;
        if config.get_hosts().is_empty() {
            for host in var("PGHOST").as_deref().unwrap_or("localhost").split(',') {
                config.host(host);
            }
        }
        if config.get_ports().is_empty()
            && let Some(port) = var("PGPORT")
        {
            let port = port
                .parse()
                .map_err(|_| invalid("PGPORT is not a port number".to_owned()))?;
            config.port(port);
        }
        if config.get_user().is_none()
            && let Some(user) = var("PGUSER").or_else(|| var("USER"))
        {
            config.user(user);
        }
        if config.get_dbname().is_none()
            && let Some(dbname) = var("PGDATABASE")
        {
            config.dbname(dbname);
        }
        let tls = &mut self.tls;
        if !self.mode_given
            && let Some(mode) = var("PGSSLMODE")
        {
            tls.mode = mode.parse().map_err(invalid)?;
        }
        if tls.root_cert.is_none() {
            tls.root_cert = var("PGSSLROOTCERT").map(RootCert::from_setting);
        }
        if tls.client_cert.is_none() {
            tls.client_cert = var("PGSSLCERT").map(Into::into);
        }
        if tls.client_key.is_none() {
            tls.client_key = var("PGSSLKEY").map(Into::into);
        }
        config.ssl_mode(tls.mode.negotiation());
        if config.get_password().is_none() {
            let password = var("PGPASSWORD").or_else(|| {
                let path = pgpass_path(env, home_dir().as_deref())?;
                let host = match config.get_hosts().first() {
                    Some(Host::Tcp(name)) => name.clone(),
                    // libpq matches a socket connection as `localhost`.
                    _ => "localhost".to_owned(),
                };
                let port = config
                    .get_ports()
                    .first()
                    .copied()
                    .unwrap_or(5432)
                    .to_string();
                let user = config.get_user().unwrap_or_default().to_owned();
                let dbname = config.get_dbname().unwrap_or(&user).to_owned();
                pgpass_password(&path, [&host, &port, &dbname, &user])
            });
            if let Some(password) = password {
                config.password(password);
            }
        }
        self.masked = masked_form(config, tls);
        Ok(self)
    }
}

impl FromStr for ConnInfo {
    type Err = ConnInfoError;

    fn from_str(text: &str) -> Result<ConnInfo, ConnInfoError> {
        let invalid = |reason: String| ConnInfoError { reason };
        // tokio-postgres knows three of libpq's six `sslmode`s and none of
        // its certificate files: those are read here, the rest by it.
        let (rest, tls_params) = take_tls_params(text);
        let mut config: tokio_postgres::Config =
            rest.parse().map_err(|err: tokio_postgres::Error| {
                invalid(without_quoted_parts(&err.to_string()))
            })?;
        let mut tls = TlsSettings::default();
        let mut mode_given = false;
        for (key, value) in tls_params {
            match key {
                TlsKey::Mode => {
                    tls.mode = value.parse().map_err(invalid)?;
                    mode_given = true;
                }
                TlsKey::RootCert => tls.root_cert = Some(RootCert::from_setting(value)),
                TlsKey::Cert => tls.client_cert = Some(value.into()),
                TlsKey::Key => tls.client_key = Some(value.into()),
            }
        }
        config.ssl_mode(tls.mode.negotiation());
        let masked = masked_form(&config, &tls);
        Ok(ConnInfo {
            config,
            tls,
            mode_given,
            masked,
        })
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

/// The connection keywords read here rather than by tokio-postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsKey {
    Mode,
    RootCert,
    Cert,
    Key,
}

impl TlsKey {
    fn of(key: &str) -> Option<TlsKey> {
        Some(match key {
            "sslmode" => TlsKey::Mode,
            "sslrootcert" => TlsKey::RootCert,
            "sslcert" => TlsKey::Cert,
            "sslkey" => TlsKey::Key,
            _ => return None,
        })
    }
}

/// `text` without its TLS keywords, and those keywords with their values
/// (decoded as the connection parser decodes them). Text that does not
/// split cleanly is returned whole, for the parser to refuse.
fn take_tls_params(text: &str) -> (String, Vec<(TlsKey, String)>) {
    let mut taken = Vec::new();
    for prefix in ["postgres://", "postgresql://"] {
        let Some(after) = text.strip_prefix(prefix) else {
            continue;
        };
        // The query starts at the first `?` after the credentials (which
        // run to the first `@`) and the host.
        let host_start = after.find('@').map_or(0, |at| at + 1);
        let Some(question) = after[host_start..].find('?').map(|q| host_start + q) else {
            return (text.to_owned(), taken);
        };
        let mut kept = Vec::new();
        for pair in after[question + 1..].split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = |part: &str| percent_decode_str(part).decode_utf8_lossy().into_owned();
            match TlsKey::of(&decoded(key)) {
                Some(tls_key) => taken.push((tls_key, decoded(value))),
                None => kept.push(pair),
            }
        }
        let mut rest = format!("{prefix}{}", &after[..question]);
        if !kept.is_empty() {
            rest.push('?');
            rest.push_str(&kept.join("&"));
        }
        return (rest, taken);
    }
    match keyword_pairs(text) {
        Some(pairs) => {
            let mut kept = Vec::new();
            for (key, value, raw) in pairs {
                match TlsKey::of(key) {
                    Some(tls_key) => taken.push((tls_key, value)),
                    None => kept.push(raw),
                }
            }
            (kept.join(" "), taken)
        }
        None => (text.to_owned(), taken),
    }
}

/// `key = value` pairs of a libpq keyword string, by the parser's rules:
/// (key, decoded value, the pair's text). `None` when it does not parse.
fn keyword_pairs(text: &str) -> Option<Vec<(&str, String, &str)>> {
    let mut pairs = Vec::new();
    let mut chars = text.char_indices().peekable();
    let skip_space = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_space(&mut chars);
        let Some(&(start, _)) = chars.peek() else {
            return Some(pairs);
        };
        while chars
            .next_if(|(_, c)| !c.is_whitespace() && *c != '=')
            .is_some()
        {}
        let key_end = chars.peek().map_or(text.len(), |(i, _)| *i);
        skip_space(&mut chars);
        chars.next_if(|(_, c)| *c == '=')?;
        skip_space(&mut chars);
        let mut value = String::new();
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let end = loop {
            match chars.peek().copied() {
                None if quoted => return None,
                None => break text.len(),
                Some((i, '\'')) if quoted => {
                    chars.next();
                    break i + 1;
                }
                Some((i, c)) if !quoted && c.is_whitespace() => break i,
                Some((_, '\\')) => {
                    chars.next();
                    value.extend(chars.next().map(|(_, c)| c));
                }
                Some((_, c)) => {
                    chars.next();
                    value.push(c);
                }
            }
        };
        pairs.push((&text[start..key_end], value, &text[start..end]));
    }
}

/// The masked form, with the `sslmode` when it is not the default.
fn masked_form(config: &tokio_postgres::Config, tls: &TlsSettings) -> String {
    let mut masked = masked_uri(config);
    if tls.mode != SslMode::Prefer {
        masked.push_str(&format!("?sslmode={}", tls.mode));
    }
    masked
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
        assert_eq!(
            uri.to_string(),
            "postgres://mon@a:5433,b:5434/shop?sslmode=disable"
        );
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
    fn libpq_tls_keywords_are_read_in_both_forms_and_kept_from_the_parser() {
        let uri: ConnInfo =
            "postgres://mon:pw@db:5432/shop?sslmode=verify-full&sslrootcert=/etc/ca%20x.pem&application_name=m"
                .parse()
                .unwrap();
        assert_eq!(uri.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(
            uri.tls().root_cert,
            Some(RootCert::File("/etc/ca x.pem".into()))
        );
        assert_eq!(uri.config().get_application_name(), Some("m"));
        assert_eq!(
            uri.to_string(),
            "postgres://mon@db:5432/shop?sslmode=verify-full"
        );

        let keywords: ConnInfo = r"host=db password='a b' sslmode = verify-ca sslrootcert=system sslcert='/c d/client.crt' sslkey=/k\ e.key"
            .parse()
            .unwrap();
        assert_eq!(keywords.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(keywords.tls().root_cert, Some(RootCert::System));
        assert_eq!(keywords.tls().client_cert, Some("/c d/client.crt".into()));
        assert_eq!(keywords.tls().client_key, Some("/k e.key".into()));
        assert_eq!(keywords.config().get_password(), Some(&b"a b"[..]));

        let plain: ConnInfo = "host=db".parse().unwrap();
        assert_eq!(plain.ssl_mode(), SslMode::Prefer, "libpq's default");
        for mode in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            let info: ConnInfo = format!("host=db sslmode={mode}").parse().unwrap();
            assert_eq!(info.ssl_mode().as_str(), mode);
        }
        let err = "host=db sslmode=maybe"
            .parse::<ConnInfo>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("sslmode must be"), "{err}");
    }

    #[test]
    fn the_environment_fills_only_what_the_string_leaves_out() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let pgpass = dir.path().join("pass");
        std::fs::write(&pgpass, "db:6543:shop:monitor:from-pgpass\n").unwrap();
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pgpass = pgpass.display().to_string();
        let env = |key: &str| {
            let value = match key {
                "PGHOST" => "db",
                "PGPORT" => "6543",
                "PGUSER" => "monitor",
                "PGDATABASE" => "shop",
                "PGSSLMODE" => "verify-full",
                "PGSSLROOTCERT" => "system",
                "PGPASSFILE" => pgpass.as_str(),
                _ => return None,
            };
            Some(value.to_owned())
        };
        let filled = "sslmode=require"
            .parse::<ConnInfo>()
            .unwrap()
            .filled_from(&env)
            .unwrap();
        assert_eq!(
            filled.to_string(),
            "postgres://monitor@db:6543/shop?sslmode=require"
        );
        assert_eq!(filled.ssl_mode(), SslMode::Require, "the string wins");
        assert_eq!(filled.tls().root_cert, Some(RootCert::System));
        assert_eq!(filled.config().get_password(), Some(&b"from-pgpass"[..]));

        let with_env_password = |key: &str| {
            (key == "PGPASSWORD")
                .then(|| "from-env".to_owned())
                .or_else(|| env(key))
        };
        let filled = "host=db port=6543 user=monitor dbname=shop"
            .parse::<ConnInfo>()
            .unwrap()
            .filled_from(&with_env_password)
            .unwrap();
        assert_eq!(filled.config().get_password(), Some(&b"from-env"[..]));
        assert_eq!(filled.ssl_mode(), SslMode::VerifyFull);
        let given = "host=db user=monitor password=given"
            .parse::<ConnInfo>()
            .unwrap()
            .filled_from(&with_env_password)
            .unwrap();
        assert_eq!(given.config().get_password(), Some(&b"given"[..]));
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
