//! The SSH server side of one connection: who the client is (each attempt routed and
//! authorized as the login it names), then the upstream session, then which channel
//! requests go through.

use crate::accept::{Context, Listener};
use crate::attributes::{Attributes, Protocol, SshLogin};
use crate::authorize;
use crate::dial::cluster::Lease;
use crate::end::registry::{Live, Registration, Upstream};
use crate::error::{Error, Kind, Side};
use crate::route::Route;
use crate::terminate::ssh::{LocalUser, SshServer};
use ssh::audit::SftpAudit;
use ssh::channel::{Observer, relay, upstream_reply};
use ssh::russh::server::{Auth, Msg, Response, Session};
use ssh::russh::{self, Channel, ChannelId, Disconnect, client};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How long the upstream may take to answer a channel open or request: the client's whole
/// session waits meanwhile.
const UPSTREAM_ANSWER: std::time::Duration = std::time::Duration::from_secs(30);

/// What the connection's task learns from the session, to log and close it.
#[derive(Default)]
pub(super) struct Outcome {
    /// The last login the client tried (for the log of a refused connection).
    pub attributes: Option<Attributes>,
    pub route: Option<Arc<Route>>,
    pub registration: Option<Registration>,
    pub lease: Option<Lease>,
    pub upstream: Option<Arc<ssh::upstream::Handle>>,
    pub error: Option<Error>,
}

pub(super) struct Shared {
    pub outcome: Mutex<Outcome>,
    /// Set once the client is authenticated and the connection registered.
    pub live: watch::Sender<Option<Arc<Live>>>,
    /// Cancelled when the connection ends: its relays stop, even one waiting for a window
    /// that will never open (a client that stopped reading, then was cut off).
    pub ended: tokio_util::sync::CancellationToken,
}

/// A client login that passed: its route and what the authorizer said.
struct Admitted {
    route: Arc<Route>,
    attributes: Attributes,
    routing: Option<Box<authz::Routing>>,
}

pub(super) struct Gate {
    pub server: Arc<SshServer>,
    pub listener: Arc<Listener>,
    pub context: Arc<Context>,
    /// As accepted (with the PROXY header's client).
    pub attributes: Attributes,
    pub shared: Arc<Shared>,
    admitted: Option<Admitted>,
    live: Option<Arc<Live>>,
    upstream: Option<Arc<ssh::upstream::Handle>>,
    /// Channels opened on both sides, waiting for the request that starts them.
    pending: HashMap<ChannelId, (Channel<Msg>, Channel<client::Msg>)>,
}

/// What a client offers to prove who it is.
enum Proof<'a> {
    Key(&'a russh::keys::PublicKey),
    Password(&'a str),
}

impl Gate {
    pub fn new(
        server: Arc<SshServer>,
        listener: Arc<Listener>,
        context: Arc<Context>,
        attributes: Attributes,
        shared: Arc<Shared>,
    ) -> Self {
        Gate {
            server,
            listener,
            context,
            attributes,
            shared,
            admitted: None,
            live: None,
            upstream: None,
            pending: HashMap::new(),
        }
    }

    /// The attributes of a login attempt: `user<sep>target` split when configured.
    fn login(
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
        })));
        attributes
    }

    fn local_user(&self, attributes: &Attributes) -> Option<&LocalUser> {
        self.server.users.get(&attributes.ssh()?.user)
    }

    /// Whether the login could pass with this key, before the client proves it holds it.
    fn key_acceptable(&self, attributes: &Attributes, key: &russh::keys::PublicKey) -> bool {
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

    /// Decides one attempt: route, credentials (the gateway's user list, else the
    /// authorizer), then the route's authorization. Every refusal looks the same to the
    /// client.
    async fn decide(&mut self, attributes: Attributes, proof: Proof<'_>) -> Auth {
        let method = attributes.ssh().map_or("none", |l| l.method);
        let stats = &self.listener.stats;
        let methods = self.server.config.methods.clone();
        let refuse = |stats: &crate::accept::ListenerStats| {
            stats.ssh.auth(method, false);
            reject(methods)
        };
        let Some(route) = self.listener.routes.find(&attributes).cloned() else {
            self.shared.outcome.lock().unwrap().attributes = Some(attributes);
            return refuse(stats);
        };
        let verified = match self.local_user(&attributes) {
            Some(user) => match proof {
                Proof::Key(key) => user.keys.iter().any(|k| ssh::credentials::same_key(key, k)),
                Proof::Password(password) => match &user.password {
                    None => false,
                    Some(hash) => {
                        let (hash, password) = (hash.clone(), password.to_string());
                        tokio::task::spawn_blocking(move || hash.verify(&password))
                            .await
                            .unwrap_or(false)
                    }
                },
            },
            // Not the gateway's user: only an authorizer can vouch for it (with the
            // password to check, or the key the client proved it holds).
            None if route.authorizer.is_some() => {
                let password = match proof {
                    Proof::Password(password) => Some(password),
                    Proof::Key(_) => None,
                };
                return self
                    .decide_by_authorizer(attributes, route, Some(password))
                    .await;
            }
            None => false,
        };
        if !verified {
            self.shared.outcome.lock().unwrap().attributes = Some(attributes);
            return refuse(stats);
        }
        self.decide_by_authorizer(attributes, route, None).await
    }

    /// The route's authorization (rules, then the authorizer); allowed: admitted.
    /// `authenticating`: the authorizer is the one who authenticates the client (`Some`
    /// password for a password login).
    async fn decide_by_authorizer(
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

    /// Once authenticated: registered as a live connection, then the upstream dialed and
    /// logged in to. Err: what to tell the client before disconnecting.
    async fn connect_upstream(&mut self) -> Result<(), (Error, String)> {
        let admitted = self.admitted.as_ref().expect("authenticated");
        let route = admitted.route.clone();
        let routing = admitted.routing.as_deref();
        let live = Arc::new(Live::new(admitted.attributes.clone()));
        let registration = self.context.registry.register(live.clone());
        route.connections.fetch_add(1, Relaxed);
        let login = live.attributes.ssh().expect("an ssh login");
        (self.listener.stats.sessions).count(&route.config.name, &live.attributes, false);
        {
            let mut outcome = self.shared.outcome.lock().unwrap();
            outcome.registration = Some(registration);
            outcome.route = Some(route.clone());
        }
        self.live = Some(live.clone());
        self.shared.live.send_replace(Some(live.clone()));

        let stats = &self.listener.stats.ssh;
        let cluster = match routing.and_then(|r| r.cluster.as_deref()) {
            None => route.cluster.clone(),
            Some(name) => match self.listener.routes.cluster(name) {
                Some(c) => c.clone(),
                None => {
                    let error = Error::internal(Kind::BadDynamicTarget);
                    return Err((error, "no upstream for this session".into()));
                }
            },
        };
        let Some(policy) = self.server.host_keys.get(cluster.name()).cloned() else {
            stats.upstream_failed("no_host_keys".into());
            let why = format!(
                "cluster `{}` has no SSH host keys to verify",
                cluster.name()
            );
            return Err((
                Error::internal(Kind::Ssh(why)),
                "no upstream for this session".into(),
            ));
        };
        let route_ssh = &self.server.routes[&route.config.name];
        let user = routing
            .and_then(|r| r.ssh_user.clone())
            .or_else(|| {
                route
                    .config
                    .ssh
                    .as_ref()
                    .and_then(|s| s.upstream_user.clone())
            })
            .unwrap_or_else(|| login.user.clone());
        let dialed = crate::dial::dial(
            &cluster,
            &route.config,
            &live.attributes,
            routing,
            &self.context.handshakes,
        )
        .await;
        let (leg, lease) = match dialed {
            Ok(pair) => pair,
            Err(error) => {
                stats.upstream_failed(error.code());
                return Err((error, "upstream unavailable".into()));
            }
        };
        let (host, port) = split_host_port(&lease.endpoint.address);
        let login = ssh::upstream::Login {
            host,
            port,
            user: &user,
            credential: &route_ssh.credential,
            policy,
        };
        let timeout = cluster
            .config
            .connect_timeout
            .max(std::time::Duration::from_secs(10));
        let connected =
            ssh::upstream::connect(leg, login, self.server.client.clone(), timeout).await;
        live.set_upstream(Upstream {
            route: route.clone(),
            cluster: cluster.clone(),
            endpoint: lease.endpoint.clone(),
        });
        self.shared.outcome.lock().unwrap().lease = Some(lease);
        match connected {
            Ok(handle) => {
                let handle = Arc::new(handle);
                self.upstream = Some(handle.clone());
                self.shared.outcome.lock().unwrap().upstream = Some(handle);
                Ok(())
            }
            Err(e) => {
                stats.upstream_failed(e.code().into());
                tracing::warn!(id = live.attributes.id, route = %route.config.name, cluster = %cluster.name(), "ssh upstream: {e}");
                let told = match &e {
                    ssh::upstream::UpstreamError::HostKeyMismatch { .. } => {
                        "the upstream server could not be verified"
                    }
                    _ => "upstream unavailable",
                };
                Err((
                    Error::new(Side::Upstream, Kind::SshUpstream(e.code())),
                    told.into(),
                ))
            }
        }
    }

    fn allow(&self) -> config::SshAllow {
        self.admitted
            .as_ref()
            .and_then(|a| a.route.config.ssh.as_ref())
            .map(|s| s.allow)
            .unwrap_or_default()
    }

    /// Answers a request of a channel not started yet: passed upstream when `allowed`,
    /// and the channel started (relayed) when `starts` and the upstream said yes.
    async fn request(
        &mut self,
        id: ChannelId,
        kind: &'static str,
        allowed: bool,
        starts: bool,
        session: &mut Session,
        send: impl AsyncFnOnce(&Channel<client::Msg>) -> Result<(), russh::Error>,
    ) -> Result<(), russh::Error> {
        self.listener.stats.ssh.channel(kind, allowed);
        let Some((_, up)) = self.pending.get_mut(&id).filter(|_| allowed) else {
            if !allowed {
                let (id_, user) = (
                    self.attributes.id,
                    self.admitted
                        .as_ref()
                        .and_then(|a| a.attributes.ssh())
                        .map(|l| l.user.clone()),
                );
                tracing::info!(
                    id = id_,
                    user,
                    request = kind,
                    "ssh channel request denied by the route"
                );
            }
            return session.channel_failure(id);
        };
        // Bounded: the client's session waits for this answer.
        let asked = async { send(up).await.is_ok() && upstream_reply(up).await };
        let ok = tokio::time::timeout(UPSTREAM_ANSWER, asked)
            .await
            .unwrap_or(false);
        if !ok {
            return session.channel_failure(id);
        }
        session.channel_success(id)?;
        if starts && let Some((down, up)) = self.pending.remove(&id) {
            self.start(down, up, kind == "sftp", session);
        }
        Ok(())
    }

    /// Relays a channel in a task of its own.
    fn start(&self, down: Channel<Msg>, up: Channel<client::Msg>, sftp: bool, session: &Session) {
        let Some(live) = self.live.clone() else {
            return;
        };
        let admitted = self.admitted.as_ref().expect("authenticated");
        let audit = match sftp {
            true => self.server.routes[&admitted.route.config.name]
                .audit
                .clone(),
            false => None,
        }
        .map(|log| {
            let login = live.attributes.ssh();
            let mut context = serde_json::Map::new();
            context.insert("connection".into(), live.attributes.id.into());
            context.insert(
                "listener".into(),
                live.attributes.listener.to_string().into(),
            );
            context.insert("route".into(), admitted.route.config.name.clone().into());
            context.insert("source".into(), live.attributes.source.to_string().into());
            if let Some(login) = login {
                context.insert("user".into(), login.user.clone().into());
            }
            SftpAudit::new(log, context)
        });
        let server = session.handle();
        let ended = self.shared.ended.clone();
        tokio::spawn(async move {
            let observer = Counting { live, audit };
            // Dropping the relay drops both channels' halves: russh's sessions stop waiting
            // on them.
            tokio::select! {
                _ = relay(down, up, server, &observer) => {}
                () = ended.cancelled() => {}
            }
        });
    }
}

/// Counts a channel's bytes on the connection and feeds the SFTP audit.
struct Counting {
    live: Arc<Live>,
    audit: Option<SftpAudit>,
}

impl Observer for Counting {
    fn to_upstream(&self, data: &[u8]) {
        let c = &self.live.counters;
        c.record(&c.upstream_bytes, data.len());
        if let Some(audit) = &self.audit {
            audit.requests(data);
        }
    }

    fn to_downstream(&self, data: &[u8]) {
        let c = &self.live.counters;
        c.record(&c.downstream_bytes, data.len());
        if let Some(audit) = &self.audit {
            audit.replies(data);
        }
    }
}

fn split_host_port(address: &str) -> (&str, u16) {
    match address.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse().unwrap_or(22),
        ),
        None => (address, 22),
    }
}

/// A refusal that offers every method again (russh would otherwise drop the one that
/// failed, and a client could not retry a mistyped password).
fn reject(methods: russh::MethodSet) -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(methods),
        partial_success: false,
    }
}

impl russh::server::Handler for Gate {
    type Error = russh::Error;

    async fn authentication_banner(&mut self) -> Result<Option<String>, Self::Error> {
        Ok(self.server.settings.banner.clone())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let attributes = self.login(user, "publickey", Some(offer.public_key));
        if self.key_acceptable(&attributes, offer.public_key) {
            return Ok(Auth::Accept);
        }
        // A key probe refused is not a failed login (clients try their keys in turn).
        self.shared.outcome.lock().unwrap().attributes = Some(attributes);
        Ok(reject(self.server.config.methods.clone()))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let attributes = self.login(user, "publickey", Some(key.public_key));
        Ok(self.decide(attributes, Proof::Key(key.public_key)).await)
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let attributes = self.login(user, "password", None);
        Ok(self.decide(attributes, Proof::Password(password)).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if !self.server.settings.keyboard_interactive {
            return Ok(reject(self.server.config.methods.clone()));
        }
        let answer = response.and_then(|mut r| r.next());
        let Some(answer) = answer else {
            return Ok(Auth::Partial {
                name: "".into(),
                instructions: "".into(),
                prompts: vec![("Password: ".into(), false)].into(),
            });
        };
        let password = String::from_utf8_lossy(&answer).into_owned();
        let attributes = self.login(user, "keyboard-interactive", None);
        Ok(self.decide(attributes, Proof::Password(&password)).await)
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        if let Err((error, told)) = self.connect_upstream().await {
            self.shared.outcome.lock().unwrap().error = Some(error);
            session.disconnect(Disconnect::ByApplication, &told, "")?;
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(upstream) = &self.upstream else {
            return Ok(());
        };
        let opened = tokio::time::timeout(UPSTREAM_ANSWER, upstream.channel_open_session()).await;
        match opened.unwrap_or(Err(russh::Error::ConnectionTimeout)) {
            Ok(up) => {
                self.pending.insert(channel.id(), (channel, up));
                reply.accept().await;
            }
            Err(e) => {
                tracing::warn!(
                    id = self.attributes.id,
                    "ssh upstream refused a session channel: {e}"
                );
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
            }
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        originator: &str,
        originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = self.allow().port_forwarding;
        self.listener.stats.ssh.channel("port_forwarding", allowed);
        let Some(upstream) = self.upstream.as_ref().filter(|_| allowed) else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let opened = upstream.channel_open_direct_tcpip(host, port, originator, originator_port);
        let opened = tokio::time::timeout(UPSTREAM_ANSWER, opened).await;
        match opened.unwrap_or(Err(russh::Error::ConnectionTimeout)) {
            Ok(up) => {
                reply.accept().await;
                self.start(channel, up, false, session);
            }
            Err(_) => reply.reject(russh::ChannelOpenFailure::ConnectFailed).await,
        }
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = name == "sftp" && self.allow().sftp;
        let name = name.to_string();
        let kind = if name == "sftp" { "sftp" } else { "subsystem" };
        self.request(channel, kind, allowed, true, session, async move |up| {
            up.request_subsystem(true, name).await
        })
        .await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = self.allow().exec;
        let command = data.to_vec();
        self.request(channel, "exec", allowed, true, session, async move |up| {
            up.exec(true, command).await
        })
        .await
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = self.allow().shell;
        self.request(channel, "shell", allowed, true, session, async |up| {
            up.request_shell(true).await
        })
        .await
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allow = self.allow();
        let (term, modes) = (term.to_string(), modes.to_vec());
        self.request(
            channel,
            "pty",
            allow.shell || allow.exec,
            false,
            session,
            async move |up| {
                up.request_pty(
                    true, &term, col_width, row_height, pix_width, pix_height, &modes,
                )
                .await
            },
        )
        .await
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allow = self.allow();
        let allowed = allow.shell || allow.exec;
        if allowed && let Some((_, up)) = self.pending.get(&channel) {
            // Sent without asking for a reply: servers refuse most variables silently.
            let _ = up.set_env(false, name, value).await;
            return session.channel_success(channel);
        }
        session.channel_failure(channel)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.listener.stats.ssh.channel("x11", false);
        session.channel_failure(channel)
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A channel closed before it started: its upstream twin goes too.
        if let Some((_, up)) = self.pending.remove(&channel) {
            let _ = up.close().await;
        }
        Ok(())
    }
}
