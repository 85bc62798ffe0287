//! SSH listeners (`protocol: ssh`): the gateway is the SSH server to the client, routes by
//! the user, and is an SSH client to the upstream with credentials it holds. Key files are
//! read when the gateway starts (and on reload), not here: this is what was written.

use crate::duration::HumanDuration;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_SSH_AUTH_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SSH_MAX_AUTH_ATTEMPTS: u32 = 6;

/// An SSH listener's server side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SshListener {
    /// OpenSSH private key files (ed25519, RSA, ECDSA); re-read on reload.
    pub host_keys: Vec<PathBuf>,
    /// Shown to the client before it authenticates.
    pub banner: Option<String>,
    /// The client must have authenticated this long after connecting.
    #[serde(serialize_with = "crate::model::as_text")]
    pub auth_timeout: Duration,
    pub max_auth_attempts: u32,
    /// Also offer SHA-1 and finite-field algorithms for old clients.
    pub legacy_algorithms: bool,
    /// Splits a login name `user<sep>target` (e.g. `alice@sftp-a`); none: no targets.
    pub target_separator: Option<String>,
    /// Offer keyboard-interactive (a password prompt) besides password and publickey.
    pub keyboard_interactive: bool,
    /// Users the gateway authenticates itself; others only through an authorizer.
    pub users: Vec<SshUser>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SshUser {
    pub name: String,
    /// An `authorized_keys`-format file.
    pub authorized_keys: Option<PathBuf>,
    /// An argon2 (`$argon2id$…`) or bcrypt (`$2b$…`) hash; never the password. Never shown
    /// either (`GET /config`): a hash can be cracked offline.
    #[serde(skip_serializing)]
    pub password_hash: Option<String>,
}

/// How a route's sessions reach the upstream SSH server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SshRoute {
    /// The user on the upstream server; default: the client's user (without the target).
    pub upstream_user: Option<String>,
    /// The gateway's private key for the upstream (OpenSSH format).
    pub private_key: Option<PathBuf>,
    /// A file holding the upstream password (first line).
    pub password_file: Option<PathBuf>,
    pub allow: SshAllow,
    /// One JSON line per SFTP file operation.
    pub audit_log: Option<PathBuf>,
}

/// What a route lets a client do beyond the `sftp` subsystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshAllow {
    #[serde(default = "yes")]
    pub sftp: bool,
    /// `exec` requests (scp, remote commands).
    #[serde(default)]
    pub exec: bool,
    /// Interactive shells (and their pty requests).
    #[serde(default)]
    pub shell: bool,
    /// `direct-tcpip` channels (`ssh -L`).
    #[serde(default)]
    pub port_forwarding: bool,
}

impl Default for SshAllow {
    fn default() -> Self {
        SshAllow {
            sftp: true,
            exec: false,
            shell: false,
            port_forwarding: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// How the gateway recognises an upstream SSH server: at least one of these must be given.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SshHostKeys {
    /// An OpenSSH `known_hosts` file, looked up by the endpoint's host and port.
    pub known_hosts: Option<PathBuf>,
    /// Public key files (`*.pub`).
    pub host_keys: Vec<PathBuf>,
    /// `SHA256:…` fingerprints, as `ssh-keygen -lf` prints them.
    pub host_key_fingerprints: Vec<String>,
}

/// Conditions on the SSH login; each list, when not empty, must have a pattern matching.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SshMatch {
    #[serde(default)]
    pub user: Vec<String>,
    /// The target of a `user<sep>target` login.
    #[serde(default)]
    pub target: Vec<String>,
}

impl SshMatch {
    pub fn matches(&self, user: &str, target: Option<&str>) -> bool {
        let any = |patterns: &[String], value: Option<&str>| {
            patterns.is_empty()
                || value.is_some_and(|v| patterns.iter().any(|p| crate::glob_matches(p, v)))
        };
        any(&self.user, Some(user)) && any(&self.target, target)
    }
}

pub(crate) mod raw {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SshListener {
        pub host_keys: Spanned<Vec<Spanned<String>>>,
        pub banner: Option<String>,
        pub auth_timeout: Option<Spanned<HumanDuration>>,
        pub max_auth_attempts: Option<Spanned<u32>>,
        #[serde(default)]
        pub legacy_algorithms: bool,
        pub target_separator: Option<Spanned<String>>,
        #[serde(default)]
        pub keyboard_interactive: bool,
        #[serde(default)]
        pub users: Vec<Spanned<SshUser>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SshUser {
        pub name: Spanned<String>,
        pub authorized_keys: Option<String>,
        pub password_hash: Option<Spanned<String>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SshRoute {
        pub upstream_user: Option<String>,
        pub private_key: Option<String>,
        pub password_file: Option<String>,
        #[serde(default)]
        pub allow: SshAllow,
        pub audit_log: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SshHostKeys {
        pub known_hosts: Option<String>,
        #[serde(default)]
        pub host_keys: Vec<String>,
        #[serde(default)]
        pub host_key_fingerprints: Vec<Spanned<String>>,
    }
}

/// Whether a password hash is one the gateway can check (argon2 or bcrypt, PHC/modular form).
pub fn is_supported_password_hash(hash: &str) -> bool {
    [
        "$argon2id$",
        "$argon2i$",
        "$argon2d$",
        "$2a$",
        "$2b$",
        "$2y$",
    ]
    .iter()
    .any(|p| hash.starts_with(p))
}

pub(crate) fn listener(
    problems: &mut crate::problems::Problems,
    s: Spanned<raw::SshListener>,
) -> SshListener {
    let s = s.value;
    if s.host_keys.value.is_empty() {
        problems.add(
            s.host_keys.referenced,
            "ssh.host_keys: at least one key file",
        );
    }
    let mut names = std::collections::HashSet::new();
    let users = s
        .users
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
        .collect();
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
        legacy_algorithms: s.legacy_algorithms,
        target_separator: s.target_separator.map(|s| s.value),
        keyboard_interactive: s.keyboard_interactive,
        users,
    }
}

pub(crate) fn route(r: Spanned<raw::SshRoute>) -> SshRoute {
    let r = r.value;
    SshRoute {
        upstream_user: r.upstream_user,
        private_key: r.private_key.map(Into::into),
        password_file: r.password_file.map(Into::into),
        allow: r.allow,
        audit_log: r.audit_log.map(Into::into),
    }
}

pub(crate) fn host_keys(
    problems: &mut crate::problems::Problems,
    h: Spanned<raw::SshHostKeys>,
) -> SshHostKeys {
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
pub(crate) fn check_route(
    problems: &mut crate::problems::Problems,
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
