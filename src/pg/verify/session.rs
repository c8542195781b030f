//! The verifying connections: pinned so a value's text is the same on
//! both servers, how both hash a row, and what a failed read means.

use tokio_postgres::Client;

use super::VerifyOptions;
use crate::pg::{ConnInfo, MonitorError, MonitorErrorKind, connect, describe};

/// Pins what changes a value's text, and keeps the session read-only,
/// short of locks, and one process on each server (no parallel workers:
/// the load is what `--verify-concurrency` and `--verify-max-rate` say).
fn session_settings(options: &VerifyOptions) -> String {
    format!(
        "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; \
         SET extra_float_digits = 3; SET bytea_output = 'hex'; SET lc_monetary = 'C'; \
         SET standard_conforming_strings = on; SET max_parallel_workers_per_gather = 0; \
         SET lock_timeout = {}; \
         SET statement_timeout = {}; SET default_transaction_read_only = on; \
         SET application_name = 'pgmigrator verify'",
        options.lock_timeout.as_millis().max(1),
        options.statement_timeout.as_millis().max(1)
    )
}

/// A verifying connection to each server, pinned by [`session_settings`].
pub(super) struct Sessions {
    pub(super) src: Client,
    pub(super) dst: Client,
    /// How both hash a row's text.
    pub(super) hash: RowHash,
}

/// How a row's text is hashed to 64 bits on both servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowHash {
    /// `hashtextextended` of the text's bytes: as fast as the server reads
    /// rows, and the same on both servers when they hash a probe alike
    /// (same byte order).
    Fast,
    /// The first 64 bits of `md5`: the same on every server, but slower;
    /// used when the fast hash differs between the two.
    Md5,
}

impl RowHash {
    /// The `bigint` hash of the text expression `text`.
    pub(super) fn of(self, text: &str) -> String {
        match self {
            RowHash::Fast => format!("hashtextextended({text} COLLATE \"C\", 0)"),
            RowHash::Md5 => format!("('x' || left(md5({text}), 16))::bit(64)::bigint"),
        }
    }
}

impl Sessions {
    pub(super) async fn open(
        source: &ConnInfo,
        dest: &ConnInfo,
        options: &VerifyOptions,
    ) -> Result<Sessions, MonitorError> {
        let src = session("source", source, options).await?;
        let dst = session("destination", dest, options).await?;
        let probe = "SELECT hashtextextended('pgmigrator verify', 0)::text";
        let hash = match (
            src.query_one(probe, &[]).await,
            dst.query_one(probe, &[]).await,
        ) {
            (Ok(theirs), Ok(ours)) if theirs.get::<_, String>(0) == ours.get::<_, String>(0) => {
                RowHash::Fast
            }
            _ => RowHash::Md5,
        };
        Ok(Sessions { src, dst, hash })
    }
}

async fn session(
    which: &str,
    server: &ConnInfo,
    options: &VerifyOptions,
) -> Result<Client, MonitorError> {
    let client = connect(which, server).await?;
    client
        .batch_execute(&session_settings(options))
        .await
        .map_err(|err| {
            MonitorError::new(
                MonitorErrorKind::Lost,
                format!("verifying on the {which}: {}", describe(&err)),
            )
        })?;
    Ok(client)
}

/// Why a read failed: the connection is gone (verifying goes on from the
/// last verified key once reconnected), or the table cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Failure {
    /// The server went away; what it said.
    Lost(String),
    /// The table cannot be verified: a fixed meaning and the SQLSTATE, never
    /// the server's message (it can quote row data).
    Table(String),
}

impl Failure {
    pub(super) fn of(err: &tokio_postgres::Error) -> Failure {
        match err.as_db_error() {
            Some(db) => Failure::from_code(db.code().code()),
            None => Failure::Lost(describe(err)),
        }
    }

    /// The failure a server's SQLSTATE `code` means.
    fn from_code(code: &str) -> Failure {
        let meaning = match code {
            "42501" => "no rights to read it",
            "42P01" | "3F000" => "it is gone (dropped or renamed)",
            "42703" => "its columns changed",
            "57014" => "a statement ran past the statement timeout",
            "55P03" => "a lock was held past the lock timeout",
            "40001" => "a serialization failure",
            "53200" | "53100" => "the server ran out of memory or disk",
            // Class 08 (connection) and 57P (shutdown, terminated).
            _ if code.starts_with("08") || code.starts_with("57P") => {
                return Failure::Lost(format!("the connection was closed (SQLSTATE {code})"));
            }
            _ => "the server refused a query",
        };
        Failure::Table(format!("{meaning} (SQLSTATE {code})"))
    }
}

pub(super) fn fail(err: tokio_postgres::Error) -> Failure {
    Failure::of(&err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_says_what_its_sqlstate_means_and_tells_a_lost_connection_apart() {
        assert_eq!(
            Failure::from_code("42501"),
            Failure::Table("no rights to read it (SQLSTATE 42501)".into())
        );
        assert_eq!(
            Failure::from_code("22P02"),
            Failure::Table("the server refused a query (SQLSTATE 22P02)".into())
        );
        assert!(matches!(Failure::from_code("57P01"), Failure::Lost(_)));
        assert!(matches!(Failure::from_code("08006"), Failure::Lost(_)));
    }
}
