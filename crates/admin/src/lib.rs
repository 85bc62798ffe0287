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
mod listen;
mod probes;
mod unix;

use proxy::Gateway;
use std::net::SocketAddr;
use std::sync::Arc;

pub use guard::Token;
pub use listen::{CONNECTION_LIFETIME, HEADER_TIMEOUT, MAX_CONNECTIONS};

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
            Some(listen::serve_tcp(*address, control_app, listen::Which::Control).await?)
        }
        config::AdminAddress::Unix(path) => {
            listen::serve_unix(path, control_app)?;
            None
        }
    };
    let probes = match settings.probes {
        Some(address) => {
            let app = probes::router(api);
            Some(listen::serve_tcp(address, app, listen::Which::Probes).await?)
        }
        None => None,
    };
    Ok(Bound {
        control: bound_control,
        probes,
    })
}

/// The admin listeners' series: connections open and refused per listener, requests the
/// guard refused by reason.
pub fn report(out: &mut telemetry::Out<'_>) {
    for which in [listen::Which::Control, listen::Which::Probes] {
        let labels = || vec![("listener", which.label().to_string())];
        let slots = which.slots();
        out.gauge(
            "causeway_admin_connections_active",
            labels(),
            slots.open() as f64,
        );
        let refused = slots.refused.load(std::sync::atomic::Ordering::Relaxed);
        out.counter(
            "causeway_admin_connections_refused_total",
            labels(),
            refused,
        );
    }
    guard::report(out);
}
