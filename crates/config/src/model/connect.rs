//! Terminating CONNECT tunnels (a route's `connect`): which destinations a tunnel may ask
//! for. Never an open proxy, never a way into another route's clusters.

use ipnet::IpNet;
use serde::Serialize;

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
    /// A request header whose `ip:port` becomes the tunnel's client address.
    pub client_address_header: Option<String>,
    /// Also accept POST tunnels (Envoy's `use_post`).
    pub accept_post: bool,
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
