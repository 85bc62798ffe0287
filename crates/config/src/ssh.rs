//! SSH listeners (`protocol: ssh`): the gateway is the SSH server to the client, routes by
//! the user, and is an SSH client to the upstream with credentials it holds. Key files are
//! read when the gateway starts (and on reload), not here: this is what was written. Its
//! checks are in `validate::ssh`.

use crate::duration::HumanDuration;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_SSH_AUTH_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_SSH_MAX_AUTH_ATTEMPTS: u32 = 6;
pub const DEFAULT_SSH_MAX_UNAUTHENTICATED: u32 = 64;
pub const DEFAULT_SSH_MAX_UNAUTHENTICATED_PER_SOURCE: u32 = 32;
pub const DEFAULT_SSH_AUTHORIZER_LOGINS_PER_SECOND: u32 = 20;
/// An SSH route's `idle_timeout` when it sets none.
pub const DEFAULT_SSH_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

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
    /// Connections not yet authenticated, at most, on the listener (OpenSSH's
    /// `MaxStartups`); more are closed at once.
    pub max_unauthenticated: u32,
    /// ... and from one source address.
    pub max_unauthenticated_per_source: u32,
    /// Password hashes checked at once (argon2 takes ~19 MiB and a core's time each);
    /// none: one per core.
    pub max_concurrent_password_checks: Option<u32>,
    /// Logins the authorizer authenticates (users the gateway does not know), per second;
    /// over it a try is refused without asking.
    pub authorizer_logins_per_second: u32,
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
        pub max_unauthenticated: Option<Spanned<u32>>,
        pub max_unauthenticated_per_source: Option<Spanned<u32>>,
        pub max_concurrent_password_checks: Option<Spanned<u32>>,
        pub authorizer_logins_per_second: Option<Spanned<u32>>,
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
