//! Clusters: endpoints, load balancing, health, failback, and how they are reached (CONNECT
//! tunnels, PROXY protocol headers sent).

use super::text::{as_optional_text, as_text, names_only};
use super::{SocketOptions, UpstreamTls};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    pub load_balancing: LoadBalancing,
    #[serde(serialize_with = "as_text")]
    pub connect_timeout: Duration,
    /// Endpoints tried per connection before giving up.
    pub connect_attempts: u32,
    pub health_check: Option<HealthCheck>,
    pub passive_ejection: Option<PassiveEjection>,
    pub failback: Failback,
    pub socket: SocketOptions,
    /// TLS to the endpoints; `None`: plain TCP.
    pub tls: Option<UpstreamTls>,
    /// A PROXY header sent to the endpoints first; `None`: none.
    pub proxy_protocol: Option<ProxyProtocolOut>,
    /// The endpoints are HTTP CONNECT proxies (another Causeway, Envoy): each connection is
    /// carried in a tunnel through them.
    pub tunnel: Option<Tunnel>,
    /// How the endpoints' SSH host keys are verified (SSH routes).
    pub ssh: Option<crate::SshHostKeys>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelProtocol {
    /// One TCP (TLS) connection per tunnel.
    Http1,
    /// Tunnels are streams multiplexed over a pool of connections.
    Http2,
}

/// Text with `{placeholders}` filled from the connection's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Template(pub String);

impl Template {
    pub const PLACEHOLDERS: [&'static str; 9] = [
        "source",
        "source_ip",
        "source_port",
        "destination",
        "destination_port",
        "sni",
        "spiffe_id",
        "listener",
        "route",
    ];

    /// The text with each `{name}` replaced by `value(name)` (empty when unknown).
    pub fn render(&self, mut value: impl FnMut(&str) -> Option<String>) -> String {
        let mut out = String::with_capacity(self.0.len() + 16);
        let mut rest = self.0.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            let name = &rest[open + 1..open + close];
            out.push_str(&value(name).unwrap_or_default());
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The placeholders used that are not known.
    pub fn unknown(&self) -> Vec<String> {
        let mut unknown = Vec::new();
        let _ = self.render(|name| {
            if !Self::PLACEHOLDERS.contains(&name) {
                unknown.push(name.to_string());
            }
            None
        });
        unknown
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tunnel {
    pub protocol: TunnelProtocol,
    /// The CONNECT authority (`host:port`) asked of the proxy.
    pub authority: Template,
    #[serde(serialize_with = "names_only")]
    pub headers: Vec<(String, Template)>,
    /// POST to `path` instead of CONNECT, for intermediaries that refuse CONNECT.
    pub use_post: bool,
    pub path: String,
    /// HTTP/2: connections per endpoint in the pool.
    pub max_connections: usize,
    /// HTTP/2: tunnels per connection.
    pub max_concurrent_streams: u32,
    /// HTTP/2: flow-control window of each tunnel, bytes.
    pub window: u32,
    /// HTTP/2: PING this often to keep idle connections alive and notice dead ones.
    #[serde(serialize_with = "as_optional_text")]
    pub keepalive: Option<Duration>,
    /// How long opening a tunnel may take, from dialing the proxy to its answer.
    #[serde(serialize_with = "as_text")]
    pub answer_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyProtocolOut {
    /// 1 (text) or 2 (binary, with TLVs).
    pub version: u8,
    /// TLVs sent on every connection (v2): type and value.
    #[serde(serialize_with = "names_only")]
    pub tlvs: Vec<(u8, String)>,
    /// TLV types copied from the client's own PROXY header, when it had them (v2).
    pub pass_tlvs: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Endpoint {
    /// `host:port`; a host name is resolved at each connect.
    pub address: String,
    /// 0 is the active level; a higher number is used only while every endpoint of every
    /// lower number is unavailable.
    pub priority: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    RoundRobin,
    LeastConnections,
    Random,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheck {
    #[serde(serialize_with = "as_text")]
    pub interval: Duration,
    #[serde(serialize_with = "as_text")]
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Log on as a FIX initiator instead of only connecting.
    pub fix: Option<crate::FixHealthCheck>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PassiveEjection {
    /// Consecutive connect failures that take an endpoint out of rotation.
    pub consecutive_failures: u32,
    #[serde(serialize_with = "as_text")]
    pub duration: Duration,
}

/// What happens to connections on a standby when a preferred endpoint becomes healthy again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failback {
    /// They stay where they are; only new connections go back.
    Leave,
    /// They are closed so their clients reconnect to the preferred endpoint.
    Close,
}
