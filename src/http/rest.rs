//! The REST handlers, the dashboard and `/metrics`; and [`Migration`], the
//! extractor that finds which migration a request is about.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::{AppState, error, metrics};
use crate::publish::Snapshots;

/// The migration a request is about: the one named by the `{id}` in its
/// path, or the first when the path has none. A request for an unknown id
/// is answered 404, as is one without an id while no migration is served.
pub(super) struct Migration {
    pub(super) id: String,
    pub(super) snapshots: Snapshots,
}

impl FromRequestParts<Arc<AppState>> for Migration {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Migration, Response> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let named = params.iter().find(|(key, _)| *key == "id");
        let found = match named {
            Some((_, id)) => state
                .migrations
                .get(id)
                .map(|snapshots| (id.to_owned(), snapshots))
                .ok_or("no such migration"),
            None => state.migrations.first().ok_or("no migration yet"),
        };
        found
            .map(|(id, snapshots)| Migration { id, snapshots })
            .map_err(|why| error(StatusCode::NOT_FOUND, why))
    }
}

/// `GET /api/v1/migrations`: a summary per migration, worst first.
pub(super) async fn migrations(State(state): State<Arc<AppState>>) -> Response {
    Json(state.migrations.summaries(OffsetDateTime::now_utc())).into_response()
}

/// The snapshot as JSON.
pub(super) async fn status(migration: Migration) -> Response {
    Json(&*migration.snapshots.snapshot()).into_response()
}

/// The snapshot's `tables` array.
pub(super) async fn tables(migration: Migration) -> Response {
    Json(&migration.snapshots.snapshot().tables).into_response()
}

/// The log ring, oldest first.
pub(super) async fn logs(migration: Migration) -> Response {
    Json(migration.snapshots.logs()).into_response()
}

/// The cutover verdict, or 404 while nothing has computed one.
pub(super) async fn cutover(migration: Migration) -> Response {
    match &migration.snapshots.snapshot().cutover {
        Some(cutover) => Json(cutover).into_response(),
        None => error(StatusCode::NOT_FOUND, "no cutover verdict yet"),
    }
}

/// Data verification's progress and findings, or 404 while verifying is
/// off.
pub(super) async fn verify(migration: Migration) -> Response {
    match &migration.snapshots.snapshot().verify {
        Some(verify) => Json(verify).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no verification: it runs with --verify",
        ),
    }
}

/// The alerts pending, firing or recently resolved (an empty list when
/// none, or when no rules run).
pub(super) async fn alerts(migration: Migration) -> Response {
    Json(&migration.snapshots.snapshot().alerts).into_response()
}

/// The query of `/history`.
#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    /// RFC 3339, or a duration ago such as `1h`; default: all.
    since: Option<String>,
    /// A duration; default: every point kept.
    step: Option<String>,
}

/// `{"points": […]}` from `since`, at least `step` apart.
pub(super) async fn history(
    migration: Migration,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "the query is not since=…&step=…");
    };
    match history_bounds(&query, OffsetDateTime::now_utc()) {
        Ok((since, step)) => {
            let points = migration.snapshots.history().points(since, step);
            Json(serde_json::json!({ "points": points })).into_response()
        }
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// `since` and `step` of a history query, at `now`.
fn history_bounds(
    query: &HistoryQuery,
    now: OffsetDateTime,
) -> Result<(OffsetDateTime, Duration), &'static str> {
    let since = match query.since.as_deref() {
        None => OffsetDateTime::UNIX_EPOCH,
        Some(at) => match OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
        {
            Ok(at) => at,
            Err(_) => {
                let ago = crate::units::parse_duration(at)
                    .map_err(|_| "since is an RFC 3339 time or a duration ago (e.g. 1h)")?;
                time::Duration::try_from(ago)
                    .ok()
                    .and_then(|ago| now.checked_sub(ago))
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            }
        },
    };
    let step = match query.step.as_deref() {
        None => Duration::ZERO,
        Some(step) => {
            crate::units::parse_duration(step).map_err(|_| "step is a duration (e.g. 10s, 1m)")?
        }
    };
    Ok((since, step))
}

/// OpenMetrics when the scraper asks for it, the classic text format else.
/// A single migration's series carry no `migration` label, so a scrape
/// config written for one keeps working.
pub(super) async fn prometheus(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    // One scrape is built at a time, on a blocking thread: parallel
    // scrapes of a large fleet wait their turn instead of each holding a
    // copy of the exposition.
    static SCRAPING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let Ok(_turn) = SCRAPING.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    let snapshots = state.migrations.snapshots();
    let scrape = metrics::Scrape {
        tables: state.config.metrics_tables,
        counters: state.config.counters.clone(),
        openmetrics,
    };
    let render = move || metrics::render(snapshots, &scrape);
    let Ok(body) = tokio::task::spawn_blocking(render).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the exposition failed");
    };
    let content_type = if openmetrics {
        metrics::OPENMETRICS_CONTENT_TYPE
    } else {
        metrics::TEXT_CONTENT_TYPE
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The dashboard.
pub(super) async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(since: Option<&str>, step: Option<&str>) -> HistoryQuery {
        HistoryQuery {
            since: since.map(str::to_owned),
            step: step.map(str::to_owned),
        }
    }

    #[test]
    fn history_bounds_take_a_time_or_a_duration_ago_and_a_step() {
        let now = time::macros::datetime!(2026-12-04 12:00 UTC);
        assert_eq!(
            history_bounds(&query(None, None), now),
            Ok((OffsetDateTime::UNIX_EPOCH, Duration::ZERO))
        );
        assert_eq!(
            history_bounds(&query(Some("1h"), Some("10s")), now),
            Ok((
                time::macros::datetime!(2026-12-04 11:00 UTC),
                Duration::from_secs(10)
            ))
        );
        assert_eq!(
            history_bounds(&query(Some("2026-12-04T10:30:00Z"), None), now).map(|b| b.0),
            Ok(time::macros::datetime!(2026-12-04 10:30 UTC))
        );
        assert!(history_bounds(&query(Some("yesterday"), None), now).is_err());
        assert!(history_bounds(&query(None, Some("fast")), now).is_err());
    }
}
