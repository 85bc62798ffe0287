//! Terminating CONNECT tunnels (a route's `connect`): which destinations a tunnel may ask
//! for. Never an open proxy, never a way into another route's clusters.

use super::text::as_text;
use ipnet::IpNet;
use serde::Serialize;
use std::net::IpAddr;
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

    /// Whether `host` (an IP address or a name) and `port` may be asked for. A name's
    /// addresses are checked too, once resolved ([`Self::allows_address`]).
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let port_ok = self
            .allowed_ports
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&port));
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = match host.parse::<IpAddr>() {
            Ok(ip) => self
                .allowed_cidrs
                .iter()
                .any(|c| c.contains(&canonical(ip))),
            Err(_) => self
                .allowed_names
                .iter()
                .any(|p| crate::name_matches(p, host)),
        };
        port_ok && host_ok
    }

    /// Whether an address (asked for, or a name resolved to it) may be dialed: inside
    /// `allowed_cidrs` when there are any, else anywhere; a loopback, link-local,
    /// unspecified, multicast or broadcast address only when a listed CIDR inside that
    /// range holds it (`127.0.0.1/32` does, `0.0.0.0/0` does not).
    pub fn allows_address(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        let listed = |c: &&IpNet| c.contains(&ip);
        match SPECIAL
            .iter()
            .map(|r| r.parse::<IpNet>().expect("a CIDR"))
            .find(|r| r.contains(&ip))
        {
            Some(range) => self
                .allowed_cidrs
                .iter()
                .filter(listed)
                .any(|c| range.contains(c)),
            None => self.allowed_cidrs.is_empty() || self.allowed_cidrs.iter().any(|c| listed(&c)),
        }
    }
}

/// Addresses that are never a tunnel's destination unless listed explicitly: this host,
/// its link, nowhere, everyone.
const SPECIAL: [&str; 9] = [
    "127.0.0.0/8",
    "169.254.0.0/16",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "255.255.255.255/32",
    "::1/128",
    "::/128",
    "fe80::/10",
    "ff00::/8",
];

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminator(cidrs: &[&str]) -> ConnectTerminator {
        ConnectTerminator {
            clusters: vec![],
            allowed_cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            allowed_ports: vec![(1, 65535)],
            allowed_names: vec!["localhost".into()],
            client_address_header: None,
            accept_post: false,
            max_concurrent_streams: 1,
            max_header_size: 8192,
            keepalive: Duration::from_secs(1),
            connection_idle_timeout: Duration::from_secs(1),
        }
    }

    fn allows(t: &ConnectTerminator, ip: &str) -> bool {
        t.allows_address(ip.parse().unwrap())
    }

    #[test]
    fn special_addresses_only_when_listed_inside_their_range() {
        let none = terminator(&[]);
        for ip in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "::",
            "169.254.169.254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!allows(&none, ip), "{ip} without a CIDR");
        }
        assert!(allows(&none, "10.1.2.3"), "no CIDR: any other address");
        let everything = terminator(&["0.0.0.0/0", "::/0"]);
        assert!(
            !allows(&everything, "127.0.0.1"),
            "0.0.0.0/0 does not list loopback"
        );
        assert!(!allows(&everything, "169.254.169.254"));
        assert!(allows(&everything, "192.0.2.1"));
        let loopback = terminator(&["127.0.0.1/32"]);
        assert!(allows(&loopback, "127.0.0.1"));
        assert!(allows(&loopback, "::ffff:127.0.0.1"));
        assert!(!allows(&loopback, "127.0.0.2"));
        assert!(
            !allows(&loopback, "10.1.2.3"),
            "CIDRs given: only inside them"
        );
    }
}
