//! The validated configuration: every reference resolved, every value in range.

use ipnet::IpNet;
use serde::{Serialize, Serializer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Worker threads of the runtime.
    pub workers: usize,
    /// Live connections across all listeners above this are accepted and closed at once.
    pub max_connections: Option<usize>,
    pub drain: Drain,
    /// The admin HTTP API; `None` when disabled.
    pub admin: Option<Admin>,
    pub metrics: Metrics,
    /// One JSON line per connection; `None`: off.
    pub access_log: Option<AccessLog>,
    pub reload: Reload,
    pub identities: Vec<Identity>,
    pub authorizers: Vec<Authorizer>,
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
}

impl Config {
    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// Certificates and keys the gateway presents and the bundles it trusts, by name; each
/// rotates without a restart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    pub name: String,
    pub source: IdentitySource,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// PEM files, reloaded when they change. A certificate chain (leaf first) with its key,
    /// and/or a trust bundle.
    Files {
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        bundle: Option<PathBuf>,
    },
    /// The SPIFFE Workload API of a SPIRE agent: X.509 SVIDs and bundles, streamed.
    Spire {
        socket: PathBuf,
        /// Which SVID, when the workload has several; default: the first.
        spiffe_id: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// Terminating TLS on a route: the gateway is the TLS server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Terminate {
    /// The certificate is the one of these whose names match the client's SNI (the first
    /// when none does).
    pub identities: Vec<String>,
    pub min_version: TlsVersion,
    /// Protocols offered by ALPN, most preferred first; empty: no ALPN.
    pub alpn: Vec<String>,
    pub client_certificate: ClientCertificate,
    /// The identity whose bundle verifies client certificates.
    pub trust: Option<String>,
    /// Client identities allowed; `None`: any the bundle verifies.
    pub allowed_clients: Option<AllowedPeers>,
    #[serde(serialize_with = "as_text")]
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientCertificate {
    /// Not asked for.
    None,
    /// Asked for, verified when sent.
    Optional,
    /// Asked for; a client without one is refused.
    Required,
}

/// Peer identities allowed: a certificate passes when its SPIFFE ID matches any entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AllowedPeers {
    /// Exact SPIFFE IDs.
    pub spiffe_ids: Vec<String>,
    /// `example.org` allows every `spiffe://example.org/...`.
    pub trust_domains: Vec<String>,
    /// `spiffe://example.org/payments/` allows every ID starting with it.
    pub spiffe_id_prefixes: Vec<String>,
}

impl AllowedPeers {
    pub fn allows(&self, spiffe_id: Option<&str>) -> bool {
        let Some(id) = spiffe_id else {
            return false;
        };
        let domain = id
            .strip_prefix("spiffe://")
            .map(|rest| rest.split('/').next().unwrap_or(rest));
        self.spiffe_ids.iter().any(|s| s == id)
            || domain.is_some_and(|d| self.trust_domains.iter().any(|t| t == d))
            || self
                .spiffe_id_prefixes
                .iter()
                .any(|p| id.starts_with(p.as_str()))
    }
}

/// Originating TLS to a cluster's endpoints: the gateway is the TLS client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamTls {
    /// The SNI sent; with `forward_sni`, the client's SNI when it sent one.
    pub server_name: Option<String>,
    pub forward_sni: bool,
    /// The identity whose bundle verifies the server.
    pub trust: String,
    /// The server must present one of these SPIFFE IDs (then its DNS names are not checked).
    pub verify_spiffe_ids: Vec<String>,
    /// Otherwise its certificate must be valid for this name (default: the SNI sent).
    pub verify_dns_name: Option<String>,
    /// The identity presented as client certificate (mTLS).
    pub identity: Option<String>,
    pub alpn: Vec<String>,
    pub min_version: TlsVersion,
    #[serde(serialize_with = "as_text")]
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drain {
    /// From the shutdown signal, how long live connections may take to finish.
    #[serde(serialize_with = "as_text")]
    pub timeout: Duration,
    /// From the signal, how long listeners keep accepting (while /ready says 503) so load
    /// balancers notice first.
    #[serde(serialize_with = "as_text")]
    pub delay: Duration,
    /// The last part of the window, over which the connections still open are closed one
    /// by one rather than all at once.
    #[serde(serialize_with = "as_text")]
    pub spread: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reload {
    /// Reload when the configuration file changes (its directory is watched, so a
    /// Kubernetes ConfigMap's symlink swap is seen).
    pub watch: bool,
    /// What happens to live connections of a cluster that a reload removes or replaces.
    pub removed_cluster_connections: RemovedConnections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovedConnections {
    /// They stay until they end.
    Keep,
    /// They are closed (spread over the drain spread).
    Close,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessLog {
    /// A file to append to; `None`: standard output.
    pub path: Option<std::path::PathBuf>,
    /// Also a line for each connection still open, this often.
    #[serde(serialize_with = "as_optional_text")]
    pub open_connections_interval: Option<Duration>,
}

/// Prometheus metrics are always served by the admin API; statsd is optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Metrics {
    pub statsd: Option<Statsd>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statsd {
    /// `host:port` of the statsd server (UDP).
    pub address: String,
    /// Put in front of every metric name, with a dot.
    pub prefix: String,
    #[serde(serialize_with = "as_text")]
    pub flush_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Admin {
    pub address: SocketAddr,
}

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

/// Looking at the client's first bytes before routing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Inspect {
    /// Read the TLS ClientHello (SNI, ALPN) without terminating TLS.
    pub tls: bool,
    /// How long the client may take to send what is inspected.
    #[serde(serialize_with = "as_text")]
    pub timeout: Duration,
}

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

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyProtocolOut {
    /// 1 (text) or 2 (binary, with TLVs).
    pub version: u8,
    /// TLVs sent on every connection (v2): type and value.
    pub tlvs: Vec<(u8, String)>,
    /// TLV types copied from the client's own PROXY header, when it had them (v2).
    pub pass_tlvs: Vec<u8>,
}

/// An external authorization service (Envoy's `envoy.service.auth.v3.Authorization`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Authorizer {
    pub name: String,
    /// `host:port` of the gRPC server (plaintext HTTP/2).
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

/// Durations read back the way they are written: `30s`, `1h 30m`.
pub(crate) fn as_text<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn as_optional_text<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => as_text(d, s),
        None => s.serialize_none(),
    }
}
