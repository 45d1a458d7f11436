//! What the gateway's process has done, over HTTP: `GET /api/stats` and `/api/links` (JSON
//! of [`Runtime::stats`](netsvc::Runtime::stats)), `GET /metrics` (Prometheus text) and
//! `GET /api/services/NAME/methods` (the service's answer to `system.listMethods`),
//! `GET /api/subscriptions` (the report subscriptions held here).
//!
//! The stats are this process's: served by the hub itself (`netsvc exchange --http`) they
//! are the hub's view of every link and every relayed request.

use axum::http::StatusCode;
use axum::response::Response;
use netsvc::stats::LATENCY_BOUNDS_US;
use netsvc::{LIST_METHODS, MAX_SUBSCRIPTIONS};
use serde_json::{Value as Json, json};

use crate::metrics;
use crate::server::{Shared, not_found, reply};

pub(crate) fn stats(state: &Shared) -> Response {
    let stats = state.stats();
    let mut body = serde_json::to_value(&*stats).unwrap_or(Json::Null);
    if let Some(object) = body.as_object_mut() {
        // The page that draws the histograms needs their bounds.
        object.insert("latency_bounds_us".into(), json!(LATENCY_BOUNDS_US));
    }
    reply(StatusCode::OK, "application/json", body.to_string())
}

pub(crate) fn links(state: &Shared) -> Response {
    let body = serde_json::to_string(&state.stats().links).unwrap_or_else(|_| "[]".to_owned());
    reply(StatusCode::OK, "application/json", body)
}

/// The subscriptions held in this process, `?limit=N` of them (default 1,000, at most
/// [`MAX_SUBSCRIPTIONS`]): `{"entries": [...], "truncated": n}`.
pub(crate) fn subscriptions(state: &Shared, query: Option<&str>) -> Response {
    let limit = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("limit="))
        .map(str::parse::<usize>);
    let limit = match limit {
        None => DEFAULT_SUBSCRIPTIONS,
        Some(Ok(n)) => n.min(MAX_SUBSCRIPTIONS),
        Some(Err(_)) => {
            return reply(
                StatusCode::BAD_REQUEST,
                "application/json",
                json!({"error": "limit must be a number of subscriptions"}).to_string(),
            );
        }
    };
    let held = state.rt.subscriptions(limit);
    let body = serde_json::to_string(&held).unwrap_or_else(|_| "{}".to_owned());
    reply(StatusCode::OK, "application/json", body)
}

/// How many subscriptions `/api/subscriptions` lists unless asked.
const DEFAULT_SUBSCRIPTIONS: usize = 1_000;

pub(crate) fn prometheus(state: &Shared) -> Response {
    reply(
        StatusCode::OK,
        metrics::CONTENT_TYPE,
        metrics::render(&state.stats()),
    )
}

/// The exported methods of the exposed service `name`, as its `system.listMethods` says:
/// a JSON array of names, or the failure (with the original's fields) and status 502.
pub(crate) async fn methods(state: &Shared, name: &str) -> Response {
    if state.resolve(name).is_none() {
        return not_found();
    }
    match state.call(name, LIST_METHODS, Vec::new()).await {
        Ok(value) => reply(
            StatusCode::OK,
            "application/json",
            netsvc::value::json::to_json(&value).to_string(),
        ),
        Err(fault) => reply(
            StatusCode::BAD_GATEWAY,
            "application/json",
            json!({
                "error": fault.error,
                "description": fault.description,
                "origin": fault.origin,
                "details": fault.details,
            })
            .to_string(),
        ),
    }
}
