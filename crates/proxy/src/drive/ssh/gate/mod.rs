//! The SSH server side of one connection: who the client is (each attempt routed and
//! authorized as the login it names), then the upstream session, then which channel
//! requests go through. Logins: [`auth`]; the upstream session: [`upstream`]; a channel
//! until it starts, in its own task: [`opening`]; started channels: [`channels`]. The
//! handler's callbacks never wait for the upstream; what may take long (a login, the dial)
//! gives up when the connection ends.

mod auth;
mod channels;
mod opening;
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
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

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
    /// Held while a login is decided or the upstream set up: once the connection ends, its
    /// task takes it to know the handler gave up.
    pub setting_up: tokio::sync::Mutex<()>,
    /// Cancelled when the upstream session ends (the server dropped it, the link broke).
    pub upstream_ended: tokio_util::sync::CancellationToken,
    /// How the session ended (set before `ended` is cancelled): its channels end alike.
    pub result: std::sync::OnceLock<Result<(), Error>>,
    /// The channels that started (their relays run): a pty or env request on one is
    /// refused.
    pub started: Mutex<std::collections::HashSet<ChannelId>>,
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
        Ok(self
            .decide_unless_ended(attributes, Proof::Key(key.public_key))
            .await)
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let attributes = self.login(user, "password", None);
        Ok(self
            .decide_unless_ended(attributes, Proof::Password(password))
            .await)
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
        Ok(self
            .decide_unless_ended(attributes, Proof::Password(&password))
            .await)
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        // The connection is ending (auth deadline, drain): nothing more is set up, and a
        // dial under way is dropped, so the session's loop takes the goodbye at once.
        let (shared, ended) = (self.shared.clone(), self.shared.ended.clone());
        let _busy = shared.setting_up.lock().await;
        if ended.is_cancelled() {
            return Ok(());
        }
        let connected = tokio::select! {
            biased;
            () = ended.cancelled() => return Ok(()),
            connected = self.connect_upstream() => connected,
        };
        if let Err((error, told)) = connected {
            self.shared.outcome.lock().unwrap().error = Some(error);
            session.disconnect(Disconnect::ByApplication, &told, "")?;
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(parts) = self.parts(session) else {
            return Ok(());
        };
        let Some(slot) = self.admit_channel("session") else {
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return Ok(());
        };
        // Opened (and its requests answered) by a task of its own: the session's other
        // channels go on meanwhile.
        tokio::spawn(parts.open(channel, reply, opening::Open::Session, slot));
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
        let Some(parts) = self.parts(session).filter(|_| allowed) else {
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
        let open = opening::Open::DirectTcpip {
            host: host.to_string(),
            port,
            originator: originator.to_string(),
            originator_port,
        };
        tokio::spawn(parts.open(channel, reply, open, slot));
        Ok(())
    }

    // Requests the route allows are passed upstream by the channel's task (which reads
    // them off the channel). A starting request (subsystem, exec, shell) is answered by the
    // task with the upstream's reply; here only its refusal is answered.

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let kind = if name == "sftp" { "sftp" } else { "subsystem" };
        self.refuse_unless_allowed(channel, kind, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_unless_allowed(channel, "exec", session)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse_unless_allowed(channel, "shell", session)
    }

    /// Answered here at once, by the route (and passed upstream by the channel's task, not
    /// asking for the upstream's answer): OpenSSH sends its environment and command right
    /// behind it without waiting, and russh keeps one reply flag per channel, so only an
    /// answer sent before the next request arrives is taken as this one's.
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.answer_by_route(channel, "pty", session)
    }

    /// Like a pty request: answered here by the route, passed upstream by the channel's
    /// task (a variable the server refuses is not reported back to the client).
    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.answer_by_route(channel, "env", session)
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
}
