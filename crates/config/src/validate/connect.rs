//! A route's `connect` (terminating CONNECT tunnels): the destinations it allows, checked
//! to be finite — never an open proxy, never another route's clusters unless listed.

use super::names::{Names, sni_pattern};
use super::tls::check_spiffe_id;
use super::values::port_ranges;
use crate::problems::Problems;
use crate::{model, raw};
use serde_saphyr::Spanned;
use std::time::Duration;

/// HTTP/2 tunnels open at once on one terminator connection: bounded, yet room for the
/// long-lived tunnels of an edge's pooled connections (4 by default: 4 000 tunnels).
pub const DEFAULT_CONNECT_STREAMS: u32 = 1000;
/// A tunnel request's head (HTTP/2 header list, HTTP/1.1 head), bytes.
pub const DEFAULT_CONNECT_HEADER_SIZE: usize = 16 * 1024;
/// The least head HTTP/1.1 can be given (hyper's smallest read buffer).
const MIN_HEADER_SIZE: usize = 8 * 1024;
pub const DEFAULT_CONNECT_KEEPALIVE: Duration = Duration::from_secs(30);
pub const DEFAULT_CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

pub(super) fn terminator(
    problems: &mut Problems,
    c: Spanned<raw::ConnectTerminator>,
    defined: &Names,
    terminate: Option<&model::Terminate>,
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
    for cluster in &c.clusters {
        if !defined.clusters.contains_key(&cluster.value) {
            problems.add(
                cluster.referenced,
                format!(
                    "connect.clusters names cluster `{}`, which is not defined",
                    cluster.value
                ),
            );
        }
    }
    model::ConnectTerminator {
        clusters: c.clusters.into_iter().map(|c| c.value).collect(),
        allowed_cidrs: c.allowed_cidrs.into_iter().map(|n| n.trunc()).collect(),
        allowed_ports: port_ranges(problems, &c.allowed_ports),
        allowed_names: c
            .allowed_names
            .iter()
            .map(|n| sni_pattern(problems, n))
            .collect(),
        client_address_header: (c.client_address_header)
            .map(|h| client_address_header(problems, h, terminate)),
        accept_post: c.accept_post,
        max_concurrent_streams: (c.max_concurrent_streams).map_or(DEFAULT_CONNECT_STREAMS, |m| {
            problems.at_least(&m, 1, "connect.max_concurrent_streams")
        }),
        max_header_size: (c.max_header_size).map_or(DEFAULT_CONNECT_HEADER_SIZE, |m| {
            problems.at_least(&m, MIN_HEADER_SIZE, "connect.max_header_size")
        }),
        keepalive: (c.keepalive).map_or(DEFAULT_CONNECT_KEEPALIVE, |k| {
            problems.positive(&k, "connect.keepalive")
        }),
        connection_idle_timeout: (c.connection_idle_timeout)
            .map_or(DEFAULT_CONNECTION_IDLE_TIMEOUT, |t| {
                problems.positive(&t, "connect.connection_idle_timeout")
            }),
    }
}

/// The header is believed only from listed peers, and a peer is only known by a verified
/// client certificate: the route must require one.
fn client_address_header(
    problems: &mut Problems,
    h: Spanned<raw::ClientAddressHeader>,
    terminate: Option<&model::Terminate>,
) -> model::ClientAddressHeader {
    let at = h.referenced;
    let h = h.value;
    if h.trusted_peers.is_empty() {
        problems.add(
            at,
            "connect.client_address_header needs trusted_peers: the SPIFFE IDs whose header is believed",
        );
    }
    for peer in &h.trusted_peers {
        check_spiffe_id(problems, peer);
    }
    let required = model::ClientCertificate::Required;
    if terminate.is_none_or(|t| t.client_certificate != required) {
        problems.add(
            at,
            "connect.client_address_header needs client certificates: add `terminate: { client_certificate: required, ... }` to the route",
        );
    }
    model::ClientAddressHeader {
        name: h.name.to_ascii_lowercase(),
        trusted_peers: h.trusted_peers.into_iter().map(|p| p.value).collect(),
    }
}
