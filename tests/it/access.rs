//! Every route the server has (`http::routes()`, the table the router is
//! built from), on a server of one migration and on a fleet, each through
//! every combination of token, `Host` and `Origin`: the status each cell
//! must get.

use std::net::SocketAddr;
use std::time::Duration;

use pgmigrator_metrics::http::{self, HttpConfig, Migrations, RouteKind};
use pgmigrator_metrics::{Collector, Cutover, Phase, Snapshots};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::http::get;

const TOKEN: &str = "a-token-of-24-characters";

/// Where the token is presented.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Absent,
    Header,
    Query,
}

/// The `Host` a request names.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Host {
    Own,
    Foreign,
}

/// The `Origin` a request comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Origin {
    Absent,
    Own,
    Foreign,
}

/// The status a request must get.
fn expected(kind: RouteKind, token: Token, host: Host, origin: Origin) -> u16 {
    let success = if kind == RouteKind::WebSocket {
        101
    } else {
        200
    };
    if !kind.is_guarded() {
        return success;
    }
    if host == Host::Foreign || origin == Origin::Foreign {
        return 403;
    }
    match token {
        Token::Absent => 401,
        Token::Query if !kind.takes_query_token() => 401,
        _ => success,
    }
}

/// A collector with something in every endpoint, the cutover verdict too.
async fn migration() -> Collector {
    let collector = Collector::new();
    collector.set_phase(Phase::Copy).await;
    collector.set_tables(crate::three_tables()).await;
    collector
        .record_cutover(Cutover::new(
            time::OffsetDateTime::now_utc(),
            vec![],
            vec![],
        ))
        .await;
    collector
        .record_verify(pgmigrator_metrics::VerifyProgress::default())
        .await;
    collector.flush().await;
    collector
}

async fn serve(migrations: Migrations) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let config = HttpConfig {
        token: Some(TOKEN.into()),
        ..HttpConfig::default()
    };
    tokio::spawn(http::serve_migrations(
        listener,
        migrations,
        config,
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

/// The status of one request to `path`, a WebSocket upgrade for a
/// WebSocket route.
async fn status(
    addr: SocketAddr,
    path: &str,
    kind: RouteKind,
    (token, host, origin): (Token, Host, Origin),
) -> u16 {
    let query = if token == Token::Query {
        format!("?token={TOKEN}")
    } else {
        String::new()
    };
    let own = addr.to_string();
    let mut headers: Vec<(&str, String)> = vec![(
        "host",
        match host {
            Host::Own => own.clone(),
            Host::Foreign => "attacker.example".into(),
        },
    )];
    match origin {
        Origin::Absent => {}
        Origin::Own => headers.push(("origin", format!("http://{own}"))),
        Origin::Foreign => headers.push(("origin", "http://attacker.example".into())),
    }
    if token == Token::Header {
        headers.push(("authorization", format!("Bearer {TOKEN}")));
    }
    if kind != RouteKind::WebSocket {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        return get(&format!("http://{addr}{path}{query}"), &headers)
            .await
            .0;
    }
    let mut request = format!("ws://{addr}{path}{query}")
        .into_client_request()
        .unwrap();
    for (name, value) in &headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("an answer in time");
    match connected {
        Ok((_, response)) => response.status().as_u16(),
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{path}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_token_host_and_origin_as_its_kind_requires() {
    let (one, shop, crm) = (migration().await, migration().await, migration().await);
    let single = Migrations::new(vec![("default".into(), Snapshots::from(one.clone()))]).unwrap();
    let fleet = Migrations::new(vec![
        ("shop".into(), Snapshots::from(shop.clone())),
        ("crm".into(), Snapshots::from(crm.clone())),
    ])
    .unwrap();
    let routes = http::routes();
    assert!(
        routes.iter().any(|r| r.kind == RouteKind::WebSocket) && routes.len() >= 10,
        "{routes:?}"
    );
    let mut cells = 0;
    // The fleet's second migration, so a route that served only the first
    // under every id would show.
    for (migrations, id) in [(single, "default"), (fleet, "crm")] {
        let (addr, _stop) = serve(migrations).await;
        for route in &routes {
            let path = route.path.replace("{id}", id);
            for token in [Token::Absent, Token::Header, Token::Query] {
                for host in [Host::Own, Host::Foreign] {
                    for origin in [Origin::Absent, Origin::Own, Origin::Foreign] {
                        let cell = (token, host, origin);
                        let got = status(addr, &path, route.kind, cell).await;
                        assert_eq!(
                            got,
                            expected(route.kind, token, host, origin),
                            "{id}: {path} with {cell:?}"
                        );
                        cells += 1;
                    }
                }
            }
        }
    }
    assert_eq!(cells, 2 * routes.len() * 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_migration_or_a_bad_query_is_refused_clearly() {
    let shop = migration().await;
    let (addr, _stop) = serve(Migrations::new(vec![("shop".into(), shop.into())]).unwrap()).await;
    let auth = [("authorization", format!("Bearer {TOKEN}"))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let url = |path: &str| format!("http://{addr}{path}");
    let (code, _, body) = get(&url("/api/v1/migrations/nope/status"), &auth).await;
    assert_eq!(
        (code, body.as_str()),
        (404, r#"{"error":"no such migration"}"#)
    );
    let (code, _, body) = get(&url("/api/v1/migrations/shop/history?step=fast"), &auth).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("step is a duration"), "{body}");
    let (code, _, _) = get(
        &url("/api/v1/migrations/shop/history?step=1s&since=1h"),
        &auth,
    )
    .await;
    assert_eq!(code, 200);
    let mut request = format!("ws://{addr}/api/v1/migrations/shop/ws?mode=sideways")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!("expected 400, got {other:?}"),
    }
    let (code, _, body) = get(&url("/api/v1/migrations/shop/nothing"), &auth).await;
    assert_eq!((code, body.as_str()), (404, r#"{"error":"not found"}"#));
}
