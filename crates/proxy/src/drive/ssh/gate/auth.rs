//! Who the client is: each login attempt routed and authorized as the login it names —
//! a key or password the gateway checks itself (its users), or the authorizer's word.

use super::{Admitted, Gate, Proof};
use crate::attributes::{Attributes, Protocol, SshLogin};
use crate::authorize;
use crate::route::Route;
use crate::terminate::ssh::LocalUser;
use ssh::credentials::PasswordHash;
use ssh::russh::{self, server::Auth};
use std::sync::Arc;

impl Gate {
    /// The attributes of a login attempt: `user<sep>target` split when configured.
    pub(super) fn login(
        &self,
        name: &str,
        method: &'static str,
        key: Option<&russh::keys::PublicKey>,
    ) -> Attributes {
        let (user, target) = match &self.server.settings.target_separator {
            Some(sep) => match name.split_once(sep.as_str()) {
                Some((user, target)) => (user.to_string(), Some(target.to_string())),
                None => (name.to_string(), None),
            },
            None => (name.to_string(), None),
        };
        let mut attributes = self.attributes.clone();
        attributes.protocol = Some(Box::new(Protocol::Ssh(SshLogin {
            user,
            target,
            method,
            key_fingerprint: key.map(ssh::credentials::fingerprint),
            channel: None,
        })));
        attributes
    }

    pub(super) fn local_user(&self, attributes: &Attributes) -> Option<&LocalUser> {
        self.server.users.get(&attributes.ssh()?.user)
    }

    /// Whether the login could pass with this key, before the client proves it holds it.
    pub(super) fn key_acceptable(
        &self,
        attributes: &Attributes,
        key: &russh::keys::PublicKey,
    ) -> bool {
        if !self.key_algorithm_allowed(key) {
            return false;
        }
        let Some(route) = self.listener.routes.find(attributes) else {
            return false;
        };
        // Where the authorizer may vouch for unknown names, every offer goes on to the
        // signed attempt (and is decided there): answering known users' wrong keys sooner
        // would tell which names are the gateway's own users.
        match self.local_user(attributes) {
            _ if route.authorizer.is_some() => true,
            Some(user) => user.keys.iter().any(|k| ssh::credentials::same_key(key, k)),
            None => false,
        }
    }

    /// RSA keys only with `legacy_algorithms` (whoever would vouch for them).
    fn key_algorithm_allowed(&self, key: &russh::keys::PublicKey) -> bool {
        self.server.settings.legacy_algorithms || !ssh::credentials::is_rsa(key)
    }

    /// [`Gate::decide`], given up (refused) when the connection ends meanwhile (auth
    /// deadline, drain): a login cannot pass after the connection was logged.
    pub(super) async fn decide_unless_ended(
        &mut self,
        attributes: Attributes,
        proof: Proof<'_>,
    ) -> Auth {
        let (shared, ended) = (self.shared.clone(), self.shared.ended.clone());
        let _busy = shared.setting_up.lock().await;
        let methods = self.server.config.methods.clone();
        tokio::select! {
            biased;
            () = ended.cancelled() => reject(methods),
            auth = self.decide(attributes, proof) => auth,
        }
    }

    /// Decides one attempt: route, credentials (the gateway's user list, else the
    /// authorizer), then the route's authorization. Every refusal looks the same to the
    /// client.
    pub(super) async fn decide(&mut self, attributes: Attributes, proof: Proof<'_>) -> Auth {
        let method = attributes.ssh().map_or("none", |l| l.method);
        let stats = &self.listener.stats;
        let methods = self.server.config.methods.clone();
        let refuse = |stats: &crate::accept::ListenerStats| {
            stats.ssh.auth(method, false);
            reject(methods)
        };
        let refused_key = matches!(proof, Proof::Key(key) if !self.key_algorithm_allowed(key));
        let route = self.listener.routes.find(&attributes).cloned();
        let Some(route) = route.filter(|_| !refused_key) else {
            if let Proof::Password(password) = proof {
                self.check_password(None, password).await;
            }
            self.shared.outcome.lock().unwrap().attributes = Some(attributes);
            return refuse(stats);
        };
        let verified = match self.local_user(&attributes) {
            Some(user) => match proof {
                Proof::Key(key) => user.keys.iter().any(|k| ssh::credentials::same_key(key, k)),
                Proof::Password(password) => {
                    self.check_password(user.password.as_ref(), password).await
                }
            },
            // Not the gateway's user: only an authorizer can vouch for it (with the
            // password to check, or the key the client proved it holds).
            None if route.authorizer.is_some() => {
                if !self.server.authorizer_logins.take(&stats.ssh.pre_auth) {
                    self.shared.outcome.lock().unwrap().attributes = Some(attributes);
                    return refuse(stats);
                }
                let password = match proof {
                    Proof::Password(password) => Some(password),
                    Proof::Key(_) => None,
                };
                return self
                    .decide_by_authorizer(attributes, route, Some(password))
                    .await;
            }
            None => match proof {
                Proof::Password(password) => self.check_password(None, password).await,
                Proof::Key(_) => false,
            },
        };
        if !verified {
            self.shared.outcome.lock().unwrap().attributes = Some(attributes);
            return refuse(stats);
        }
        self.decide_by_authorizer(attributes, route, None).await
    }

    /// Whether `password` matches the user's hash. Without one (an unknown user, a user
    /// with keys only) a dummy hash is checked all the same and the answer is no: the
    /// refusal takes as long as a wrong password's, whoever asked.
    async fn check_password(&self, hash: Option<&PasswordHash>, password: &str) -> bool {
        let checked = hash.unwrap_or_else(|| PasswordHash::dummy()).clone();
        let checks = &self.server.password_checks;
        let matched = checks
            .verify(
                &self.listener.stats.ssh.pre_auth,
                checked,
                password.to_string(),
            )
            .await;
        matched && hash.is_some()
    }

    /// The route's authorization (rules, then the authorizer); allowed: admitted.
    /// `authenticating`: the authorizer is the one who authenticates the client (`Some`
    /// password for a password login).
    pub(super) async fn decide_by_authorizer(
        &mut self,
        mut attributes: Attributes,
        route: Arc<Route>,
        authenticating: Option<Option<&str>>,
    ) -> Auth {
        let method = attributes.ssh().map_or("none", |l| l.method);
        let stats = &self.listener.stats;
        let checked = match authenticating {
            None => authorize::check(&route, &attributes).await,
            Some(password) => authorize::authenticate(&route, &attributes, password).await,
        };
        match checked {
            Ok((decision, routing)) => {
                attributes.authz = decision;
                stats.ssh.auth(method, true);
                self.admitted = Some(Admitted {
                    route,
                    attributes,
                    routing,
                });
                Auth::Accept
            }
            Err((decision, error)) => {
                attributes.authz = Some(decision);
                stats.ssh.auth(method, false);
                tracing::info!(id = attributes.id, route = %route.config.name, user = attributes.ssh().map(|l| l.user.as_str()), "ssh login refused: {error}");
                let mut outcome = self.shared.outcome.lock().unwrap();
                outcome.attributes = Some(attributes);
                outcome.route = Some(route);
                reject(self.server.config.methods.clone())
            }
        }
    }
}

/// A refusal that offers every method again (russh would otherwise drop the one that
/// failed, and a client could not retry a mistyped password).
pub(super) fn reject(methods: russh::MethodSet) -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(methods),
        partial_success: false,
    }
}
