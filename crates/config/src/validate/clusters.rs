//! Clusters: their endpoints, how they are chosen and checked, and how the gateway connects
//! to them (socket options, TLS, a PROXY header, a tunnel, SSH host keys).

use super::names::{Names, check_name, is_host_port};
use super::values::{socket_options, template};
use crate::problems::Problems;
use crate::{model, raw};
use serde_saphyr::Spanned;
use std::time::Duration;

pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_CONNECT_ATTEMPTS: u32 = 3;
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 2;
pub const DEFAULT_EJECTION: model::PassiveEjection = model::PassiveEjection {
    consecutive_failures: 5,
    duration: Duration::from_secs(30),
};
pub const DEFAULT_TUNNEL_CONNECTIONS: usize = 4;
pub const DEFAULT_TUNNEL_STREAMS: u32 = 100;
pub const DEFAULT_TUNNEL_WINDOW: u32 = 4 * 1024 * 1024;
/// Room for the terminator's own checks and dial (its connect attempts and TLS handshake).
pub const DEFAULT_TUNNEL_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Every cluster, its name recorded in `names` (and whether SSH routes may use it) for the
/// listeners' routes.
pub(super) fn clusters(
    problems: &mut Problems,
    raw: Vec<raw::Cluster>,
    names: &mut Names,
) -> Vec<model::Cluster> {
    let clusters: Vec<model::Cluster> = raw
        .into_iter()
        .map(|c| {
            check_name(problems, &c.name, "cluster", &mut names.clusters);
            cluster(problems, c, names)
        })
        .collect();
    names.ssh_clusters = clusters
        .iter()
        .filter(|c| c.ssh.is_some())
        .map(|c| c.name.clone())
        .collect();
    clusters
}

fn cluster(problems: &mut Problems, c: raw::Cluster, names: &Names) -> model::Cluster {
    let endpoints = endpoints(problems, c.endpoints);
    let health_check = c.health_check.map(|h| health_check(problems, h));
    let passive_ejection = passive_ejection(problems, c.passive_ejection);
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
        tls: c.tls.map(|t| super::tls::upstream_tls(problems, t, names)),
        proxy_protocol: c.proxy_protocol.map(|p| proxy_protocol_out(problems, p)),
        tunnel: c.tunnel.map(|t| tunnel(problems, t)),
        ssh: c.ssh.map(|h| super::ssh::host_keys(problems, h)),
    }
}

fn endpoints(
    problems: &mut Problems,
    endpoints: Spanned<Vec<raw::Endpoint>>,
) -> Vec<model::Endpoint> {
    if endpoints.value.is_empty() {
        problems.add(
            endpoints.referenced,
            "a cluster needs at least one endpoint",
        );
    }
    endpoints
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
        .collect()
}

fn health_check(problems: &mut Problems, h: raw::HealthCheck) -> model::HealthCheck {
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
        fix: h.fix.map(|f| fix_health_check(problems, f)),
    }
}

/// A FIX Logon as health check: the CompIDs and BeginString it sends.
fn fix_health_check(
    problems: &mut Problems,
    f: Spanned<crate::FixHealthCheck>,
) -> crate::FixHealthCheck {
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
}

/// On by default; `consecutive_failures: 0` turns it off.
fn passive_ejection(
    problems: &mut Problems,
    raw: Option<raw::PassiveEjection>,
) -> Option<model::PassiveEjection> {
    let Some(p) = raw else {
        return Some(DEFAULT_EJECTION);
    };
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
        answer_timeout: t.answer_timeout.map_or(DEFAULT_TUNNEL_ANSWER_TIMEOUT, |a| {
            problems.positive(&a, "tunnel.answer_timeout")
        }),
    }
}
