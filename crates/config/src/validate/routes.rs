//! Routes: what a connection must match, the cluster it goes to, and what happens on the way
//! (TLS terminated, authorization, CONNECT tunnels terminated, timeouts, SSH credentials).
//! Also what a listener's routes ask of it: a route can only match what the listener reads.

use super::authz::authorization;
use super::connect;
use super::names::{Names, check_name, sni_pattern};
use super::tls::terminate;
use crate::problems::Problems;
use crate::{ListenerProtocol, model, raw};
use serde_saphyr::{Location, Spanned};
use std::collections::HashMap;

/// A route's idle timeout unless it sets one (`0s`: none), as Envoy's TCP proxy.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// A listener's routes, in order: at least one, and none after a route that matches every
/// connection.
pub(super) fn routes(
    problems: &mut Problems,
    raw: Spanned<Vec<raw::Route>>,
    protocol: ListenerProtocol,
    names: &Names,
) -> Vec<model::Route> {
    if raw.value.is_empty() {
        problems.add(raw.referenced, "a listener needs at least one route");
    }
    let mut catch_all: Option<String> = None;
    let mut route_names = HashMap::new();
    raw.value
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let at = r.cluster.referenced;
            let mut r = route(problems, r, i, names, &mut route_names);
            check_ssh_settings(problems, at, &r, protocol, names);
            // Finite unless the route says `0s`: a silent peer does not hold two sockets
            // (an SSH session: an upstream session) forever.
            let default = match protocol {
                ListenerProtocol::Ssh => crate::ssh::DEFAULT_SSH_IDLE_TIMEOUT,
                _ => DEFAULT_IDLE_TIMEOUT,
            };
            r.idle_timeout = match r.idle_timeout {
                None => Some(default),
                Some(d) if d.is_zero() => None,
                set => set,
            };
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
        .collect()
}

/// SSH listeners' routes need SSH settings; other listeners' routes cannot have them.
fn check_ssh_settings(
    problems: &mut Problems,
    at: Location,
    r: &model::Route,
    protocol: ListenerProtocol,
    names: &Names,
) {
    match protocol {
        ListenerProtocol::Ssh => super::ssh::check_route(problems, at, r, &names.ssh_clusters),
        _ if r.ssh.is_some() => problems.add(
            at,
            format!(
                "route `{}` has `ssh` settings but the listener is not `protocol: ssh`",
                r.name
            ),
        ),
        _ => {}
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
    let matcher = r
        .matcher
        .map_or_else(model::RouteMatch::default, |m| route_match(problems, m));
    let terminate = r.terminate.map(|t| terminate(problems, t, defined));
    let connect =
        (r.connect).map(|c| connect::terminator(problems, c, defined, terminate.as_ref()));
    model::Route {
        name,
        matcher,
        cluster: r.cluster.value,
        terminate,
        authorization: r.authorization.map(|a| authorization(problems, a, defined)),
        connect,
        // `0s` kept as zero here: the listener's loop turns it into none, unset into the
        // default of its protocol.
        idle_timeout: r.idle_timeout.map(|d| d.value.0),
        max_duration: r
            .max_duration
            .map(|d| problems.positive(&d, "max_duration")),
        ssh: r.ssh.map(super::ssh::route),
    }
}

fn route_match(problems: &mut Problems, m: Spanned<raw::RouteMatch>) -> model::RouteMatch {
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
}

/// A route can only match on what its listener reads: the TLS ClientHello when it inspects
/// TLS, the FIX, MQ or SSH login when it speaks that protocol. `listener` is where the
/// problems are reported (the listener's name).
pub(super) fn check_listener_reads(
    problems: &mut Problems,
    listener: Location,
    inspect: Option<model::Inspect>,
    protocol: ListenerProtocol,
    routes: &[model::Route],
) {
    if inspect.is_none_or(|i| !i.tls)
        && let Some(r) = routes
            .iter()
            .find(|r: &&model::Route| r.matcher.needs_tls_inspection())
    {
        problems.add(
            listener,
            format!(
                "route `{}` matches on TLS (sni, alpn or tls) but the listener does not look at it: add `inspect: {{ tls: true }}`",
                r.name
            ),
        );
    }
    for r in routes {
        let needs = match (&r.matcher.fix, &r.matcher.mq, &r.matcher.ssh) {
            (Some(_), _, _) if protocol != ListenerProtocol::Fix => Some("fix"),
            (_, Some(_), _) if protocol != ListenerProtocol::Mq => Some("mq"),
            (_, _, Some(_)) if protocol != ListenerProtocol::Ssh => Some("ssh"),
            _ => None,
        };
        if let Some(needed) = needs {
            problems.add(
                listener,
                format!(
                    "route `{}` matches on {needed} but the listener does not read it: add `protocol: {needed}`",
                    r.name
                ),
            );
        }
    }
}
