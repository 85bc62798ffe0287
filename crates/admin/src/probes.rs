//! The probe listener: what kubelet, a load balancer's health check, Prometheus and an
//! operator's browser may read — and nothing that changes the gateway. No `POST` route
//! exists here, so none can be reached, whoever can open the port; and nothing a client
//! told the gateway (its address, server name, identity) is shown here.

use crate::Api;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proxy::Audience;
use std::sync::Arc;

/// The status page: three files, no external assets; it reads `status.json` every 2 s.
const PAGE: &str = include_str!("status.html");
const SCRIPT: &str = include_str!("status.js");
const STYLE: &str = include_str!("status.css");

/// The page may load its own script, style and data, and nothing else; no framing.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub(crate) fn router(api: Arc<Api>) -> Router {
    routes(Audience::Public).with_state(api)
}

/// The read-only routes; the control API serves them too, for operators.
pub(crate) fn routes(audience: Audience) -> Router<Arc<Api>> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", PAGE) }),
        )
        .route(
            "/status.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .route("/status.css", get(|| async { asset("text/css", STYLE) }))
        .route(
            "/status.json",
            get(move |State(api): State<Arc<Api>>| async move { status(api, audience) }),
        )
        .route("/ready", get(ready))
        .route("/live", get(|| async { "live\n" }))
        .route("/metrics", get(metrics))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
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

fn status(api: Arc<Api>, audience: Audience) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        axum::Json(api.gateway.status(audience)),
    )
        .into_response()
}
