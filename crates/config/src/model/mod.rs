//! The validated configuration: every reference resolved, every value in range.

mod authz;
mod clusters;
mod connect;
mod gateway;
mod listeners;
mod routes;
mod telemetry;
mod text;
mod tls;
mod tracing;

pub use authz::*;
pub use clusters::*;
pub use connect::*;
pub use gateway::*;
pub use listeners::*;
pub use routes::*;
pub use telemetry::*;
pub(crate) use text::as_text;
pub use tls::*;
pub use tracing::*;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Worker threads of the runtime.
    pub workers: usize,
    /// Live connections across all listeners above this are accepted and closed at once.
    pub max_connections: Option<usize>,
    pub drain: Drain,
    /// The admin HTTP API; `None` when disabled.
    pub admin: Option<Admin>,
    pub metrics: Metrics,
    /// One JSON line per connection; `None`: off.
    pub access_log: Option<AccessLog>,
    /// OpenTelemetry traces; `None`: off (or as the `OTEL_*` environment says, at start).
    pub tracing: Option<Tracing>,
    pub reload: Reload,
    pub relay: Relay,
    pub identities: Vec<Identity>,
    pub authorizers: Vec<Authorizer>,
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
}

impl Config {
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }
}
