//! Authorization: built-in rules, external authorizers and their decision cache.

use super::AllowedPeers;
use super::text::{as_optional_text, as_text};
use ipnet::IpNet;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// An external authorization service (Envoy's `envoy.service.auth.v3.Authorization`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Authorizer {
    pub name: String,
    /// `host:port` of the gRPC server (HTTP/2; over TLS with `tls`).
    pub address: String,
    #[serde(serialize_with = "as_text")]
    pub timeout: Duration,
    /// When the service cannot answer (error, timeout): deny, or allow.
    pub failure_mode: FailureMode,
    /// Send the client certificate (URL-encoded PEM) in the check request.
    pub include_peer_certificate: bool,
    /// Send the FIX Logon's Password (554) in the check request (never logged).
    pub include_fix_password: bool,
    pub cache: Option<DecisionCache>,
    /// TLS to the service (it carries passwords): verified with `ca`, and with a client
    /// certificate when given. `None`: plaintext.
    pub tls: Option<AuthorizerTls>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthorizerTls {
    /// PEM CA certificates the service's certificate must chain to.
    pub ca: std::path::PathBuf,
    /// A client certificate (PEM chain) and key (mTLS).
    pub certificate: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// The name the service's certificate must be valid for; default: the address's host.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    Deny,
    Allow,
}

/// Decisions remembered for `ttl`, keyed on chosen attributes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionCache {
    #[serde(serialize_with = "as_text")]
    pub ttl: Duration,
    pub key: Vec<CacheKey>,
    pub max_entries: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheKey {
    SourceIp,
    DestinationPort,
    SpiffeId,
    Sni,
    Listener,
    Route,
}

impl CacheKey {
    pub const ALL: [(&'static str, CacheKey); 6] = [
        ("source_ip", CacheKey::SourceIp),
        ("destination_port", CacheKey::DestinationPort),
        ("spiffe_id", CacheKey::SpiffeId),
        ("sni", CacheKey::Sni),
        ("listener", CacheKey::Listener),
        ("route", CacheKey::Route),
    ];
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Authorization {
    /// Built-in rules, in order; the first that matches decides.
    pub rules: Vec<Rule>,
    /// Asked when no rule matched.
    pub ext_authz: Option<String>,
    /// The decision when no rule matched and there is no `ext_authz`.
    pub default: RuleAction,
    /// Ask again this often while the connection lives; a deny closes it.
    #[serde(serialize_with = "as_optional_text")]
    pub reauthorize_every: Option<Duration>,
    /// Upstream addresses the authorizer may send a connection to.
    pub dynamic_targets: Option<DynamicTargets>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Allow,
    Deny,
}

/// Conditions that must all hold (an empty one does not restrict).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub action: RuleAction,
    pub source_cidrs: Vec<IpNet>,
    /// The client's verified SPIFFE ID (TLS terminated here) matches.
    pub peers: Option<AllowedPeers>,
    pub sni: Vec<String>,
    pub fix: Option<crate::FixMatch>,
    pub mq: Option<crate::MqMatch>,
    pub ssh: Option<crate::SshMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DynamicTargets {
    pub cidrs: Vec<IpNet>,
    /// Inclusive port ranges.
    pub ports: Vec<(u16, u16)>,
}

impl DynamicTargets {
    pub fn allows(&self, address: SocketAddr) -> bool {
        let ip = match address.ip() {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(address.ip(), std::net::IpAddr::V4),
            v4 => v4,
        };
        self.cidrs.iter().any(|c| c.contains(&ip))
            && self
                .ports
                .iter()
                .any(|(lo, hi)| (*lo..=*hi).contains(&address.port()))
    }
}
