//! Listeners: the address they bind, the limits on what they accept, what they read from
//! the client before routing (TLS inspection, the FIX, MQ or SSH protocol, a PROXY header),
//! and their routes.

use super::names::{Names, check_name};
use super::routes;
use super::values::socket_options;
use crate::problems::Problems;
use crate::{ListenerProtocol, model, raw};
use serde_saphyr::{Location, Spanned};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_BACKLOG: u32 = 1024;
/// Live connections one listener takes unless it says otherwise: one flooded listener
/// cannot take every place of the gateway.
pub const DEFAULT_CONNECTION_LIMIT: usize = 10_000;
pub const DEFAULT_INSPECTION_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every listener; at least one, and no two binding the same address (unless they share it
/// with SO_REUSEPORT, or let the system pick a port).
pub(super) fn listeners(
    problems: &mut Problems,
    raw: Spanned<Vec<raw::Listener>>,
    names: &Names,
) -> Vec<model::Listener> {
    if raw.value.is_empty() {
        problems.add(raw.referenced, "at least one listener is needed");
    }
    let mut listener_names = HashMap::new();
    let mut addresses: HashMap<SocketAddr, String> = HashMap::new();
    raw.value
        .into_iter()
        .map(|l| {
            check_name(problems, &l.name, "listener", &mut listener_names);
            let at = l.address.referenced;
            let listener = listener(problems, l, names);
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
        .collect()
}

fn listener(problems: &mut Problems, l: raw::Listener, names: &Names) -> model::Listener {
    let address = address(problems, &l.address);
    let connection_limit = Some(l.connection_limit.map_or(DEFAULT_CONNECTION_LIMIT, |c| {
        problems.at_least(&c, 1, "connection_limit")
    }));
    let max_connections_per_source = l
        .max_connections_per_source
        .map(|c| problems.at_least(&c, 1, "max_connections_per_source"));
    let accept_rate = l.accept_rate.map(|r| accept_rate(problems, r));
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
        .map_or(ListenerProtocol::Tcp, |p| p.value);
    let inspect = inspect(problems, l.inspect.as_ref(), protocol, l.name.referenced);
    let ssh = ssh(problems, l.ssh, protocol, l.name.referenced);
    let fix = fix(problems, l.fix, protocol);
    let routes = routes::routes(problems, l.routes, protocol, names);
    routes::check_listener_reads(problems, l.name.referenced, inspect, protocol, &routes);
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

fn address(problems: &mut Problems, address: &Spanned<String>) -> SocketAddr {
    address.value.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.add(
            address.referenced,
            format!(
                "listener address `{}` must be IP:PORT, such as 127.0.0.1:10000 or [::1]:10000",
                address.value
            ),
        );
        SocketAddr::from(([0, 0, 0, 0], 0))
    })
}

fn accept_rate(problems: &mut Problems, r: raw::AcceptRate) -> model::AcceptRate {
    let per_second = problems.at_least(&r.per_second, 1, "accept_rate.per_second");
    model::AcceptRate {
        per_second,
        burst: r.burst.map_or(per_second, |b| {
            problems.at_least(&b, 1, "accept_rate.burst")
        }),
    }
}

/// What is read before routing, by protocol: `name` is where problems with it are reported.
fn inspect(
    problems: &mut Problems,
    raw: Option<&raw::Inspect>,
    protocol: ListenerProtocol,
    name: Location,
) -> Option<model::Inspect> {
    let timeout = raw
        .and_then(|i| i.timeout.as_ref())
        .map_or(DEFAULT_INSPECTION_TIMEOUT, |t| {
            problems.positive(t, "inspect.timeout")
        });
    let inspect_tls = raw.is_some_and(|i| i.tls);
    // MQ tells TLS from plaintext by looking; FIX reads its Logon under the same deadline.
    match protocol {
        ListenerProtocol::Mq => Some(model::Inspect { tls: true, timeout }),
        ListenerProtocol::Fix => Some(model::Inspect {
            tls: inspect_tls,
            timeout,
        }),
        ListenerProtocol::Tcp => inspect_tls.then_some(model::Inspect { tls: true, timeout }),
        // SSH is terminated: nothing is peeked at.
        ListenerProtocol::Ssh => {
            if inspect_tls {
                problems.add(name, "an SSH listener cannot inspect TLS");
            }
            None
        }
    }
}

/// The SSH server's settings: needed by `protocol: ssh`, and only there.
fn ssh(
    problems: &mut Problems,
    raw: Option<Spanned<crate::ssh::raw::SshListener>>,
    protocol: ListenerProtocol,
    name: Location,
) -> Option<crate::SshListener> {
    match (raw, protocol) {
        (Some(s), ListenerProtocol::Ssh) => Some(super::ssh::listener(problems, s)),
        (Some(s), _) => {
            problems.add(s.referenced, "`ssh` settings need `protocol: ssh`");
            None
        }
        (None, ListenerProtocol::Ssh) => {
            problems.add(
                name,
                "a `protocol: ssh` listener needs `ssh: { host_keys: [...] }`",
            );
            None
        }
        (None, _) => None,
    }
}

fn fix(
    problems: &mut Problems,
    raw: Option<Spanned<raw::Fix>>,
    protocol: ListenerProtocol,
) -> crate::FixSettings {
    let Some(f) = raw else {
        return crate::FixSettings::default();
    };
    if protocol != ListenerProtocol::Fix {
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
