//! Names: those the configuration gives its own objects (plain, unique, and referenced only
//! where defined), and host names as written in addresses and SNI patterns.

use crate::problems::Problems;
use serde_saphyr::{Location, Spanned};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

/// What references can point at.
#[derive(Default)]
pub(super) struct Names {
    pub identities: HashMap<String, Location>,
    pub authorizers: HashMap<String, Location>,
    pub clusters: HashMap<String, Location>,
    /// Clusters that say how to verify their SSH host keys.
    pub ssh_clusters: HashSet<String>,
}

impl Names {
    pub fn identity(&self, problems: &mut Problems, name: &Spanned<String>, what: &str) -> String {
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

/// Names appear in logs and metric labels: keep them short and plain, and unique.
pub(super) fn check_name(
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

/// A host name or `*.` and a domain, lower-cased.
pub(super) fn sni_pattern(problems: &mut Problems, name: &Spanned<String>) -> String {
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

pub(super) fn is_host_port(address: &str) -> bool {
    if address.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    is_host_name(host) && port.parse::<u16>().is_ok_and(|p| p != 0)
}

pub(super) fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}
