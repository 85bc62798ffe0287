//! The admin HTTP API, on loopback unless the configuration says otherwise.
//!
//! `GET /ready` (200 serving, 503 draining), `GET /live`, `GET /metrics`, `GET /config`, `GET /clusters`,
//! `GET /connections`, `POST /reload`, `POST /drain` — every request through [`guard`].

mod guard;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use proxy::Gateway;
use proxy::snapshot;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the API asks of the process that runs the gateway.
pub trait Control: Send + Sync + 'static {
    /// Reload the configuration from its source; the error text when refused.
    fn reload(&self) -> Result<proxy::ReloadSummary, String>;
    /// Start the drain that ends the process (as SIGTERM does).
    fn drain(&self);
    /// The metrics in Prometheus' text exposition format.
    fn metrics(&self) -> String;
}

struct Api {
    gateway: Arc<Gateway>,
    control: Arc<dyn Control>,
}

/// Binds the admin API and serves it until the process ends.
pub async fn serve(
    address: SocketAddr,
    gateway: Arc<Gateway>,
    control: Arc<dyn Control>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let app = router(Arc::new(Api { gateway, control }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("admin API stopped: {e}");
        }
    });
    tracing::info!(address = %bound, "admin API ready");
    Ok(bound)
}

fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/live", get(|| async { "live\n" }))
        .route("/metrics", get(metrics))
        .route("/config", get(config))
        .route("/clusters", get(clusters))
        .route("/connections", get(connections))
        .route("/reload", post(reload))
        .route("/drain", post(drain))
        .layer(axum::middleware::from_fn(guard::guard))
        .with_state(api)
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
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        api.control.metrics(),
    )
        .into_response()
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
