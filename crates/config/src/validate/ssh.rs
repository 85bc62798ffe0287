//! SSH: the server side of `protocol: ssh` listeners (host keys, users), the credentials
//! their routes log in upstream with, and how clusters' host keys are verified.

use crate::problems::Problems;
use crate::ssh::{
    DEFAULT_SSH_AUTH_TIMEOUT, DEFAULT_SSH_AUTHORIZER_LOGINS_PER_SECOND,
    DEFAULT_SSH_MAX_AUTH_ATTEMPTS, DEFAULT_SSH_MAX_UNAUTHENTICATED,
    DEFAULT_SSH_MAX_UNAUTHENTICATED_PER_SOURCE, SshHostKeys, SshListener, SshRoute, SshUser,
    is_supported_password_hash, raw,
};
use serde_saphyr::Spanned;
use std::collections::HashSet;

pub(super) fn listener(problems: &mut Problems, s: Spanned<raw::SshListener>) -> SshListener {
    let s = s.value;
    if s.host_keys.value.is_empty() {
        problems.add(
            s.host_keys.referenced,
            "ssh.host_keys: at least one key file",
        );
    }
    let users = users(problems, s.users);
    if let Some(sep) = &s.target_separator
        && (sep.value.is_empty() || sep.value.chars().any(char::is_whitespace))
    {
        problems.add(
            sep.referenced,
            "target_separator must be a non-empty string without spaces",
        );
    }
    SshListener {
        host_keys: s
            .host_keys
            .value
            .into_iter()
            .map(|k| k.value.into())
            .collect(),
        banner: s.banner,
        auth_timeout: s.auth_timeout.map_or(DEFAULT_SSH_AUTH_TIMEOUT, |t| {
            problems.positive(&t, "ssh.auth_timeout")
        }),
        max_auth_attempts: s
            .max_auth_attempts
            .map_or(DEFAULT_SSH_MAX_AUTH_ATTEMPTS, |m| {
                problems.at_least(&m, 1, "ssh.max_auth_attempts")
            }),
        max_unauthenticated: s
            .max_unauthenticated
            .map_or(DEFAULT_SSH_MAX_UNAUTHENTICATED, |m| {
                problems.at_least(&m, 1, "ssh.max_unauthenticated")
            }),
        max_unauthenticated_per_source: s
            .max_unauthenticated_per_source
            .map_or(DEFAULT_SSH_MAX_UNAUTHENTICATED_PER_SOURCE, |m| {
                problems.at_least(&m, 1, "ssh.max_unauthenticated_per_source")
            }),
        max_concurrent_password_checks: s
            .max_concurrent_password_checks
            .map(|m| problems.at_least(&m, 1, "ssh.max_concurrent_password_checks")),
        authorizer_logins_per_second: s
            .authorizer_logins_per_second
            .map_or(DEFAULT_SSH_AUTHORIZER_LOGINS_PER_SECOND, |m| {
                problems.at_least(&m, 1, "ssh.authorizer_logins_per_second")
            }),
        legacy_algorithms: s.legacy_algorithms,
        target_separator: s.target_separator.map(|s| s.value),
        keyboard_interactive: s.keyboard_interactive,
        users,
    }
}

/// Users the gateway authenticates itself: each once, each with a way to log in.
fn users(problems: &mut Problems, users: Vec<Spanned<raw::SshUser>>) -> Vec<SshUser> {
    let mut names = HashSet::new();
    users
        .into_iter()
        .map(|u| {
            let (at, u) = (u.referenced, u.value);
            if !names.insert(u.name.value.clone()) {
                problems.add(u.name.referenced, format!("ssh user `{}` is listed twice", u.name.value));
            }
            if u.authorized_keys.is_none() && u.password_hash.is_none() {
                problems.add(
                    at,
                    format!(
                        "ssh user `{}` needs `authorized_keys` or `password_hash` (or leave it out and let the authorizer decide)",
                        u.name.value
                    ),
                );
            }
            if let Some(hash) = &u.password_hash
                && !is_supported_password_hash(&hash.value)
            {
                problems.add(
                    hash.referenced,
                    "password_hash must be an argon2 (`$argon2id$…`) or bcrypt (`$2b$…`) hash; passwords are never written in the config",
                );
            }
            SshUser {
                name: u.name.value,
                authorized_keys: u.authorized_keys.map(Into::into),
                password_hash: u.password_hash.map(|h| h.value),
            }
        })
        .collect()
}

pub(super) fn route(r: Spanned<raw::SshRoute>) -> SshRoute {
    let r = r.value;
    SshRoute {
        upstream_user: r.upstream_user,
        private_key: r.private_key.map(Into::into),
        password_file: r.password_file.map(Into::into),
        allow: r.allow,
        audit_log: r.audit_log.map(Into::into),
    }
}

pub(super) fn host_keys(problems: &mut Problems, h: Spanned<raw::SshHostKeys>) -> SshHostKeys {
    let (at, h) = (h.referenced, h.value);
    if h.known_hosts.is_none() && h.host_keys.is_empty() && h.host_key_fingerprints.is_empty() {
        problems.add(
            at,
            "ssh: give `known_hosts`, `host_keys` or `host_key_fingerprints`: upstream host keys are always verified",
        );
    }
    for f in &h.host_key_fingerprints {
        if !f.value.starts_with("SHA256:") {
            problems.add(
                f.referenced,
                "host key fingerprints are `SHA256:…`, as `ssh-keygen -lf KEY.pub` prints them",
            );
        }
    }
    SshHostKeys {
        known_hosts: h.known_hosts.map(Into::into),
        host_keys: h.host_keys.into_iter().map(Into::into).collect(),
        host_key_fingerprints: h
            .host_key_fingerprints
            .into_iter()
            .map(|f| f.value)
            .collect(),
    }
}

/// A route of an SSH listener: credentials for the upstream, a cluster whose host keys are
/// known, and nothing a byte-relaying route would have.
pub(super) fn check_route(
    problems: &mut Problems,
    at: serde_saphyr::Location,
    r: &crate::Route,
    ssh_clusters: &std::collections::HashSet<String>,
) {
    let name = &r.name;
    let mut problem = |message: String| problems.add(at, message);
    match &r.ssh {
        None => problem(format!(
            "route `{name}` of an SSH listener needs `ssh: {{ private_key: ... }}` (or `password_file`) for the upstream"
        )),
        Some(s) if s.private_key.is_none() && s.password_file.is_none() => problem(format!(
            "route `{name}`: ssh needs `private_key` or `password_file` to log in upstream"
        )),
        Some(s) if s.private_key.is_some() && s.password_file.is_some() => problem(format!(
            "route `{name}`: ssh takes `private_key` or `password_file`, not both"
        )),
        Some(_) => {}
    }
    if !ssh_clusters.contains(&r.cluster) {
        problem(format!(
            "route `{name}` sends SSH sessions to cluster `{}`, which does not say how to verify its host keys: add `ssh: {{ host_keys: [...] }}` (or `known_hosts`, `host_key_fingerprints`) to the cluster",
            r.cluster
        ));
    }
    if r.terminate.is_some() || r.connect.is_some() {
        problem(format!(
            "route `{name}`: an SSH listener terminates SSH itself; `terminate` and `connect` do not apply"
        ));
    }
}
