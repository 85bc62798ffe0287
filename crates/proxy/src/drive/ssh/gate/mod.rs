//! The SSH server side of one connection: who the client is (each attempt routed and
//! authorized as the login it names), then the upstream session, then which channel
//! requests go through. Logins: [`auth`]; the upstream session: [`upstream`]; channels:
//! [`channels`].

mod auth;
mod channels;
mod upstream;

use crate::accept::{Context, Listener};
use crate::attributes::Attributes;
use crate::dial::cluster::Lease;
use crate::end::registry::{Live, Registration};
use crate::error::Error;
use crate::route::Route;
use crate::terminate::ssh::SshServer;
use auth::reject;
use ssh::russh::server::{Auth, Msg, Response, Session};
use ssh::russh::{self, Channel, ChannelId, Disconnect};
use std::collections::HashMap;
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
    /// How the session ended (set before `ended` is cancelled): its channels end alike.
    pub result: std::sync::OnceLock<Result<(), Error>>,
}

impl Shared {
    /// Ends the session's channels with the session's own close reason.
    pub fn end(&self, result: &Result<(), Error>) {
        let _ = self.result.set(result.clone());
        self.ended.cancel();
    }

    /// Why a channel ended with its session.
    fn ending(&self) -> Result<(), Error> {
        let ended = Error::internal(crate::error::Kind::SshSessionEnded);
        self.result.get().cloned().unwrap_or(Err(ended))
    }
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
    pending: HashMap<ChannelId, channels::Pending>,
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
        let Some(slot) = self.admit_channel("session") else {
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return Ok(());
        };
        let opened = tokio::time::timeout(UPSTREAM_ANSWER, upstream.channel_open_session()).await;
        match opened.unwrap_or(Err(russh::Error::ConnectionTimeout)) {
            Ok(up) => {
                let id = channel.id();
                let pending = channels::Pending::new(channel, up, slot);
                self.pending.insert(id, pending);
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
        let Some(slot) = self.admit_channel("port_forwarding") else {
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return Ok(());
        };
        let opened = upstream.channel_open_direct_tcpip(host, port, originator, originator_port);
        let opened = tokio::time::timeout(UPSTREAM_ANSWER, opened).await;
        match opened.unwrap_or(Err(russh::Error::ConnectionTimeout)) {
            Ok(up) => {
                reply.accept().await;
                let pending = channels::Pending::new(channel, up, slot);
                self.start(pending, "port_forwarding", session);
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
        if allowed && let Some(pending) = self.pending.get(&channel) {
            // Sent without asking for a reply: servers refuse most variables silently.
            let _ = pending.up.set_env(false, name, value).await;
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

    async fn data(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.early_data(channel, session).await;
        Ok(())
    }

    async fn extended_data(
        &mut self,
        channel: ChannelId,
        _code: u32,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.early_data(channel, session).await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // A channel closed before it started: its upstream twin goes too.
        if let Some(pending) = self.pending.remove(&channel) {
            let _ = pending.up.close().await;
        }
        Ok(())
    }
}
