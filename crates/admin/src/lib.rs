//! The admin HTTP API, in two parts:
//!
//! - the **control API** (`/config`, `/clusters`, `/connections`, `POST /reload`,
//!   `POST /drain`, `POST /logging`, `POST /connections/{id}/close`, and the probes too), on
//!   loopback, a unix socket, or — with a bearer token — anywhere;
//! - the **probe listener** (`GET /` the status page, `/status.json`, `/ready`, `/live`,
//!   `/metrics`): read-only, safe to bind on the address kubelet and Prometheus reach.
//!
//! Every control request passes [`guard`].

mod control;
mod guard;
mod probes;

use axum::Router;
use proxy::Gateway;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use guard::Token;

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

/// Where the admin API ended up listening.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The control API's TCP address (`None` on a unix socket).
    pub control: Option<SocketAddr>,
    pub probes: Option<SocketAddr>,
}

/// Binds the control API (and the probe listener, when configured) and serves them until
/// the process ends.
pub async fn serve(
    settings: &config::Admin,
    gateway: Arc<Gateway>,
    control: Arc<dyn Control>,
) -> Result<Bound, String> {
    let token = match &settings.token_file {
        Some(path) => Some(Token::read(path)?),
        None => None,
    };
    let api = Arc::new(Api { gateway, control });
    let control_app = control::router(api.clone(), token);
    let bound_control = match &settings.address {
        config::AdminAddress::Tcp(address) => {
            Some(serve_tcp(*address, control_app, "admin API").await?)
        }
        config::AdminAddress::Unix(path) => {
            serve_unix(path, control_app)?;
            None
        }
    };
    let probes = match settings.probes {
        Some(address) => Some(serve_tcp(address, probes::router(api), "probe listener").await?),
        None => None,
    };
    Ok(Bound {
        control: bound_control,
        probes,
    })
}

async fn serve_tcp(
    address: SocketAddr,
    app: Router,
    what: &'static str,
) -> Result<SocketAddr, String> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("{what} cannot listen on {address}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("{what} stopped: {e}");
        }
    });
    tracing::info!(address = %bound, "{what} ready");
    Ok(bound)
}

/// A unix socket readable and writable by the owner and group only; a socket file left by a
/// previous run is replaced.
fn serve_unix(path: &Path, app: Router) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let cannot =
        |e: std::io::Error| format!("admin API cannot listen on unix:{}: {e}", path.display());
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(path).map_err(cannot)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(cannot)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(cannot)?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("admin API stopped: {e}");
        }
    });
    tracing::info!(address = %format!("unix:{}", path.display()), "admin API ready");
    Ok(())
}
