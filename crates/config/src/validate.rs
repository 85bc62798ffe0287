//! From what was written to what runs: defaults filled in, names and references checked,
//! every problem reported at its place in the file.

use crate::problems::{Problem, Problems};
use crate::{model, raw};
use serde_saphyr::{Location, Spanned};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_BACKLOG: u32 = 1024;
pub const DEFAULT_INSPECTION_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_CONNECT_ATTEMPTS: u32 = 3;
pub const DEFAULT_KEEPALIVE: model::Keepalive = model::Keepalive {
    time: Duration::from_secs(60),
    interval: Duration::from_secs(15),
    retries: 4,
};
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 2;
pub const DEFAULT_EJECTION: model::PassiveEjection = model::PassiveEjection {
    consecutive_failures: 5,
    duration: Duration::from_secs(30),
};

pub fn validate(raw: raw::Config) -> Result<model::Config, Vec<Problem>> {
    let mut problems = Problems::default();
    let workers = match &raw.workers {
        Some(w) => problems.at_least(w, 1, "workers"),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let drain = drain(&mut problems, &raw.drain);
    let max_connections = raw
        .max_connections
        .map(|m| problems.at_least(&m, 1, "max_connections"));
    let admin = admin(&mut problems, raw.admin);
    let access_log = raw.access_log.map(|a| model::AccessLog {
        path: a.path.filter(|p| p != "stdout").map(Into::into),
        open_connections_interval: a
            .open_connections_interval
            .map(|i| problems.positive(&i, "access_log.open_connections_interval")),
    });
    let metrics = model::Metrics {
        statsd: raw.metrics.statsd.map(|s| {
            if !is_host_port(&s.address.value) {
                problems.add(
                    s.address.referenced,
                    format!("statsd address `{}` must be HOST:PORT", s.address.value),
                );
            }
            model::Statsd {
                address: s.address.value,
                prefix: s.prefix.unwrap_or_else(|| "causeway".into()),
                flush_interval: s.flush_interval.map_or(Duration::from_secs(1), |f| {
                    problems.positive(&f, "metrics.statsd.flush_interval")
                }),
            }
        }),
    };

    let mut identity_names: HashMap<String, Location> = HashMap::new();
    let identities: Vec<model::Identity> = raw
        .identities
        .into_iter()
        .map(|i| {
            check_name(&mut problems, &i.name, "identity", &mut identity_names);
            identity(&mut problems, i)
        })
        .collect();
    let mut authorizer_names: HashMap<String, Location> = HashMap::new();
    let authorizers: Vec<model::Authorizer> = raw
        .authorizers
        .into_iter()
        .map(|a| {
            check_name(&mut problems, &a.name, "authorizer", &mut authorizer_names);
            authorizer(&mut problems, a)
        })
        .collect();
    let mut names = Names {
        identities: identity_names,
        authorizers: authorizer_names,
        clusters: HashMap::new(),
        ssh_clusters: Default::default(),
    };
    let clusters: Vec<model::Cluster> = raw
        .clusters
        .into_iter()
        .map(|c| {
            check_name(&mut problems, &c.name, "cluster", &mut names.clusters);
            cluster(&mut problems, c, &names)
        })
        .collect();
    names.ssh_clusters = clusters
        .iter()
        .filter(|c| c.ssh.is_some())
        .map(|c| c.name.clone())
        .collect();

    if raw.listeners.value.is_empty() {
        problems.add(raw.listeners.referenced, "at least one listener is needed");
    }
    let mut listener_names = HashMap::new();
    let mut addresses: HashMap<SocketAddr, String> = HashMap::new();
    let listeners: Vec<model::Listener> = raw
        .listeners
        .value
        .into_iter()
        .map(|l| {
            check_name(&mut problems, &l.name, "listener", &mut listener_names);
            let at = l.address.referenced;
            let listener = listener(&mut problems, l, &names);
            if let Some(other) = addresses.insert(listener.address, listener.name.clone())
                && !listener.reuse_port
                && listener.address.port() != 0
            {
                problems.add(
                    at,
                    format!(
                        "listeners `{other}` and `{}` both bind {}",
                        listener.name, listener.address
                    ),
                );
            }
            listener
        })
        .collect();

    problems.into_result(|| model::Config {
        workers,
        max_connections,
        drain,
        admin,
        metrics,
        access_log,
        identities,
        authorizers,
        reload: model::Reload {
            watch: raw.reload.watch.unwrap_or(false),
            removed_cluster_connections: match raw.reload.removed_cluster_connections {
                None | Some(raw::RemovedConnections::Keep) => model::RemovedConnections::Keep,
                Some(raw::RemovedConnections::Close) => model::RemovedConnections::Close,
            },
        },
        listeners,
        clusters,
    })
}

pub const DEFAULT_ADMIN_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);

/// On by default, on loopback; reachable from the network only when the config says so.
fn admin(problems: &mut Problems, raw: Option<raw::Admin>) -> Option<model::Admin> {
    let Some(raw) = raw else {
        return Some(model::Admin {
            address: DEFAULT_ADMIN_ADDRESS,
        });
    };
    if raw.enabled == Some(false) {
        return None;
    }
    let address = match &raw.address {
        None => DEFAULT_ADMIN_ADDRESS,
        Some(a) => match a.value.parse::<SocketAddr>() {
            Ok(address) => {
                if !address.ip().is_loopback() && raw.allow_non_loopback != Some(true) {
                    problems.add(
                        a.referenced,
                        format!(
                            "the admin API on {address} would be reachable from the network: bind it to 127.0.0.1 or [::1], or set admin.allow_non_loopback: true"
                        ),
                    );
                }
                address
            }
            Err(_) => {
                problems.add(
                    a.referenced,
                    format!("admin address `{}` must be IP:PORT", a.value),
                );
                DEFAULT_ADMIN_ADDRESS
            }
        },
    };
    Some(model::Admin { address })
}

fn drain(problems: &mut Problems, raw: &raw::Drain) -> model::Drain {
    let get = |d: &Option<Spanned<crate::duration::HumanDuration>>, default| {
        d.as_ref().map_or(default, |d| d.value.0)
    };
    let drain = model::Drain {
        timeout: get(&raw.timeout, DEFAULT_DRAIN_TIMEOUT),
        delay: get(&raw.delay, Duration::ZERO),
        spread: get(&raw.spread, Duration::ZERO),
    };
    if let Some(delay) = &raw.delay
        && drain.delay >= drain.timeout
    {
        problems.add(
            delay.referenced,
            "drain.delay must be shorter than drain.timeout",
        );
    }
    if let Some(spread) = &raw.spread
        && drain.spread > drain.timeout.saturating_sub(drain.delay)
    {
        problems.add(
            spread.referenced,
            "drain.spread must fit in the window after drain.delay (spread <= timeout - delay)",
        );
    }
    drain
}

/// Names appear in logs and metric labels: keep them short and plain, and unique.
fn check_name(
    problems: &mut Problems,
    name: &Spanned<String>,
    kind: &str,
    seen: &mut HashMap<String, Location>,
) {
    let n = &name.value;
    let plain = n
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if n.is_empty() || n.len() > 64 || !plain {
        problems.add(
            name.referenced,
            format!("{kind} name `{n}` must be 1-64 characters of A-Z a-z 0-9 - _ ."),
        );
    }
    if let Some(first) = seen.insert(n.clone(), name.referenced) {
        problems.add(
            name.referenced,
            format!(
                "{kind} `{n}` is defined twice (first at line {})",
                first.line()
            ),
        );
    }
}

fn socket_options(
    problems: &mut Problems,
    nodelay: Option<bool>,
    keepalive: Option<raw::Keepalive>,
) -> model::SocketOptions {
    let keepalive = match keepalive {
        None => Some(DEFAULT_KEEPALIVE),
        Some(k) if k.enabled == Some(false) => None,
        Some(k) => Some(model::Keepalive {
            time: k.time.map_or(DEFAULT_KEEPALIVE.time, |t| {
                problems.positive(&t, "tcp_keepalive.time")
            }),
            interval: k.interval.map_or(DEFAULT_KEEPALIVE.interval, |t| {
                problems.positive(&t, "tcp_keepalive.interval")
            }),
            retries: k.retries.map_or(DEFAULT_KEEPALIVE.retries, |r| {
                problems.at_least(&r, 1, "tcp_keepalive.retries")
            }),
        }),
    };
    model::SocketOptions {
        nodelay: nodelay.unwrap_or(true),
        keepalive,
    }
}

/// What references can point at.
struct Names {
    identities: HashMap<String, Location>,
    authorizers: HashMap<String, Location>,
    clusters: HashMap<String, Location>,
    /// Clusters that say how to verify their SSH host keys.
    ssh_clusters: std::collections::HashSet<String>,
}

impl Names {
    fn identity(&self, problems: &mut Problems, name: &Spanned<String>, what: &str) -> String {
        if !self.identities.contains_key(&name.value) {
            problems.add(
                name.referenced,
                format!(
                    "{what} names identity `{}`, which is not defined under `identities`",
                    name.value
                ),
            );
        }
        name.value.clone()
    }
}

pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_AUTHZ_TIMEOUT: Duration = Duration::from_millis(500);
pub const DEFAULT_CACHE_ENTRIES: usize = 100_000;

fn proxy_protocol_in(
    problems: &mut Problems,
    p: Spanned<raw::ProxyProtocolIn>,
) -> Option<model::ProxyProtocolIn> {
    let mode = match p.value.mode {
        raw::ProxyMode::Off => return None,
        raw::ProxyMode::Optional => model::ProxyMode::Optional,
        raw::ProxyMode::Required => model::ProxyMode::Required,
    };
    if p.value.trusted_sources.is_empty() {
        problems.add(
            p.referenced,
            "proxy_protocol needs trusted_sources: the load balancers' addresses (a header from anyone else is refused)",
        );
    }
    Some(model::ProxyProtocolIn {
        mode,
        trusted_sources: p
            .value
            .trusted_sources
            .into_iter()
            .map(|c| c.trunc())
            .collect(),
        timeout: p.value.timeout.map_or(DEFAULT_PROXY_TIMEOUT, |t| {
            problems.positive(&t, "proxy_protocol.timeout")
        }),
    })
}

fn proxy_protocol_out(
    problems: &mut Problems,
    p: Spanned<raw::ProxyProtocolOut>,
) -> model::ProxyProtocolOut {
    let version = p.value.version.value;
    if version != 1 && version != 2 {
        problems.add(
            p.value.version.referenced,
            "proxy_protocol.version is 1 or 2",
        );
    }
    if version == 1 && (!p.value.tlvs.is_empty() || !p.value.pass_tlvs.is_empty()) {
        problems.add(p.referenced, "TLVs need PROXY protocol version 2");
    }
    model::ProxyProtocolOut {
        version,
        tlvs: p
            .value
            .tlvs
            .into_iter()
            .map(|t| (t.kind, t.value))
            .collect(),
        pass_tlvs: p.value.pass_tlvs,
    }
}

fn authorizer(problems: &mut Problems, a: raw::Authorizer) -> model::Authorizer {
    if !is_host_port(&a.address.value) {
        problems.add(
            a.address.referenced,
            format!("authorizer address `{}` must be HOST:PORT", a.address.value),
        );
    }
    let cache = a.cache.map(|c| {
        let key = c
            .value
            .key
            .value
            .iter()
            .filter_map(|k| {
                let found = model::CacheKey::ALL.iter().find(|(n, _)| n == k);
                if found.is_none() {
                    let known: Vec<_> = model::CacheKey::ALL.iter().map(|(n, _)| *n).collect();
                    problems.add(
                        c.value.key.referenced,
                        format!("cache key `{k}`: use {}", known.join(", ")),
                    );
                }
                found.map(|(_, k)| *k)
            })
            .collect();
        model::DecisionCache {
            ttl: problems.positive(&c.value.ttl, "cache.ttl"),
            key,
            max_entries: c.value.max_entries.map_or(DEFAULT_CACHE_ENTRIES, |m| {
                problems.at_least(&m, 1, "cache.max_entries")
            }),
        }
    });
    model::Authorizer {
        name: a.name.value,
        address: a.address.value,
        timeout: a.timeout.map_or(DEFAULT_AUTHZ_TIMEOUT, |t| {
            problems.positive(&t, "authorizer timeout")
        }),
        failure_mode: match a.failure_mode {
            None | Some(raw::FailureMode::Deny) => model::FailureMode::Deny,
            Some(raw::FailureMode::Allow) => model::FailureMode::Allow,
        },
        include_peer_certificate: a.include_peer_certificate,
        include_fix_password: a.include_fix_password,
        cache,
    }
}

fn action(a: raw::RuleAction) -> model::RuleAction {
    match a {
        raw::RuleAction::Allow => model::RuleAction::Allow,
        raw::RuleAction::Deny => model::RuleAction::Deny,
    }
}

fn authorization(
    problems: &mut Problems,
    a: Spanned<raw::Authorization>,
    names: &Names,
) -> model::Authorization {
    let at = a.referenced;
    let a = a.value;
    if let Some(name) = &a.ext_authz
        && !names.authorizers.contains_key(&name.value)
    {
        problems.add(
            name.referenced,
            format!(
                "ext_authz names authorizer `{}`, which is not defined under `authorizers`",
                name.value
            ),
        );
    }
    if a.default.is_some() && a.ext_authz.is_some() {
        problems.add(
            at,
            "`default` is for rules alone: with ext_authz, the authorizer decides what no rule matched",
        );
    }
    let rules = a
        .rules
        .into_iter()
        .map(|r| {
            let r = r.value;
            let peers = raw::AllowedPeers {
                spiffe_ids: r.spiffe_ids,
                trust_domains: r.trust_domains,
                spiffe_id_prefixes: r.spiffe_id_prefixes,
            };
            let any_peer = !(peers.spiffe_ids.is_empty()
                && peers.trust_domains.is_empty()
                && peers.spiffe_id_prefixes.is_empty());
            model::Rule {
                action: action(r.action),
                source_cidrs: r.source_cidrs.into_iter().map(|c| c.trunc()).collect(),
                peers: any_peer.then(|| allowed_peers(problems, peers)),
                sni: r.sni.iter().map(|n| sni_pattern(problems, n)).collect(),
                fix: r.fix.map(|f| f.value),
                mq: r.mq.map(|m| m.value),
                ssh: r.ssh.map(|m| m.value),
            }
        })
        .collect();
    let dynamic_targets = a.dynamic_targets.map(|d| model::DynamicTargets {
        cidrs: d.value.cidrs.into_iter().map(|c| c.trunc()).collect(),
        ports: port_ranges(problems, &d.value.ports),
    });
    model::Authorization {
        rules,
        ext_authz: a.ext_authz.map(|n| n.value),
        default: a.default.map_or(model::RuleAction::Allow, action),
        reauthorize_every: a
            .reauthorize_every
            .map(|d| problems.positive(&d, "reauthorize_every")),
        dynamic_targets,
    }
}

fn port_ranges(problems: &mut Problems, ports: &[Spanned<String>]) -> Vec<(u16, u16)> {
    ports
        .iter()
        .map(|p| {
            port_range(&p.value).unwrap_or_else(|| {
                problems.add(
                    p.referenced,
                    format!("port range `{}`: write 10001 or 10001-10004", p.value),
                );
                (0, 0)
            })
        })
        .collect()
}

fn template(problems: &mut Problems, text: &Spanned<String>) -> model::Template {
    let template = model::Template(text.value.clone());
    for name in template.unknown() {
        problems.add(
            text.referenced,
            format!(
                "`{{{name}}}` is not a known placeholder: use {}",
                model::Template::PLACEHOLDERS
                    .map(|p| format!("{{{p}}}"))
                    .join(", ")
            ),
        );
    }
    template
}

pub const DEFAULT_TUNNEL_CONNECTIONS: usize = 4;
pub const DEFAULT_TUNNEL_STREAMS: u32 = 100;
pub const DEFAULT_TUNNEL_WINDOW: u32 = 4 * 1024 * 1024;

fn tunnel(problems: &mut Problems, t: Spanned<raw::Tunnel>) -> model::Tunnel {
    let at = t.referenced;
    let t = t.value;
    if t.use_post && t.protocol == Some(raw::TunnelProtocol::Http1) {
        problems.add(
            at,
            "tunnel.use_post needs protocol: http2 (a POST tunnel streams both bodies at once)",
        );
    }
    model::Tunnel {
        protocol: match t.protocol {
            None | Some(raw::TunnelProtocol::Http2) => model::TunnelProtocol::Http2,
            Some(raw::TunnelProtocol::Http1) => model::TunnelProtocol::Http1,
        },
        authority: template(problems, &t.authority),
        headers: t
            .headers
            .iter()
            .map(|h| {
                let valid = !h.value.name.is_empty()
                    && h.value
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !valid {
                    problems.add(h.referenced, format!("header name `{}`", h.value.name));
                }
                let value = Spanned {
                    value: h.value.value.clone(),
                    referenced: h.referenced,
                    defined: h.defined,
                };
                (
                    h.value.name.to_ascii_lowercase(),
                    template(problems, &value),
                )
            })
            .collect(),
        use_post: t.use_post,
        path: t.path.map_or_else(|| "/".to_string(), |p| p.value),
        max_connections: t.max_connections.map_or(DEFAULT_TUNNEL_CONNECTIONS, |m| {
            problems.at_least(&m, 1, "tunnel.max_connections")
        }),
        max_concurrent_streams: t
            .max_concurrent_streams
            .map_or(DEFAULT_TUNNEL_STREAMS, |m| {
                problems.at_least(&m, 1, "tunnel.max_concurrent_streams")
            }),
        window: t.window.map_or(DEFAULT_TUNNEL_WINDOW, |w| {
            problems.at_least(&w, 65535, "tunnel.window")
        }),
        keepalive: t
            .keepalive
            .map(|k| problems.positive(&k, "tunnel.keepalive")),
    }
}

fn connect_terminator(
    problems: &mut Problems,
    c: Spanned<raw::ConnectTerminator>,
) -> model::ConnectTerminator {
    let at = c.referenced;
    let c = c.value;
    let addresses = !c.allowed_cidrs.is_empty() || !c.allowed_names.is_empty();
    if addresses && c.allowed_ports.is_empty() {
        problems.add(
            at,
            "connect needs allowed_ports with allowed_cidrs or allowed_names: a terminator is never an open proxy",
        );
    }
    model::ConnectTerminator {
        allowed_cidrs: c.allowed_cidrs.into_iter().map(|n| n.trunc()).collect(),
        allowed_ports: port_ranges(problems, &c.allowed_ports),
        allowed_names: c
            .allowed_names
            .iter()
            .map(|n| sni_pattern(problems, n))
            .collect(),
        client_address_header: c.client_address_header.map(|h| h.to_ascii_lowercase()),
        accept_post: c.accept_post,
    }
}

fn port_range(text: &str) -> Option<(u16, u16)> {
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let (lo, hi) = (
        lo.trim().parse::<u16>().ok()?,
        hi.trim().parse::<u16>().ok()?,
    );
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

/// A host name or `*.` and a domain, lower-cased.
fn sni_pattern(problems: &mut Problems, name: &Spanned<String>) -> String {
    let pattern = name.value.strip_prefix("*.").unwrap_or(&name.value);
    if pattern.is_empty()
        || !pattern
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        problems.add(
            name.referenced,
            format!(
                "sni `{}` must be a host name, or `*.` and a domain",
                name.value
            ),
        );
    }
    name.value.to_ascii_lowercase()
}

fn identity(problems: &mut Problems, i: raw::Identity) -> model::Identity {
    let at = i.name.referenced;
    let path = |p: Option<Spanned<String>>| p.map(|p| std::path::PathBuf::from(p.value));
    let files = i.cert.is_some() || i.key.is_some() || i.bundle.is_some();
    let source = match i.spire {
        Some(spire) => {
            if files {
                problems.add(
                    spire.referenced,
                    "an identity comes either from files (cert, key, bundle) or from spire, not both",
                );
            }
            let socket = spire.value.socket.value.as_str();
            let socket = socket.strip_prefix("unix://").unwrap_or(socket);
            if !socket.starts_with('/') {
                problems.add(
                    spire.value.socket.referenced,
                    "spire.socket must be an absolute path to the agent's socket, such as unix:///run/spire/agent.sock",
                );
            }
            if let Some(id) = &spire.value.spiffe_id {
                check_spiffe_id(problems, id);
            }
            model::IdentitySource::Spire {
                socket: socket.into(),
                spiffe_id: spire.value.spiffe_id.map(|s| s.value),
            }
        }
        None => {
            if !files {
                problems.add(
                    at,
                    "an identity needs cert and key (what it presents), bundle (whom it trusts), or spire",
                );
            }
            if i.cert.is_some() != i.key.is_some() {
                problems.add(at, "cert and key go together: give both or neither");
            }
            model::IdentitySource::Files {
                cert: path(i.cert),
                key: path(i.key),
                bundle: path(i.bundle),
            }
        }
    };
    model::Identity {
        name: i.name.value,
        source,
    }
}

fn check_spiffe_id(problems: &mut Problems, id: &Spanned<String>) {
    let ok = id
        .value
        .strip_prefix("spiffe://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'));
    if !ok {
        problems.add(
            id.referenced,
            format!(
                "`{}` is not a SPIFFE ID: write spiffe://TRUST-DOMAIN/PATH",
                id.value
            ),
        );
    }
}

fn tls_version(problems: &mut Problems, v: Option<Spanned<String>>) -> model::TlsVersion {
    match v.as_ref().map(|v| v.value.as_str()) {
        None | Some("1.2") => model::TlsVersion::Tls12,
        Some("1.3") => model::TlsVersion::Tls13,
        Some(other) => {
            problems.add(
                v.as_ref().unwrap().referenced,
                format!("min_version `{other}`: write \"1.2\" or \"1.3\""),
            );
            model::TlsVersion::Tls12
        }
    }
}

fn terminate(
    problems: &mut Problems,
    t: Spanned<raw::Terminate>,
    names: &Names,
) -> model::Terminate {
    let at = t.referenced;
    let t = t.value;
    if t.identities.value.is_empty() {
        problems.add(
            t.identities.referenced,
            "terminate.identities needs at least one identity to present",
        );
    }
    let identities = t
        .identities
        .value
        .iter()
        .map(|i| names.identity(problems, i, "terminate.identities"))
        .collect();
    let client_certificate = match t.client_certificate {
        None | Some(raw::ClientCertificate::None) => model::ClientCertificate::None,
        Some(raw::ClientCertificate::Optional) => model::ClientCertificate::Optional,
        Some(raw::ClientCertificate::Required) => model::ClientCertificate::Required,
    };
    let trust = t
        .trust
        .as_ref()
        .map(|n| names.identity(problems, n, "terminate.trust"));
    if client_certificate != model::ClientCertificate::None && trust.is_none() {
        problems.add(
            at,
            "verifying client certificates needs `trust`: the identity whose bundle they must chain to",
        );
    }
    let allowed_clients = t.allowed_clients.map(|a| {
        if client_certificate == model::ClientCertificate::None {
            problems.add(
                a.referenced,
                "allowed_clients needs client certificates: set client_certificate: required",
            );
        }
        allowed_peers(problems, a.value)
    });
    model::Terminate {
        identities,
        min_version: tls_version(problems, t.min_version),
        alpn: t.alpn,
        client_certificate,
        trust,
        allowed_clients,
        handshake_timeout: t.handshake_timeout.map_or(DEFAULT_HANDSHAKE_TIMEOUT, |d| {
            problems.positive(&d, "terminate.handshake_timeout")
        }),
    }
}

fn allowed_peers(problems: &mut Problems, a: raw::AllowedPeers) -> model::AllowedPeers {
    for id in a.spiffe_ids.iter().chain(&a.spiffe_id_prefixes) {
        check_spiffe_id(problems, id);
    }
    model::AllowedPeers {
        spiffe_ids: a.spiffe_ids.into_iter().map(|s| s.value).collect(),
        trust_domains: a.trust_domains,
        spiffe_id_prefixes: a.spiffe_id_prefixes.into_iter().map(|s| s.value).collect(),
    }
}

fn upstream_tls(
    problems: &mut Problems,
    t: Spanned<raw::UpstreamTls>,
    names: &Names,
) -> model::UpstreamTls {
    let at = t.referenced;
    let t = t.value;
    for name in t.server_name.iter().chain(&t.verify_dns_name) {
        if !is_host_name(&name.value) {
            problems.add(
                name.referenced,
                format!("`{}` is not a host name", name.value),
            );
        }
    }
    for id in &t.verify_spiffe_ids {
        check_spiffe_id(problems, id);
    }
    if t.server_name.is_none()
        && !t.forward_sni
        && t.verify_spiffe_ids.is_empty()
        && t.verify_dns_name.is_none()
    {
        problems.add(
            at,
            "say how the server is verified: server_name (its certificate must name it), verify_dns_name, verify_spiffe_ids, or forward_sni",
        );
    }
    model::UpstreamTls {
        server_name: t.server_name.map(|s| s.value.to_ascii_lowercase()),
        forward_sni: t.forward_sni,
        trust: names.identity(problems, &t.trust, "tls.trust"),
        verify_spiffe_ids: t.verify_spiffe_ids.into_iter().map(|s| s.value).collect(),
        verify_dns_name: t.verify_dns_name.map(|s| s.value.to_ascii_lowercase()),
        identity: t
            .identity
            .as_ref()
            .map(|i| names.identity(problems, i, "tls.identity")),
        alpn: t.alpn,
        min_version: tls_version(problems, t.min_version),
        handshake_timeout: t.handshake_timeout.map_or(DEFAULT_HANDSHAKE_TIMEOUT, |d| {
            problems.positive(&d, "tls.handshake_timeout")
        }),
    }
}

fn listener(problems: &mut Problems, l: raw::Listener, names: &Names) -> model::Listener {
    let address = l.address.value.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.add(
            l.address.referenced,
            format!(
                "listener address `{}` must be IP:PORT, such as 127.0.0.1:10000 or [::1]:10000",
                l.address.value
            ),
        );
        SocketAddr::from(([0, 0, 0, 0], 0))
    });
    let connection_limit = l
        .connection_limit
        .map(|c| problems.at_least(&c, 1, "connection_limit"));
    let max_connections_per_source = l
        .max_connections_per_source
        .map(|c| problems.at_least(&c, 1, "max_connections_per_source"));
    let accept_rate = l.accept_rate.map(|r| {
        let per_second = problems.at_least(&r.per_second, 1, "accept_rate.per_second");
        model::AcceptRate {
            per_second,
            burst: r.burst.map_or(per_second, |b| {
                problems.at_least(&b, 1, "accept_rate.burst")
            }),
        }
    });
    let backlog = l
        .backlog
        .map_or(DEFAULT_BACKLOG, |b| problems.at_least(&b, 1, "backlog"));
    let socket = socket_options(problems, l.tcp_nodelay, l.tcp_keepalive);
    let proxy_protocol = l
        .proxy_protocol
        .and_then(|p| proxy_protocol_in(problems, p));
    let protocol = l
        .protocol
        .as_ref()
        .map_or(crate::ListenerProtocol::Tcp, |p| p.value);
    let timeout = l
        .inspect
        .as_ref()
        .and_then(|i| i.timeout.as_ref())
        .map_or(DEFAULT_INSPECTION_TIMEOUT, |t| {
            problems.positive(t, "inspect.timeout")
        });
    let inspect_tls = l.inspect.as_ref().is_some_and(|i| i.tls);
    // MQ tells TLS from plaintext by looking; FIX reads its Logon under the same deadline.
    let inspect = match protocol {
        crate::ListenerProtocol::Mq => Some(model::Inspect { tls: true, timeout }),
        crate::ListenerProtocol::Fix => Some(model::Inspect {
            tls: inspect_tls,
            timeout,
        }),
        crate::ListenerProtocol::Tcp => {
            inspect_tls.then_some(model::Inspect { tls: true, timeout })
        }
        // SSH is terminated: nothing is peeked at.
        crate::ListenerProtocol::Ssh => {
            if inspect_tls {
                problems.add(l.name.referenced, "an SSH listener cannot inspect TLS");
            }
            None
        }
    };
    let ssh = match (l.ssh, protocol) {
        (Some(s), crate::ListenerProtocol::Ssh) => Some(crate::ssh::listener(problems, s)),
        (Some(s), _) => {
            problems.add(s.referenced, "`ssh` settings need `protocol: ssh`");
            None
        }
        (None, crate::ListenerProtocol::Ssh) => {
            problems.add(
                l.name.referenced,
                "a `protocol: ssh` listener needs `ssh: { host_keys: [...] }`",
            );
            None
        }
        (None, _) => None,
    };
    let fix = match l.fix {
        None => crate::FixSettings::default(),
        Some(f) => {
            if protocol != crate::ListenerProtocol::Fix {
                problems.add(f.referenced, "`fix` settings need `protocol: fix`");
            }
            crate::FixSettings {
                max_logon_size: f
                    .value
                    .max_logon_size
                    .map_or(crate::DEFAULT_MAX_LOGON_SIZE, |m| {
                        problems.at_least(&m, 64, "fix.max_logon_size")
                    }),
                comp_id_metrics: f.value.comp_id_metrics,
            }
        }
    };

    if l.routes.value.is_empty() {
        problems.add(l.routes.referenced, "a listener needs at least one route");
    }
    let mut catch_all: Option<String> = None;
    let mut route_names = HashMap::new();
    let routes: Vec<model::Route> = l
        .routes
        .value
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = r.cluster.referenced;
            let r = route(problems, r, i, names, &mut route_names);
            match protocol {
                crate::ListenerProtocol::Ssh => {
                    crate::ssh::check_route(problems, at, &r, &names.ssh_clusters)
                }
                _ if r.ssh.is_some() => problems.add(
                    at,
                    format!(
                        "route `{}` has `ssh` settings but the listener is not `protocol: ssh`",
                        r.name
                    ),
                ),
                _ => {}
            }
            if let Some(first) = &catch_all {
                problems.add(
                    at,
                    format!(
                        "route `{}` can never match: route `{first}` before it matches every connection",
                        r.name
                    ),
                );
            } else if r.matcher.is_catch_all() {
                catch_all = Some(r.name.clone());
            }
            r
        })
        .collect();

    if inspect.is_none_or(|i| !i.tls)
        && let Some(r) = routes
            .iter()
            .find(|r: &&model::Route| r.matcher.needs_tls_inspection())
    {
        problems.add(
            l.name.referenced,
            format!(
                "route `{}` matches on TLS (sni, alpn or tls) but the listener does not look at it: add `inspect: {{ tls: true }}`",
                r.name
            ),
        );
    }
    for r in &routes {
        let needs = match (&r.matcher.fix, &r.matcher.mq, &r.matcher.ssh) {
            (Some(_), _, _) if protocol != crate::ListenerProtocol::Fix => Some("fix"),
            (_, Some(_), _) if protocol != crate::ListenerProtocol::Mq => Some("mq"),
            (_, _, Some(_)) if protocol != crate::ListenerProtocol::Ssh => Some("ssh"),
            _ => None,
        };
        if let Some(needed) = needs {
            problems.add(
                l.name.referenced,
                format!(
                    "route `{}` matches on {needed} but the listener does not read it: add `protocol: {needed}`",
                    r.name
                ),
            );
        }
    }
    model::Listener {
        name: l.name.value,
        address,
        protocol,
        fix,
        ssh,
        connection_limit,
        max_connections_per_source,
        accept_rate,
        reuse_port: l.reuse_port,
        backlog,
        socket,
        inspect,
        proxy_protocol,
        routes,
    }
}

fn route(
    problems: &mut Problems,
    r: raw::Route,
    index: usize,
    defined: &Names,
    names: &mut HashMap<String, Location>,
) -> model::Route {
    let name = match &r.name {
        Some(n) => {
            check_name(problems, n, "route", names);
            n.value.clone()
        }
        None => format!("route-{index}"),
    };
    if !defined.clusters.contains_key(&r.cluster.value) {
        problems.add(
            r.cluster.referenced,
            format!(
                "route `{name}` names cluster `{}`, which is not defined",
                r.cluster.value
            ),
        );
    }
    let matcher = r.matcher.map_or_else(model::RouteMatch::default, |m| {
        if m.value.destination_ports.contains(&0) {
            problems.add(m.referenced, "destination_ports: port 0 never matches");
        }
        let sni = m
            .value
            .sni
            .iter()
            .map(|name| sni_pattern(problems, name))
            .collect();
        let matcher = model::RouteMatch {
            destination_ports: m.value.destination_ports,
            source_cidrs: m
                .value
                .source_cidrs
                .into_iter()
                .map(|c| c.trunc())
                .collect(),
            sni,
            alpn: m.value.alpn,
            tls: m.value.tls,
            fix: m.value.fix.map(|f| f.value),
            mq: m.value.mq.map(|m| m.value),
            ssh: m.value.ssh.map(|m| m.value),
        };
        if matcher.tls == Some(false) && (!matcher.sni.is_empty() || !matcher.alpn.is_empty()) {
            problems.add(
                m.referenced,
                "a route for connections that are not TLS (tls: false) cannot match sni or alpn",
            );
        }
        matcher
    });
    model::Route {
        name,
        matcher,
        cluster: r.cluster.value,
        terminate: r.terminate.map(|t| terminate(problems, t, defined)),
        authorization: r.authorization.map(|a| authorization(problems, a, defined)),
        connect: r.connect.map(|c| connect_terminator(problems, c)),
        idle_timeout: r
            .idle_timeout
            .map(|d| problems.positive(&d, "idle_timeout")),
        max_duration: r
            .max_duration
            .map(|d| problems.positive(&d, "max_duration")),
        ssh: r.ssh.map(crate::ssh::route),
    }
}

fn cluster(problems: &mut Problems, c: raw::Cluster, names: &Names) -> model::Cluster {
    if c.endpoints.value.is_empty() {
        problems.add(
            c.endpoints.referenced,
            "a cluster needs at least one endpoint",
        );
    }
    let endpoints = c
        .endpoints
        .value
        .into_iter()
        .map(|e| {
            if !is_host_port(&e.address.value) {
                problems.add(
                    e.address.referenced,
                    format!(
                        "endpoint address `{}` must be HOST:PORT, such as 10.0.0.5:1414 or mq1.internal:1414",
                        e.address.value
                    ),
                );
            }
            model::Endpoint {
                address: e.address.value,
                priority: e.priority,
            }
        })
        .collect();
    let health_check = c.health_check.map(|h| {
        let interval = problems.positive(&h.interval, "health_check.interval");
        model::HealthCheck {
            interval,
            timeout: h.timeout.map_or(DEFAULT_HEALTH_TIMEOUT.min(interval), |t| {
                problems.positive(&t, "health_check.timeout")
            }),
            healthy_threshold: h.healthy_threshold.map_or(DEFAULT_HEALTHY_THRESHOLD, |t| {
                problems.at_least(&t, 1, "healthy_threshold")
            }),
            unhealthy_threshold: h
                .unhealthy_threshold
                .map_or(DEFAULT_UNHEALTHY_THRESHOLD, |t| {
                    problems.at_least(&t, 1, "unhealthy_threshold")
                }),
            fix: h.fix.map(|f| {
                let fix = f.value;
                let printable = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic());
                if !printable(&fix.sender_comp_id) || !printable(&fix.target_comp_id) {
                    problems.add(
                        f.referenced,
                        "health_check.fix: CompIDs must be printable ASCII, not empty",
                    );
                }
                if !protocols::fix::BEGIN_STRINGS.contains(&fix.begin_string.as_str()) {
                    problems.add(
                        f.referenced,
                        format!(
                            "health_check.fix.begin_string `{}`: use one of {}",
                            fix.begin_string,
                            protocols::fix::BEGIN_STRINGS.join(", ")
                        ),
                    );
                }
                fix
            }),
        }
    });
    let passive_ejection = match c.passive_ejection {
        None => Some(DEFAULT_EJECTION),
        Some(p) => {
            let failures = p
                .consecutive_failures
                .map_or(DEFAULT_EJECTION.consecutive_failures, |f| f.value);
            (failures > 0).then(|| model::PassiveEjection {
                consecutive_failures: failures,
                duration: p.duration.map_or(DEFAULT_EJECTION.duration, |d| {
                    problems.positive(&d, "passive_ejection.duration")
                }),
            })
        }
    };
    model::Cluster {
        name: c.name.value,
        endpoints,
        load_balancing: match c.load_balancing {
            None | Some(raw::LoadBalancing::RoundRobin) => model::LoadBalancing::RoundRobin,
            Some(raw::LoadBalancing::LeastConnections) => model::LoadBalancing::LeastConnections,
            Some(raw::LoadBalancing::Random) => model::LoadBalancing::Random,
        },
        connect_timeout: c.connect_timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |t| {
            problems.positive(&t, "connect_timeout")
        }),
        connect_attempts: c.connect_attempts.map_or(DEFAULT_CONNECT_ATTEMPTS, |a| {
            problems.at_least(&a, 1, "connect_attempts")
        }),
        health_check,
        passive_ejection,
        failback: match c.failback {
            None | Some(raw::Failback::Leave) => model::Failback::Leave,
            Some(raw::Failback::Close) => model::Failback::Close,
        },
        socket: socket_options(problems, c.tcp_nodelay, c.tcp_keepalive),
        tls: c.tls.map(|t| upstream_tls(problems, t, names)),
        proxy_protocol: c.proxy_protocol.map(|p| proxy_protocol_out(problems, p)),
        tunnel: c.tunnel.map(|t| tunnel(problems, t)),
        ssh: c.ssh.map(|h| crate::ssh::host_keys(problems, h)),
    }
}

fn is_host_port(address: &str) -> bool {
    if address.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    is_host_name(host) && port.parse::<u16>().is_ok_and(|p| p != 0)
}

fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}
