//! TLS: identities (certificate files or a SPIRE agent), terminating TLS on routes,
//! originating it to clusters, and the SPIFFE IDs peers are checked against.

use super::names::{Names, check_name, is_host_name};
use crate::problems::Problems;
use crate::{model, raw};
use serde_saphyr::Spanned;
use std::time::Duration;

pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Every identity, its name recorded in `names` for the references that follow.
pub(super) fn identities(
    problems: &mut Problems,
    raw: Vec<raw::Identity>,
    names: &mut Names,
) -> Vec<model::Identity> {
    raw.into_iter()
        .map(|i| {
            check_name(problems, &i.name, "identity", &mut names.identities);
            identity(problems, i)
        })
        .collect()
}

fn identity(problems: &mut Problems, i: raw::Identity) -> model::Identity {
    let at = i.name.referenced;
    let path = |p: Option<Spanned<String>>| p.map(|p| std::path::PathBuf::from(p.value));
    let files =
        i.cert.is_some() || i.key.is_some() || i.bundle.is_some() || !i.crl_files.is_empty();
    let source = match i.spire {
        Some(spire) => {
            if files {
                problems.add(
                    spire.referenced,
                    "an identity comes either from files (cert, key, bundle, crl_files) or from spire, not both",
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
            if let Some(first) = i.crl_files.first()
                && i.bundle.is_none()
            {
                problems.add(
                    first.referenced,
                    "crl_files revoke certificates the bundle verifies: give a bundle too",
                );
            }
            model::IdentitySource::Files {
                cert: path(i.cert),
                key: path(i.key),
                bundle: path(i.bundle),
                crl_files: i.crl_files.into_iter().map(|p| p.value.into()).collect(),
            }
        }
    };
    model::Identity {
        name: i.name.value,
        source,
    }
}

pub(super) fn check_spiffe_id(problems: &mut Problems, id: &Spanned<String>) {
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

pub(super) fn terminate(
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
        // With `optional`, a client without a certificate would pass the list unchecked.
        if client_certificate != model::ClientCertificate::Required {
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

pub(super) fn allowed_peers(problems: &mut Problems, a: raw::AllowedPeers) -> model::AllowedPeers {
    for id in a.spiffe_ids.iter().chain(&a.spiffe_id_prefixes) {
        check_spiffe_id(problems, id);
    }
    model::AllowedPeers {
        spiffe_ids: a.spiffe_ids.into_iter().map(|s| s.value).collect(),
        trust_domains: a.trust_domains,
        spiffe_id_prefixes: a.spiffe_id_prefixes.into_iter().map(|s| s.value).collect(),
    }
}

pub(super) fn upstream_tls(
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
