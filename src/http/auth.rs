//! Access checks: the `Host` and `Origin` headers and the token, as one
//! layer over every route.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{AppState, HttpConfig, RouteKind, error};

/// The one access rule, over every route, decided by the route's
/// [`RouteKind`]: `/healthz` is open; everything else needs a `Host` that
/// names this server (else 403), no foreign `Origin` (else 403), and the
/// token when one is configured (else 401): `Authorization: Bearer …`
/// everywhere, `?token=…` only where a browser opens the route itself. A
/// route missing from the table is treated as an API route, the strictest.
pub(super) async fn guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let kind = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|matched| state.kinds.get(matched.as_str()).copied())
        .unwrap_or(RouteKind::Api);
    if !kind.is_guarded() {
        return next.run(request).await;
    }
    let config = &state.config;
    if !host_allowed(request.headers(), config) {
        return error(
            StatusCode::FORBIDDEN,
            "this Host is not allowed; start the server with --allow-host NAME to serve under it",
        );
    }
    if !origin_allowed(request.headers(), config) {
        return error(
            StatusCode::FORBIDDEN,
            "this Origin is not allowed; start the server with --allow-origin ORIGIN to serve it",
        );
    }
    if token_presented(&request, kind, config) {
        next.run(request).await
    } else {
        let mut response = error(StatusCode::UNAUTHORIZED, "a valid token is required");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    }
}

/// Whether no token is configured, or the request presents it where its
/// kind of route may.
fn token_presented(request: &Request, kind: RouteKind, config: &HttpConfig) -> bool {
    let Some(expected) = config.token.as_deref().filter(|t| !t.is_empty()) else {
        return true;
    };
    let from_query = || {
        kind.takes_query_token()
            .then(|| query_token(request.uri()))
            .flatten()
    };
    bearer(request.headers())
        .or_else(from_query)
        .is_some_and(|token| constant_time_eq(token.as_bytes(), expected.as_bytes()))
}

/// Whether the `Host` header names this server: an IP address (a browser
/// sends one only when it connected to that address), `localhost`, or a
/// name the configuration allows. A DNS name an attacker's page rebinds to
/// 127.0.0.1 is none of these. No `Host` (not HTTP/1.1, not a browser) is
/// allowed.
fn host_allowed(headers: &HeaderMap, config: &HttpConfig) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    host.to_str()
        .is_ok_and(|host| name_allowed(host_name(host), config))
}

/// The name part of a `host[:port]` authority (`[v6]` without brackets).
fn host_name(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    match authority.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => authority,
    }
}

fn name_allowed(name: &str, config: &HttpConfig) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || config
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
        || config.allowed_origins.iter().any(|origin| {
            let authority = origin.split_once("://").map_or(origin.as_str(), |(_, a)| a);
            host_name(authority.trim_end_matches('/')).eq_ignore_ascii_case(name)
        })
}

/// The token of an `Authorization: Bearer …` header (the scheme in any
/// case, as RFC 9110 has it).
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The `token` of the query string, decoded.
fn query_token(uri: &Uri) -> Option<String> {
    #[derive(Deserialize)]
    struct TokenQuery {
        token: Option<String>,
    }
    Query::<TokenQuery>::try_from_uri(uri).ok()?.0.token
}

/// Compares without an early exit on content, so the time taken does not
/// tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Whether a request comes from no page (no `Origin`: an address bar, a
/// program), the server's own, or one the configuration allows.
fn origin_allowed(headers: &HeaderMap, config: &HttpConfig) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    // The page's own origin: the same authority as `Host`, which must
    // itself name this server (the Host check normally ran already).
    let own = host_allowed(headers, config)
        && headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .is_some_and(|host| {
                origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))
                    == Some(host)
            });
    own || config
        .allowed_origins
        .iter()
        .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cres"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret!"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer   spaced"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("spaced"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearerabc"));
        assert_eq!(bearer(&headers), None);
        let uri = |text: &'static str| Uri::from_static(text);
        assert_eq!(
            query_token(&uri("/?a=1&token=x%2By%20z")).as_deref(),
            Some("x+y z")
        );
        assert_eq!(
            query_token(&uri("/?token=bad%zz%")).as_deref(),
            Some("bad%zz%")
        );
        assert_eq!(query_token(&uri("/?tokens=x")), None);
        assert_eq!(query_token(&uri("/")), None);
    }

    fn host_is_allowed(host: &'static str, config: &HttpConfig) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(host));
        host_allowed(&headers, config)
    }

    #[test]
    fn hosts_must_be_addresses_localhost_or_allowed_names() {
        let config = HttpConfig {
            allowed_hosts: vec!["metrics.internal".into()],
            allowed_origins: vec!["https://ops.example.com:8443".into()],
            ..HttpConfig::default()
        };
        for host in [
            "127.0.0.1:7654",
            "127.0.0.1",
            "[::1]:7654",
            "10.1.2.3:80",
            "localhost:7654",
            "LOCALHOST.",
            "metrics.internal:7654",
            "ops.example.com",
        ] {
            assert!(host_is_allowed(host, &config), "{host}");
        }
        for host in [
            "attacker.example",
            "attacker.example:7654",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "",
        ] {
            assert!(!host_is_allowed(host, &config), "{host}");
        }
    }

    #[test]
    fn a_foreign_host_makes_even_a_matching_origin_foreign() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("attacker.example"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://attacker.example"),
        );
        assert!(!origin_allowed(&headers, &HttpConfig::default()));
    }

    #[test]
    fn websocket_origins_must_be_own_or_allowed() {
        let config = HttpConfig {
            allowed_origins: vec!["https://ops.example.com/".into()],
            ..HttpConfig::default()
        };
        let with = |origin: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7654"));
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
            }
            origin_allowed(&headers, &config)
        };
        assert!(with(None));
        assert!(with(Some("http://127.0.0.1:7654")));
        assert!(with(Some("https://ops.example.com")));
        assert!(!with(Some("http://evil.example")));
        assert!(!with(Some("http://127.0.0.1:7655")));
        assert!(!with(Some("null")));
    }
}
