//! Every route the server has, as data: its path and its kind. The router
//! is built from this table, the access layer decides by kind, and the
//! tests walk the same table, so a route cannot be served without the
//! rules that go with it.
//!
//! One migration's routes are one [`Router`], mounted twice: at `/api/v1`
//! for the first migration (the paths a single-migration server has always
//! had) and under `/api/v1/migrations/{id}` for each.

use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodRouter, get};

use super::{AppState, rest, ws};

/// What a route serves, which decides who may open it and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteKind {
    /// `/healthz`: anyone, whatever the `Host`, without a token.
    Health,
    /// The dashboard, opened by a browser's address bar.
    Page,
    /// JSON or metrics, fetched by code that can set a header.
    Api,
    /// A WebSocket, which a browser opens without a way to set a header.
    WebSocket,
}

impl RouteKind {
    /// Whether the route needs the token (when one is configured) and a
    /// `Host` and `Origin` naming this server.
    pub fn is_guarded(self) -> bool {
        self != RouteKind::Health
    }

    /// Whether the token may come as `?token=` instead of an
    /// `Authorization: Bearer` header: only where a browser opens the
    /// route itself and cannot set a header. Everywhere else a token in
    /// the address would end up in logs and histories for nothing.
    pub fn takes_query_token(self) -> bool {
        matches!(self, RouteKind::Page | RouteKind::WebSocket)
    }
}

/// One route of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The path as the router matches it, with `{id}` for a migration's id.
    pub path: String,
    /// What it serves.
    pub kind: RouteKind,
}

/// Where one migration's routes are mounted: the first migration's at
/// `/api/v1`, each migration's under its id.
const MIGRATION_MOUNTS: [&str; 2] = ["/api/v1", "/api/v1/migrations/{id}"];

type Handler = MethodRouter<Arc<AppState>>;

/// The routes about the server as a whole.
fn server_routes() -> Vec<(&'static str, RouteKind, Handler)> {
    vec![
        ("/healthz", RouteKind::Health, get(|| async { "ok\n" })),
        ("/", RouteKind::Page, get(rest::dashboard)),
        ("/api/v1/migrations", RouteKind::Api, get(rest::migrations)),
        ("/metrics", RouteKind::Api, get(rest::prometheus)),
    ]
}

/// One migration's routes, relative to where they are mounted.
fn migration_routes() -> Vec<(&'static str, RouteKind, Handler)> {
    vec![
        ("/status", RouteKind::Api, get(rest::status)),
        ("/tables", RouteKind::Api, get(rest::tables)),
        ("/logs", RouteKind::Api, get(rest::logs)),
        ("/cutover", RouteKind::Api, get(rest::cutover)),
        ("/verify", RouteKind::Api, get(rest::verify)),
        ("/alerts", RouteKind::Api, get(rest::alerts)),
        ("/history", RouteKind::Api, get(rest::history)),
        ("/ws", RouteKind::WebSocket, get(ws::upgrade)),
    ]
}

/// Every route the server has, in the order it lists them.
pub fn routes() -> Vec<Route> {
    let server = server_routes()
        .into_iter()
        .map(|(path, kind, _)| (path.to_owned(), kind));
    let migrations = MIGRATION_MOUNTS.into_iter().flat_map(|mount| {
        migration_routes()
            .into_iter()
            .map(move |(path, kind, _)| (format!("{mount}{path}"), kind))
    });
    server
        .chain(migrations)
        .map(|(path, kind)| Route { path, kind })
        .collect()
}

/// The router of every route, without its layers.
pub(super) fn router() -> Router<Arc<AppState>> {
    let migration = migration_routes()
        .into_iter()
        .fold(Router::new(), |router, (path, _, handler)| {
            router.route(path, handler)
        });
    let server = server_routes()
        .into_iter()
        .fold(Router::new(), |router, (path, _, handler)| {
            router.route(path, handler)
        });
    MIGRATION_MOUNTS.into_iter().fold(server, |router, mount| {
        router.nest(mount, migration.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_listed_once_with_its_kind() {
        let routes = routes();
        let mut paths: Vec<&str> = routes.iter().map(|r| r.path.as_str()).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), routes.len(), "a path twice: {paths:?}");
        let kind = |path: &str| routes.iter().find(|r| r.path == path).map(|r| r.kind);
        assert_eq!(kind("/api/v1/ws"), Some(RouteKind::WebSocket));
        assert_eq!(
            kind("/api/v1/migrations/{id}/ws"),
            Some(RouteKind::WebSocket)
        );
        assert_eq!(kind("/api/v1/migrations/{id}/status"), Some(RouteKind::Api));
        assert_eq!(kind("/"), Some(RouteKind::Page));
        assert_eq!(kind("/healthz"), Some(RouteKind::Health));
    }

    #[test]
    fn only_what_a_browser_opens_takes_the_token_in_the_query() {
        assert!(RouteKind::Page.takes_query_token());
        assert!(RouteKind::WebSocket.takes_query_token());
        assert!(!RouteKind::Api.takes_query_token());
        assert!(!RouteKind::Health.is_guarded());
        assert!(RouteKind::Api.is_guarded());
    }
}
