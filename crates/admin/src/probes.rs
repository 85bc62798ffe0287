//! The probe listener: what kubelet, a load balancer's health check, Prometheus and an
//! operator's browser may read — and nothing that changes the gateway. No `POST` route
//! exists here, so none can be reached, whoever can open the port.

use crate::Api;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// The status page: one file, no external assets; it reads `/status.json` every 2 s.
const STATUS_PAGE: &str = include_str!("status.html");

pub(crate) fn router(api: Arc<Api>) -> Router {
    routes().with_state(api)
}

/// The read-only routes, served by the control API too.
pub(crate) fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/", get(|| async { Html(STATUS_PAGE) }))
        .route("/status.json", get(status))
        .route("/ready", get(ready))
        .route("/live", get(|| async { "live\n" }))
        .route("/metrics", get(metrics))
}

async fn ready(State(api): State<Arc<Api>>) -> Response {
    if api.gateway.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.control.metrics(),
    )
        .into_response()
}

async fn status(State(api): State<Arc<Api>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(api.gateway.status()),
    )
        .into_response()
}
