//! Where a tunnel may go: a cluster its route names, on one of its endpoints' ports; or
//! an allowed address — a name's addresses checked once resolved, and exactly the checked
//! addresses dialed (no second resolution a DNS answer could change).

use super::Terminator;
use crate::dial::cluster::{Cluster, Lease};
use crate::dial::resolve::{Purpose, resolve};
use crate::error::{Error, Kind, Side};
use http::StatusCode;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// Where an allowed tunnel goes.
pub(super) enum Destination {
    /// The cluster dialed (one the route names): its endpoints, balancing and failover.
    Cluster,
    /// Addresses checked against the route's, dialed in turn with its cluster's settings.
    Addresses(Vec<SocketAddr>),
}

impl Terminator {
    /// Whether a tunnel to `host:port` may go anywhere, by the route's settings alone
    /// (nothing resolved: a name is looked up only once the tunnel is authorized): to a
    /// cluster the route names (its own or one it lists), on a port one of its endpoints
    /// listens on (`Some`); or to an allowed name or address (`None`: see
    /// [`Self::allowed_addresses`]). Never a lookup over every cluster: another route's
    /// cluster (MQ, FIX...) is not a destination. `403` when not allowed.
    pub(super) fn named_cluster(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Option<Arc<Cluster>>, StatusCode> {
        let settings = self.settings();
        if settings.names_cluster(&self.route.config.cluster, host) {
            let cluster = (self.listener.routes.cluster(host)).ok_or(StatusCode::FORBIDDEN)?;
            let on_its_port = (cluster.config.endpoints.iter()).any(|e| {
                e.address.rsplit_once(':').and_then(|(_, p)| p.parse().ok()) == Some(port)
            });
            return match on_its_port {
                true => Ok(Some(cluster.clone())),
                false => Err(StatusCode::FORBIDDEN),
            };
        }
        match settings.allows(host, port) {
            true => Ok(None),
            false => Err(StatusCode::FORBIDDEN),
        }
    }

    /// The addresses of an allowed `host` that the route allows. `403` when it resolves
    /// only outside them, `502` when it does not resolve.
    pub(super) async fn allowed_addresses(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, StatusCode> {
        let settings = self.settings();
        let resolved = self.resolve(host, port).await?;
        let allowed: Vec<SocketAddr> = (resolved.iter())
            .filter(|a| settings.allows_address(a.ip()))
            .copied()
            .collect();
        if allowed.is_empty() {
            tracing::warn!(route = %self.route.config.name, host, ?resolved, "tunnel destination resolves outside the allowed addresses");
            return Err(StatusCode::FORBIDDEN);
        }
        Ok(allowed)
    }

    /// `host`'s addresses (an IP address is its own), within the cluster's connect timeout.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, StatusCode> {
        let timeout = self.route.cluster.config.connect_timeout;
        let address = format!("{host}:{port}");
        match tokio::time::timeout(timeout, resolve(&address, Purpose::Tunnel)).await {
            Ok(Ok(addresses)) => Ok(addresses),
            Ok(Err(e)) => {
                tracing::warn!(route = %self.route.config.name, host, error = %e, "tunnel destination does not resolve");
                Err(StatusCode::BAD_GATEWAY)
            }
            Err(_) => {
                tracing::warn!(route = %self.route.config.name, host, "tunnel destination: resolving timed out");
                Err(StatusCode::BAD_GATEWAY)
            }
        }
    }
}

/// The first of `addresses` that answers, with `cluster`'s timeout and socket options.
pub(super) async fn connect_first(
    cluster: &Cluster,
    addresses: &[SocketAddr],
) -> Result<(TcpStream, Lease), Error> {
    let mut last = Error::new(
        Side::Upstream,
        Kind::ConnectFailed {
            attempts: 0,
            last: "no address".into(),
        },
    );
    for address in addresses {
        // An `ip:port` is dialed as it is: nothing is resolved again.
        match cluster.dial(&address.to_string()).await {
            Ok(connected) => return Ok(connected),
            Err(e) => last = e,
        }
    }
    Err(last)
}
