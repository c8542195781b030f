//! The monitor against a PostgreSQL 15 source that accepts only TLS
//! (`hostssl`), with libpq's `sslmode`s, a client certificate, and real
//! handshakes.

use std::time::Duration;

use pgmigrator_metrics::pg::{self, ConnInfo, Monitor, MonitorConfig};
use pgmigrator_metrics::{Collector, Phase};

use crate::cluster::{self, Cluster, MONITOR_PASSWORD, ServerTls};
use crate::pki::Ca;

/// A TLS-only source (certificate for `localhost` only, signed by `ca`)
/// with a publication, and a plain destination subscribed to it.
fn tls_pair(ca: &Ca) -> (Cluster, Cluster) {
    let server = ca.issue(&["localhost"], "localhost");
    let tls = ServerTls {
        cert: &server.cert,
        key: &server.key,
        client_ca: &ca.pem(),
    };
    let (source, dest) = (Cluster::start_tls(true, &tls), Cluster::start(false));
    for cluster in [&source, &dest] {
        cluster.sql("CREATE TABLE t (id bigint PRIMARY KEY)");
    }
    source.sql("INSERT INTO t SELECT generate_series(1, 1000)");
    source.sql("CREATE PUBLICATION pub FOR ALL TABLES");
    dest.sql(&format!(
        "CREATE SUBSCRIPTION sub CONNECTION '{} sslmode=require' PUBLICATION pub",
        source.conninfo()
    ));
    (source, dest)
}

fn monitor_config(source: &str, dest: &Cluster) -> MonitorConfig {
    MonitorConfig {
        interval: Duration::from_millis(100),
        ..MonitorConfig::new(
            source.parse::<ConnInfo>().unwrap(),
            dest.monitor_uri().parse().unwrap(),
        )
    }
}

fn password() -> String {
    MONITOR_PASSWORD.replace('\\', "\\\\").replace('\'', "\\'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_mean_what_they_mean_in_libpq() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let other_ca = Ca::new("unrelated CA").write(dir.path(), "other.crt");
    let (source, dest) = tls_pair(&ca);
    let port = source.port;
    let login = |host: &str, extra: &str| {
        format!(
            "host={host} port={port} user=monitor dbname=postgres password='{}' {extra}",
            password()
        )
    };
    let connect = |conninfo: String| {
        let config = monitor_config(&conninfo, &dest);
        async move { Monitor::connect(config).await }
    };
    let ca = ca_file.display();

    // verify-full: the right CA and the certificate's name; the monitor
    // follows the subscription to streaming over it.
    let started = std::time::Instant::now();
    let monitor = connect(login(
        "localhost",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    ))
    .await
    .expect("verify-full with the right CA");
    let handshake = started.elapsed();
    let collector = Collector::builder()
        .tick(Duration::from_millis(100))
        .build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(pg::run(collector.clone(), monitor, async {
        let _ = stopped.await;
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while collector.snapshot().phase != Phase::Streaming {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never streaming: {:#?}",
            collector.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(collector.snapshot().tables_copied, 1);
    stop.send(()).unwrap();
    running.await.unwrap();

    // The wrong CA: one line naming the mode and the reason.
    let err = connect(login(
        "localhost",
        &format!("sslmode=verify-full sslrootcert={}", other_ca.display()),
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("does not verify under sslmode=verify-full"),
        "{err}"
    );
    assert!(err.contains("not signed by a trusted root"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // By address, the name does not match: verify-full fails, verify-ca
    // (the chain only) connects.
    let err = connect(login(
        "127.0.0.1",
        &format!("sslmode=verify-full sslrootcert={ca}"),
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("not valid for this host name"), "{err}");
    connect(login(
        "127.0.0.1",
        &format!("sslmode=verify-ca sslrootcert={ca}"),
    ))
    .await
    .expect("verify-ca checks the chain only");

    // require encrypts without verifying; prefer and allow use TLS when the
    // server insists.
    for mode in ["require", "prefer", "allow"] {
        connect(login("127.0.0.1", &format!("sslmode={mode}")))
            .await
            .unwrap_or_else(|err| panic!("sslmode={mode}: {err}"));
    }

    // disable: the server's own refusal, and no password in it.
    let err = connect(login("127.0.0.1", "sslmode=disable"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no pg_hba.conf entry"), "{err}");
    assert!(err.contains("no encryption"), "{err}");
    assert!(!err.contains("pw9f3"), "{err}");

    // verify-full without a root certificate says what to give.
    let err = connect(login("localhost", "sslmode=verify-full"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("give sslrootcert=PATH"), "{err}");

    println!("verify-full connect (two connections, the source's over TLS): {handshake:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_logs_in_and_a_readable_key_is_refused() {
    if !crate::tools::available("/usr/lib/postgresql/15/bin/initdb") || !cluster::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let (source, dest) = tls_pair(&ca);
    let client = ca.issue(&[], "certuser");
    let conninfo = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "postgres://certuser@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            source.port,
            ca_file.display(),
            cert.display(),
            key.display()
        )
    };
    let (cert, key) = client.write(dir.path(), "client", 0o600);
    Monitor::connect(monitor_config(&conninfo(&cert, &key), &dest))
        .await
        .expect("certificate login");

    let (cert, key) = client.write(dir.path(), "readable", 0o644);
    let err = Monitor::connect(monitor_config(&conninfo(&cert, &key), &dest))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("has group or world access (0644)"), "{err}");
}
