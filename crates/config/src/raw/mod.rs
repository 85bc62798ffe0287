//! The configuration exactly as written: serde types, strict about unknown fields, with the
//! source locations that validation needs to point at.

use crate::duration::HumanDuration;
use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::Spanned;

mod telemetry;
pub use telemetry::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub workers: Option<Spanned<usize>>,
    pub max_connections: Option<Spanned<usize>>,
    #[serde(default)]
    pub drain: Drain,
    pub admin: Option<Admin>,
    #[serde(default)]
    pub metrics: Metrics,
    pub access_log: Option<AccessLog>,
    pub tracing: Option<Tracing>,
    #[serde(default)]
    pub reload: Reload,
    #[serde(default)]
    pub relay: Relay,
    #[serde(default)]
    pub identities: Vec<Identity>,
    #[serde(default)]
    pub authorizers: Vec<Authorizer>,
    pub listeners: Spanned<Vec<Listener>>,
    #[serde(default)]
    pub clusters: Vec<Cluster>,
}

/// Certificates and keys the gateway presents, and trust bundles it verifies peers with.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub name: Spanned<String>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub bundle: Option<Spanned<String>>,
    /// PEM CRLs checked with the bundle (client certificates).
    #[serde(default)]
    pub crl_files: Vec<Spanned<String>>,
    pub spire: Option<Spanned<Spire>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spire {
    pub socket: Spanned<String>,
    pub spiffe_id: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Terminate {
    pub identities: Spanned<Vec<Spanned<String>>>,
    pub min_version: Option<Spanned<String>>,
    #[serde(default)]
    pub alpn: Vec<String>,
    pub client_certificate: Option<ClientCertificate>,
    pub trust: Option<Spanned<String>>,
    pub allowed_clients: Option<Spanned<AllowedPeers>>,
    pub handshake_timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ClientCertificate {
    None,
    Optional,
    Required,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AllowedPeers {
    #[serde(default)]
    pub spiffe_ids: Vec<Spanned<String>>,
    #[serde(default)]
    pub trust_domains: Vec<String>,
    #[serde(default)]
    pub spiffe_id_prefixes: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    pub server_name: Option<Spanned<String>>,
    #[serde(default)]
    pub forward_sni: bool,
    pub trust: Spanned<String>,
    #[serde(default)]
    pub verify_spiffe_ids: Vec<Spanned<String>>,
    pub verify_dns_name: Option<Spanned<String>>,
    pub identity: Option<Spanned<String>>,
    #[serde(default)]
    pub alpn: Vec<String>,
    pub min_version: Option<Spanned<String>>,
    pub handshake_timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Drain {
    pub timeout: Option<Spanned<HumanDuration>>,
    pub delay: Option<Spanned<HumanDuration>>,
    pub spread: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub connection_limit: Option<Spanned<usize>>,
    pub max_connections_per_source: Option<Spanned<usize>>,
    pub accept_rate: Option<AcceptRate>,
    #[serde(default)]
    pub reuse_port: bool,
    pub backlog: Option<Spanned<u32>>,
    pub tcp_nodelay: Option<bool>,
    pub tcp_keepalive: Option<Keepalive>,
    pub inspect: Option<Inspect>,
    pub protocol: Option<Spanned<crate::ListenerProtocol>>,
    pub fix: Option<Spanned<Fix>>,
    pub ssh: Option<Spanned<crate::ssh::raw::SshListener>>,
    pub proxy_protocol: Option<Spanned<ProxyProtocolIn>>,
    pub routes: Spanned<Vec<Route>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fix {
    pub max_logon_size: Option<Spanned<usize>>,
    #[serde(default)]
    pub comp_id_metrics: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inspect {
    #[serde(default)]
    pub tls: bool,
    pub timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    pub enabled: Option<bool>,
    pub time: Option<Spanned<HumanDuration>>,
    pub interval: Option<Spanned<HumanDuration>>,
    pub retries: Option<Spanned<u32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: Option<Spanned<String>>,
    #[serde(rename = "match")]
    pub matcher: Option<Spanned<RouteMatch>>,
    pub cluster: Spanned<String>,
    pub connect: Option<Spanned<ConnectTerminator>>,
    pub terminate: Option<Spanned<Terminate>>,
    pub authorization: Option<Spanned<Authorization>>,
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    pub max_duration: Option<Spanned<HumanDuration>>,
    pub ssh: Option<Spanned<crate::ssh::raw::SshRoute>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    #[serde(default)]
    pub destination_ports: Vec<u16>,
    #[serde(default)]
    pub source_cidrs: Vec<IpNet>,
    #[serde(default)]
    pub sni: Vec<Spanned<String>>,
    #[serde(default)]
    pub alpn: Vec<String>,
    pub tls: Option<bool>,
    pub fix: Option<Spanned<crate::FixMatch>>,
    pub mq: Option<Spanned<crate::MqMatch>>,
    pub ssh: Option<Spanned<crate::SshMatch>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: Spanned<String>,
    pub endpoints: Spanned<Vec<Endpoint>>,
    pub load_balancing: Option<LoadBalancing>,
    pub connect_timeout: Option<Spanned<HumanDuration>>,
    pub connect_attempts: Option<Spanned<u32>>,
    pub health_check: Option<HealthCheck>,
    pub passive_ejection: Option<PassiveEjection>,
    pub failback: Option<Failback>,
    pub tcp_nodelay: Option<bool>,
    pub tcp_keepalive: Option<Keepalive>,
    pub tls: Option<Spanned<UpstreamTls>>,
    pub proxy_protocol: Option<Spanned<ProxyProtocolOut>>,
    pub tunnel: Option<Spanned<Tunnel>>,
    pub ssh: Option<Spanned<crate::ssh::raw::SshHostKeys>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    pub protocol: Option<TunnelProtocol>,
    pub authority: Spanned<String>,
    #[serde(default)]
    pub headers: Vec<Spanned<Header>>,
    #[serde(default)]
    pub use_post: bool,
    pub path: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<usize>>,
    pub max_concurrent_streams: Option<Spanned<u32>>,
    pub window: Option<Spanned<u32>>,
    pub keepalive: Option<Spanned<HumanDuration>>,
    pub answer_timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum TunnelProtocol {
    Http1,
    Http2,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectTerminator {
    #[serde(default)]
    pub clusters: Vec<Spanned<String>>,
    #[serde(default)]
    pub allowed_cidrs: Vec<IpNet>,
    #[serde(default)]
    pub allowed_ports: Vec<Spanned<String>>,
    #[serde(default)]
    pub allowed_names: Vec<Spanned<String>>,
    pub client_address_header: Option<Spanned<ClientAddressHeader>>,
    #[serde(default)]
    pub accept_post: bool,
    pub max_concurrent_streams: Option<Spanned<u32>>,
    pub max_header_size: Option<Spanned<usize>>,
    pub keepalive: Option<Spanned<HumanDuration>>,
    pub connection_idle_timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAddressHeader {
    pub name: String,
    #[serde(default)]
    pub trusted_peers: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub address: Spanned<String>,
    #[serde(default)]
    pub priority: u32,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancing {
    RoundRobin,
    LeastConnections,
    Random,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub interval: Spanned<HumanDuration>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub healthy_threshold: Option<Spanned<u32>>,
    pub unhealthy_threshold: Option<Spanned<u32>>,
    pub fix: Option<Spanned<crate::FixHealthCheck>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveEjection {
    pub consecutive_failures: Option<Spanned<u32>>,
    pub duration: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Failback {
    Leave,
    Close,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptRate {
    pub per_second: Spanned<u32>,
    pub burst: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    pub splice: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Reload {
    pub watch: Option<bool>,
    pub removed_cluster_connections: Option<RemovedConnections>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum RemovedConnections {
    Keep,
    Close,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    Off,
    Optional,
    Required,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocolIn {
    pub mode: ProxyMode,
    #[serde(default)]
    pub trusted_sources: Vec<IpNet>,
    pub timeout: Option<Spanned<HumanDuration>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyProtocolOut {
    pub version: Spanned<u8>,
    #[serde(default)]
    pub tlvs: Vec<Tlv>,
    #[serde(default)]
    pub pass_tlvs: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tlv {
    #[serde(rename = "type")]
    pub kind: u8,
    pub value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorizer {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub failure_mode: Option<FailureMode>,
    #[serde(default)]
    pub include_peer_certificate: bool,
    #[serde(default)]
    pub include_fix_password: bool,
    pub cache: Option<Spanned<DecisionCache>>,
    pub tls: Option<Spanned<AuthorizerTls>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizerTls {
    pub ca: Spanned<String>,
    pub certificate: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    Deny,
    Allow,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionCache {
    pub ttl: Spanned<HumanDuration>,
    pub key: Spanned<Vec<String>>,
    pub max_entries: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(default)]
    pub rules: Vec<Spanned<Rule>>,
    pub ext_authz: Option<Spanned<String>>,
    pub default: Option<RuleAction>,
    pub reauthorize_every: Option<Spanned<HumanDuration>>,
    pub dynamic_targets: Option<Spanned<DynamicTargets>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Allow,
    Deny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub action: RuleAction,
    #[serde(default)]
    pub source_cidrs: Vec<IpNet>,
    #[serde(default)]
    pub spiffe_ids: Vec<Spanned<String>>,
    #[serde(default)]
    pub trust_domains: Vec<String>,
    #[serde(default)]
    pub spiffe_id_prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    pub sni: Vec<Spanned<String>>,
    pub fix: Option<Spanned<crate::FixMatch>>,
    pub mq: Option<Spanned<crate::MqMatch>>,
    pub ssh: Option<Spanned<crate::SshMatch>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicTargets {
    pub cidrs: Vec<IpNet>,
    pub ports: Vec<Spanned<String>>,
}
