//! The control API: everything the probe listener serves, plus what an operator reads
//! (`/config`, `/clusters`, `/connections`) and what changes the gateway (`POST /reload`,
//! `POST /drain`, `POST /logging`, `POST /connections/{id}/close`). Every request passes the
//! guard, with the bearer token when one is configured.

use crate::guard::{self, Token};
use crate::{Api, probes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proxy::end::registry::CloseReason;
use proxy::snapshot;
use std::sync::Arc;

pub(crate) fn router(api: Arc<Api>, token: Option<Token>) -> Router {
    let token = Arc::new(token);
    Router::new()
        .route("/config", get(config))
        .route("/clusters", get(clusters))
        .route("/connections", get(connections))
        .route("/connections/{id}/close", post(close_connection))
        .route("/reload", post(reload))
        .route("/drain", post(drain))
        .route("/logging", post(logging))
        .merge(probes::routes(proxy::Audience::Operator))
        .layer(axum::middleware::from_fn(move |request, next| {
            guard::guard(token.clone(), request, next)
        }))
        .with_state(api)
}

async fn config(State(api): State<Arc<Api>>) -> Json<config::Config> {
    Json(api.gateway.config())
}

async fn clusters(State(api): State<Arc<Api>>) -> Json<Vec<snapshot::Cluster>> {
    Json(api.gateway.clusters_snapshot())
}

async fn connections(State(api): State<Arc<Api>>) -> Json<Vec<snapshot::Connection>> {
    Json(api.gateway.connections_snapshot())
}

/// Like HAProxy's `shutdown session`: the connection ends through the one ending, its close
/// reason `closed_by_operator` in the log, the access log and its span.
async fn close_connection(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return (
            StatusCode::BAD_REQUEST,
            "the id is a number (see GET /connections)\n",
        )
            .into_response();
    };
    if api.gateway.registry().close(id, CloseReason::Operator) {
        tracing::info!(id, "connection closed by an operator");
        (StatusCode::ACCEPTED, format!("closing connection {id}\n")).into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("no live connection {id}\n")).into_response()
    }
}

async fn reload(State(api): State<Arc<Api>>) -> Response {
    match api.control.reload() {
        Ok(summary) => (StatusCode::OK, Json(summary)).into_response(),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": error })),
        )
            .into_response(),
    }
}

async fn drain(State(api): State<Arc<Api>>) -> Response {
    api.control.drain();
    (StatusCode::ACCEPTED, "draining\n").into_response()
}

/// `POST /logging?level=FILTER`: the process log's filter from now on.
async fn logging(State(api): State<Arc<Api>>, uri: axum::http::Uri) -> Response {
    let level = uri.query().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("level="))
            .map(percent_decoded)
    });
    let Some(level) = level.filter(|l| !l.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "give ?level=FILTER\n").into_response();
    };
    match api.control.set_log_level(&level) {
        Ok(()) => (StatusCode::OK, format!("log level: {level}\n")).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    }
}

/// `%3D` and friends as the bytes they stand for (`+` as a space, as forms send it).
fn percent_decoded(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = |i: usize| tail.get(i).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(0), hex(1)) {
            (b'%', Some(hi), Some(lo)) => {
                bytes.push((hi * 16 + lo) as u8);
                rest = &tail[2..];
                continue;
            }
            (b'+', _, _) => bytes.push(b' '),
            _ => bytes.push(b),
        }
        rest = tail;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
