//! Terminating CONNECT tunnels (a route's `connect`): which destinations a tunnel may ask
//! for. Never an open proxy, never a way into another route's clusters.

use super::text::as_text;
use ipnet::IpNet;
use serde::Serialize;
use std::time::Duration;

/// Terminating CONNECT tunnels: which destinations may be asked for. A destination is one of
/// the clusters the route names (on its endpoints' ports) or matches the allowed addresses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectTerminator {
    /// Clusters a tunnel may name (`CLUSTER:PORT`) besides the route's own `cluster`.
    pub clusters: Vec<String>,
    pub allowed_cidrs: Vec<IpNet>,
    pub allowed_ports: Vec<(u16, u16)>,
    /// Host names (`*.example.com` patterns) that may be asked for, resolved when dialed.
    pub allowed_names: Vec<String>,
    /// A request header whose `ip:port` becomes the tunnel's client address — when the
    /// connection's client certificate is one of the trusted peers'.
    pub client_address_header: Option<ClientAddressHeader>,
    /// Also accept POST tunnels (Envoy's `use_post`).
    pub accept_post: bool,
    /// HTTP/2: tunnels open at once on one connection; more are refused (REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// A request's head, bytes: HTTP/2's header list, HTTP/1.1's head (at least 8 KiB).
    pub max_header_size: usize,
    /// HTTP/2: PING the connection this often; close it when an answer takes longer.
    #[serde(serialize_with = "as_text")]
    pub keepalive: Duration,
    /// Close a connection that has carried no tunnel for this long.
    #[serde(serialize_with = "as_text")]
    pub connection_idle_timeout: Duration,
}

/// The header carrying a tunnel's real client address, and whom it is taken from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientAddressHeader {
    /// Lower-case.
    pub name: String,
    /// SPIFFE IDs of the peers (edges) whose header is believed; from anyone else it is
    /// ignored and the tunnel's client is the connection's.
    pub trusted_peers: Vec<String>,
}

impl ClientAddressHeader {
    pub fn trusts(&self, peer_spiffe_id: Option<&str>) -> bool {
        peer_spiffe_id.is_some_and(|id| self.trusted_peers.iter().any(|t| t == id))
    }
}

impl ConnectTerminator {
    /// Whether a tunnel may name cluster `name`: the route's own (`route_cluster`) or one it
    /// lists. (Its port is checked against the cluster's endpoints when dialed.)
    pub fn names_cluster(&self, route_cluster: &str, name: &str) -> bool {
        name == route_cluster || self.clusters.iter().any(|c| c == name)
    }

    /// Whether `host` (an IP address or a name) and `port` may be dialed.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let port_ok = self
            .allowed_ports
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&port));
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                let ip = match ip {
                    std::net::IpAddr::V6(v6) => {
                        v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4)
                    }
                    v4 => v4,
                };
                self.allowed_cidrs.iter().any(|c| c.contains(&ip))
            }
            Err(_) => self
                .allowed_names
                .iter()
                .any(|p| crate::name_matches(p, host)),
        };
        port_ok && host_ok
    }
}
