//! A route's `connect` (terminating CONNECT tunnels): the destinations it allows, checked
//! to be finite — never an open proxy, never another route's clusters unless listed.

use super::names::{Names, sni_pattern};
use super::values::port_ranges;
use crate::problems::Problems;
use crate::{model, raw};
use serde_saphyr::Spanned;

pub(super) fn terminator(
    problems: &mut Problems,
    c: Spanned<raw::ConnectTerminator>,
    defined: &Names,
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
        client_address_header: c.client_address_header.map(|h| h.to_ascii_lowercase()),
        accept_post: c.accept_post,
    }
}
