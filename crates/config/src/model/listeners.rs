//! Listeners: addresses, limits, socket options, what is inspected before routing, PROXY
//! protocol headers read.

use super::Route;
use super::text::as_text;
use ipnet::IpNet;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// Live connections above this are accepted and closed at once.
    pub connection_limit: Option<usize>,
    /// Live connections from one client address above this are accepted and closed at once.
    pub max_connections_per_source: Option<usize>,
    /// New connections above this rate are accepted and closed at once.
    pub accept_rate: Option<AcceptRate>,
    pub reuse_port: bool,
    pub backlog: u32,
    pub socket: SocketOptions,
    /// What is read from the client before routing; `None`: nothing.
    pub inspect: Option<Inspect>,
    /// The protocol read before routing (FIX Logon, MQ first segment).
    pub protocol: crate::ListenerProtocol,
    pub fix: crate::FixSettings,
    /// The SSH server of a `protocol: ssh` listener.
    pub ssh: Option<crate::SshListener>,
    /// PROXY protocol headers from load balancers; `None`: off.
    pub proxy_protocol: Option<ProxyProtocolIn>,
    /// Evaluated in order; the first match wins.
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AcceptRate {
    pub per_second: u32,
    /// How many may come at once after a quiet spell.
    pub burst: u32,
}

/// Options set on each accepted (listener) or dialed (cluster) socket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SocketOptions {
    pub nodelay: bool,
    pub keepalive: Option<Keepalive>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Keepalive {
    #[serde(serialize_with = "as_text")]
    pub time: Duration,
    #[serde(serialize_with = "as_text")]
    pub interval: Duration,
    pub retries: u32,
}

/// Looking at the client's first bytes before routing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Inspect {
    /// Read the TLS ClientHello (SNI, ALPN) without terminating TLS.
    pub tls: bool,
    /// How long the client may take to send what is inspected.
    #[serde(serialize_with = "as_text")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    /// A header is read when the client (a trusted source) sends one.
    Optional,
    /// Every connection must start with a header from a trusted source.
    Required,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyProtocolIn {
    pub mode: ProxyMode,
    /// Only these may send a header; a header from anyone else closes the connection.
    pub trusted_sources: Vec<IpNet>,
    /// The whole header must have arrived by then.
    #[serde(serialize_with = "as_text")]
    pub timeout: Duration,
}
