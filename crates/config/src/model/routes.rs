//! Routes: what a connection must match, and what is done with it (TLS, CONNECT tunnels,
//! timeouts).

use super::text::as_optional_text;
use super::{Authorization, ConnectTerminator, Terminate};
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
