//! The SSH server side of an SSH listener: host keys, the users the gateway authenticates
//! itself, each route's upstream credential and audit log, the cluster host-key policies,
//! and russh's server configuration — loaded from files at start and on every reload.

use super::ssh_limits::{LoginRate, PasswordChecks, PreAuthStats};
use ssh::audit::AuditLog;
use ssh::credentials::{self, HostKeyPolicy, PasswordHash, UpstreamCredential};
use ssh::russh;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What an SSH listener loaded from its key files; rebuilt (files re-read) on reload.
#[derive(Debug)]
pub struct SshServer {
    pub settings: config::SshListener,
    pub(crate) config: Arc<russh::server::Config>,
    pub(crate) client: Arc<russh::client::Config>,
    pub(crate) users: HashMap<String, LocalUser>,
    /// By route name.
    pub(crate) routes: HashMap<String, RouteSsh>,
    /// By cluster name: every cluster that says how to verify its host keys (an authorizer
    /// may choose any of them).
    pub(crate) host_keys: HashMap<String, Arc<HostKeyPolicy>>,
    pub(crate) password_checks: PasswordChecks,
    /// Logins the authorizer authenticates, per second.
    pub(crate) authorizer_logins: LoginRate,
}

/// A user the gateway authenticates itself.
#[derive(Debug, Default)]
pub(crate) struct LocalUser {
    pub(crate) keys: Vec<russh::keys::PublicKey>,
    pub(crate) password: Option<PasswordHash>,
}

#[derive(Debug)]
pub(crate) struct RouteSsh {
    pub(crate) credential: UpstreamCredential,
    pub(crate) audit: Option<Arc<AuditLog>>,
}

impl SshServer {
    /// Reads every key file the listener names; the error names the file.
    pub fn load(
        listener: &config::Listener,
        clusters: &[config::Cluster],
    ) -> Result<SshServer, String> {
        let settings = listener
            .ssh
            .clone()
            .ok_or_else(|| "not an SSH listener".to_string())?;
        let keys = settings
            .host_keys
            .iter()
            .map(|path| {
                credentials::private_key(path, settings.legacy_algorithms)
                    .map_err(|e| format!("host key {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SshServer {
            config: Arc::new(server_config(&settings, keys)),
            client: ssh::upstream::config(settings.legacy_algorithms),
            users: local_users(&settings)?,
            routes: route_credentials(listener)?,
            host_keys: host_key_policies(clusters)?,
            password_checks: PasswordChecks::new(&settings),
            authorizer_logins: LoginRate::new(settings.authorizer_logins_per_second),
            settings,
        })
    }
}

impl SshServer {
    /// Each audited route's lost audits (since the route's audit log was last opened).
    pub(crate) fn report(&self, listener: &str, out: &mut telemetry::Out<'_>) {
        for (route, r) in &self.routes {
            if let Some(audit) = &r.audit {
                let labels = vec![("listener", listener.to_string()), ("route", route.clone())];
                out.counter("causeway_ssh_audit_lost_total", labels, audit.lost());
            }
        }
    }
}

/// The users the gateway authenticates itself: their keys and password hashes.
fn local_users(settings: &config::SshListener) -> Result<HashMap<String, LocalUser>, String> {
    let mut users = HashMap::new();
    for user in &settings.users {
        let mut local = LocalUser::default();
        if let Some(path) = &user.authorized_keys {
            local.keys = credentials::authorized_keys(path, settings.legacy_algorithms)
                .map_err(|e| format!("user `{}`: authorized_keys {e}", user.name))?;
        }
        if let Some(hash) = &user.password_hash {
            local.password = Some(
                PasswordHash::parse(hash)
                    .map_err(|e| format!("user `{}`: password_hash: {e}", user.name))?,
            );
        }
        users.insert(user.name.clone(), local);
    }
    Ok(users)
}

/// Each SSH route's upstream credential and audit log.
fn route_credentials(listener: &config::Listener) -> Result<HashMap<String, RouteSsh>, String> {
    let legacy = listener.ssh.as_ref().is_some_and(|s| s.legacy_algorithms);
    let mut routes = HashMap::new();
    for route in &listener.routes {
        let Some(s) = &route.ssh else { continue };
        let credential = match (&s.private_key, &s.password_file) {
            (Some(key), _) => UpstreamCredential::from_key_file(key, legacy),
            (None, Some(file)) => UpstreamCredential::from_password_file(file),
            (None, None) => {
                return Err(format!("route `{}`: no upstream credential", route.name));
            }
        }
        .map_err(|e| format!("route `{}`: {e}", route.name))?;
        let audit = match &s.audit_log {
            None => None,
            Some(path) => Some(AuditLog::open(path).map_err(|e| {
                format!("route `{}`: audit_log {}: {e}", route.name, path.display())
            })?),
        };
        routes.insert(route.name.clone(), RouteSsh { credential, audit });
    }
    Ok(routes)
}

/// How each cluster's host keys are verified, by cluster name.
fn host_key_policies(
    clusters: &[config::Cluster],
) -> Result<HashMap<String, Arc<HostKeyPolicy>>, String> {
    let mut host_keys = HashMap::new();
    for cluster in clusters {
        if let Some(h) = &cluster.ssh {
            let policy = HostKeyPolicy::load(h)
                .map_err(|e| format!("cluster `{}`: host keys: {e}", cluster.name))?;
            host_keys.insert(cluster.name.clone(), Arc::new(policy));
        }
    }
    Ok(host_keys)
}

/// russh's server configuration for the listener's settings and host keys.
fn server_config(
    settings: &config::SshListener,
    keys: Vec<russh::keys::PrivateKey>,
) -> russh::server::Config {
    let mut methods = russh::MethodSet::empty();
    methods.push(russh::MethodKind::PublicKey);
    methods.push(russh::MethodKind::Password);
    if settings.keyboard_interactive {
        methods.push(russh::MethodKind::KeyboardInteractive);
    }
    russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-Causeway".into()),
        methods,
        // Every refusal takes as long: wrong password, wrong key and unknown user
        // cannot be told apart by timing. The first probe (`none`) is answered at once.
        auth_rejection_time: std::time::Duration::from_millis(500),
        auth_rejection_time_initial: Some(std::time::Duration::ZERO),
        keys,
        max_auth_attempts: settings.max_auth_attempts as usize,
        preferred: ssh::algorithms::preferred(settings.legacy_algorithms),
        // Keepalives find clients that vanished; idle sessions end by the route's
        // idle_timeout, not here.
        inactivity_timeout: None,
        keepalive_interval: Some(std::time::Duration::from_secs(60)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    }
}

/// SSH counters of one listener, for metrics.
#[derive(Debug, Default)]
pub struct SshStats {
    /// (method, `ok`|`failed`).
    pub auth: Mutex<HashMap<(&'static str, &'static str), u64>>,
    /// By reason (`connect_failed`, `host_key_mismatch`, `auth_refused`...).
    pub upstream_failures: Mutex<HashMap<String, u64>>,
    /// (request, `allowed`|`denied`): `sftp`, `exec`, `shell`, `port_forwarding`...
    pub channel_requests: Mutex<HashMap<(&'static str, &'static str), u64>>,
    /// Before authentication: connections, password checks, authorizer logins.
    pub pre_auth: Arc<PreAuthStats>,
}

impl SshStats {
    pub(crate) fn auth(&self, method: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        *self
            .auth
            .lock()
            .unwrap()
            .entry((method, result))
            .or_default() += 1;
    }

    pub(crate) fn upstream_failed(&self, reason: String) {
        *self
            .upstream_failures
            .lock()
            .unwrap()
            .entry(reason)
            .or_default() += 1;
    }

    pub(crate) fn channel(&self, request: &'static str, allowed: bool) {
        let result = if allowed { "allowed" } else { "denied" };
        *self
            .channel_requests
            .lock()
            .unwrap()
            .entry((request, result))
            .or_default() += 1;
    }

    pub fn snapshot<K: Clone>(map: &Mutex<HashMap<K, u64>>) -> Vec<(K, u64)> {
        map.lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}
