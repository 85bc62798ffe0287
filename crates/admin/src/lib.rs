//! The admin HTTP API, on loopback unless the configuration says otherwise.
//!
//! `GET /ready` (200 serving, 503 draining), `GET /live`, `GET /metrics`, `GET /config`, `GET /clusters`,
//! `GET /connections`, `POST /reload`, `POST /drain`, `POST /logging?level=…` — every request
//! through [`guard`].

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
    /// Replaces the process log's filter (`debug`, `causeway_proxy=trace`…).
    fn set_log_level(&self, filter: &str) -> Result<(), String>;
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
        .route("/logging", post(logging))
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
