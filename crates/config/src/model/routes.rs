//! Routes: what a connection must match, and what is done with it (TLS, CONNECT tunnels,
//! timeouts).

use super::text::as_optional_text;
use super::{Authorization, Terminate};
use ipnet::IpNet;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub cluster: String,
    /// Terminate TLS (the client's TLS ends here); `None`: bytes pass through as they are.
    pub terminate: Option<Terminate>,
    /// Who may connect through this route, decided before anything is dialed; `None`:
    /// everyone.
    pub authorization: Option<Authorization>,
    /// The route terminates HTTP CONNECT tunnels: each tunnel is a connection of its own to
    /// the destination it names (dialed with `cluster`'s settings), if allowed.
    pub connect: Option<ConnectTerminator>,
    /// Close the connection when no byte has flowed either way for this long. Off when `None`.
    #[serde(serialize_with = "as_optional_text")]
    pub idle_timeout: Option<Duration>,
    /// Close the connection this long after it was accepted. Off when `None`.
    #[serde(serialize_with = "as_optional_text")]
    pub max_duration: Option<Duration>,
    /// On an SSH listener: how sessions reach the upstream and what they may do.
    pub ssh: Option<crate::SshRoute>,
}

/// Conditions that must all hold; an empty list matches anything.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct RouteMatch {
    pub destination_ports: Vec<u16>,
    pub source_cidrs: Vec<IpNet>,
    /// Server names from the TLS ClientHello, lower-case; `*.example.com` matches any name
    /// ending in `.example.com`.
    pub sni: Vec<String>,
    /// ALPN protocols; matches when the client offers any of them.
    pub alpn: Vec<String>,
    /// `true`: only TLS connections; `false`: only connections that are not TLS.
    pub tls: Option<bool>,
    /// The FIX Logon (listeners with `protocol: fix`).
    pub fix: Option<crate::FixMatch>,
    /// The MQ channel and queue manager (listeners with `protocol: mq`).
    pub mq: Option<crate::MqMatch>,
    /// The SSH login (user, target).
    pub ssh: Option<crate::SshMatch>,
}

impl RouteMatch {
    pub fn is_catch_all(&self) -> bool {
        self.destination_ports.is_empty()
            && self.source_cidrs.is_empty()
            && self.sni.is_empty()
            && self.alpn.is_empty()
            && self.tls.is_none()
            && self.fix.is_none()
            && self.mq.is_none()
            && self.ssh.is_none()
    }

    /// Whether the route needs the TLS inspector's findings.
    pub fn needs_tls_inspection(&self) -> bool {
        !self.sni.is_empty() || !self.alpn.is_empty() || self.tls.is_some()
    }
}

/// Terminating CONNECT tunnels: which destinations may be asked for. Never an open proxy:
/// a destination must be a cluster's name or match the allowed addresses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectTerminator {
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
