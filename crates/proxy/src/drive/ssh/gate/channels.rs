//! The channels of an authenticated session. Each is a connection of its own: admitted at
//! its open (counted against `max_connections` and the listener's limits), let through by
//! the route's `allow`, then relayed under the route's timeouts and re-checks, registered,
//! and ended with its own access-log line — by the same stages as any connection. Its
//! bytes count on the session too (the session's idle timer, its access-log line) and feed
//! the SFTP audit.

use super::Gate;
use crate::accept::admission::{self, Slot};
use crate::attributes::{Attributes, Protocol, SpanSlot, SshChannel, next_id};
use crate::end::{self, registry::Live, registry::Upstream};
use crate::route::Route;
use ssh::audit::SftpAudit;
use ssh::channel::{Ended, Observer, relay};
use ssh::russh::server::{Msg, Session};
use ssh::russh::{self, Channel, ChannelId, ChannelMsg, client};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use telemetry::trace::SpanKind;
use tokio_util::sync::CancellationToken;

/// A channel opened on both sides, waiting for the request that starts it; a connection
/// (holding its admission slot) from its open.
pub(super) struct Pending {
    pub down: Channel<Msg>,
    pub up: Channel<client::Msg>,
    pub slot: Slot,
    /// What the client sent before the channel started, in order.
    pub early: Vec<ChannelMsg>,
}

/// What a channel's own task needs of its session.
#[derive(Clone)]
pub(super) struct Parts {
    pub listener: Arc<crate::accept::Listener>,
    pub context: Arc<crate::accept::Context>,
    pub server: Arc<crate::terminate::ssh::SshServer>,
    pub shared: Arc<super::Shared>,
    pub live: Arc<Live>,
    pub route: Arc<Route>,
    pub allow: config::SshAllow,
    /// The client's session, to answer its requests.
    pub handle: russh::server::Handle,
    pub upstream: Arc<ssh::upstream::Handle>,
}

impl Gate {
    pub(super) fn allow(&self) -> config::SshAllow {
        self.admitted
            .as_ref()
            .and_then(|a| a.route.config.ssh.as_ref())
            .map(|s| s.allow)
            .unwrap_or_default()
    }

    /// What a channel's task needs; `None` before the session is set up.
    pub(super) fn parts(&self, session: &Session) -> Option<Parts> {
        Some(Parts {
            listener: self.listener.clone(),
            context: self.context.clone(),
            server: self.server.clone(),
            shared: self.shared.clone(),
            live: self.live.clone()?,
            route: self.admitted.as_ref()?.route.clone(),
            allow: self.allow(),
            handle: session.handle(),
            upstream: self.upstream.clone()?,
        })
    }

    /// A channel the client opens is admitted like a connection. `None`: refused (counted
    /// by reason, logged); the client is told the gateway lacks the resources.
    pub(super) fn admit_channel(&self, kind: &str) -> Option<Slot> {
        let source = self.attributes.source.ip();
        let admitted = admission::admit(&self.listener, &self.context.global, None, source);
        admitted
            .inspect_err(|refusal| {
                tracing::warn!(
                    id = self.attributes.id,
                    channel = kind,
                    reason = refusal.reason(),
                    "ssh channel refused: {}",
                    refusal.reason().replace('_', " ")
                );
            })
            .ok()
    }

    /// A request the route does not allow, answered at once (in the session's loop: the
    /// answer is the one the client waits for). Allowed ones are passed upstream by the
    /// channel's task, which answers a starting one with the upstream's reply.
    pub(super) fn refuse_unless_allowed(
        &self,
        id: ChannelId,
        kind: &'static str,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let allowed = super::opening::allowed(self.allow(), kind);
        if kind != "env" {
            self.listener.stats.ssh.channel(kind, allowed);
        }
        if allowed {
            return Ok(());
        }
        let user = self.admitted.as_ref().and_then(|a| a.attributes.ssh());
        let user = user.map(|l| l.user.clone());
        tracing::info!(
            id = self.attributes.id,
            user,
            request = kind,
            "ssh channel request denied by the route"
        );
        session.channel_failure(id)
    }

    /// A pty or env request, answered at once by the route (see `pty_request`); on a
    /// channel that started, refused (a channel starts once).
    pub(super) fn answer_by_route(
        &self,
        id: ChannelId,
        kind: &'static str,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if self.shared.started.lock().unwrap().contains(&id) {
            return session.channel_failure(id);
        }
        self.refuse_unless_allowed(id, kind, session)?;
        match super::opening::allowed(self.allow(), kind) {
            true => session.channel_success(id),
            false => Ok(()),
        }
    }
}

impl Parts {
    /// Runs a started channel as a connection, in a task of its own.
    pub(super) fn start(&self, pending: Pending, kind: &'static str) {
        let route = self.route.clone();
        let audit = match kind {
            "sftp" => self.server.routes[&route.config.name].audit.clone(),
            _ => None,
        }
        .map(|log| audit(log, &self.live, &route));
        let id = pending.down.id();
        self.shared.started.lock().unwrap().insert(id);
        let channel = ChannelTask {
            id,
            attributes: channel_attributes(&self.live.attributes, kind),
            observer: Counting {
                channel: None,
                session: self.live.clone(),
                audit,
            },
            route,
            context: self.context.clone(),
            server: self.handle.clone(),
            shared: self.shared.clone(),
        };
        tokio::spawn(channel.run(pending));
    }
}

/// A channel is its session's connection (client, TLS-less SSH login, route) with an id of
/// its own, its kind and its session's id.
fn channel_attributes(session: &Attributes, kind: &'static str) -> Attributes {
    let mut attributes = session.clone();
    attributes.id = next_id();
    // A span of its own, within its session's.
    let span = session.span.child("ssh channel", SpanKind::Internal);
    attributes.span = span.map(SpanSlot::new).unwrap_or_default();
    attributes.span.with(|s| {
        s.set("causeway.connection.id", attributes.id);
        s.set("causeway.ssh.channel", kind);
    });
    if let Some(Protocol::Ssh(login)) = attributes.protocol.as_deref_mut() {
        login.channel = Some(SshChannel {
            kind,
            session: session.id,
        });
    }
    attributes
}

fn audit(log: Arc<ssh::audit::AuditLog>, live: &Live, route: &Route) -> SftpAudit {
    let mut context = serde_json::Map::new();
    context.insert("connection".into(), live.attributes.id.into());
    let listener = live.attributes.listener.to_string();
    context.insert("listener".into(), listener.into());
    context.insert("route".into(), route.config.name.clone().into());
    context.insert("source".into(), live.attributes.source.to_string().into());
    if let Some(login) = live.attributes.ssh() {
        context.insert("user".into(), login.user.clone().into());
    }
    SftpAudit::new(log, context)
}

/// What a started channel's task needs.
struct ChannelTask {
    /// The client's channel.
    id: ChannelId,
    attributes: Attributes,
    observer: Counting,
    route: Arc<Route>,
    context: Arc<crate::accept::Context>,
    server: russh::server::Handle,
    /// The session's end: the channel goes with it, for the same reason.
    shared: Arc<super::Shared>,
}

impl ChannelTask {
    /// Registered, relayed under the one ending's watch, ended like any connection.
    async fn run(mut self, pending: Pending) {
        let Pending {
            down,
            up,
            slot,
            early,
        } = pending;
        let route = self.route.clone();
        let registration = self
            .context
            .registry
            .register(Arc::new(Live::new(self.attributes)));
        let live = registration.live.clone();
        route.connections.fetch_add(1, Relaxed);
        if let Some(u) = self.observer.session.upstream() {
            live.set_upstream(Upstream {
                route: u.route.clone(),
                cluster: u.cluster.clone(),
                endpoint: u.endpoint.clone(),
            });
        }
        self.observer.channel = Some(live.clone());
        // The gateway ending the channel (a timeout, a re-check) closes it on both sides;
        // the session goes on.
        let halt = CancellationToken::new();
        let relayed = AtomicBool::new(false);
        let work = async {
            if replay(early, &up, &self.observer).await.is_err() {
                return self.shared.ending();
            }
            let ended = relay(down, up, self.server, &self.observer, halt.cancelled()).await;
            relayed.store(true, Relaxed);
            match ended {
                Ended::Closed => Ok(()),
                Ended::Lost | Ended::Stopped => self.shared.ending(),
            }
        };
        let mut work = std::pin::pin!(work);
        let ended = &self.shared.ended;
        let result = tokio::select! {
            biased;
            r = end::supervise(&live, &route, work.as_mut()) => r,
            () = ended.cancelled() => self.shared.ending(),
        };
        if shutting_down(&result) {
            // The session is draining too, and its disconnect tells the client why; a
            // channel closed first could let the client leave before it reads that.
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), ended.cancelled()).await;
        }
        if !relayed.load(Relaxed) && !ended.is_cancelled() {
            halt.cancel();
            // Bounded: the close waits for room in each session's queue.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), work).await;
        }
        // A transfer cut before its CLOSE still gets its close line.
        if let Some(audit) = &self.observer.audit {
            audit.ended();
        }
        end::finish(
            registration,
            &route,
            &result,
            self.context.access_log.as_ref(),
        );
        self.shared.started.lock().unwrap().remove(&self.id);
        drop(slot);
    }
}

fn shutting_down(result: &Result<(), crate::error::Error>) -> bool {
    matches!(result, Err(e) if e.kind == crate::error::Kind::Shutdown)
}

/// Passes on to the upstream what the client sent before the channel started (data, EOF,
/// window changes, signals), in order.
async fn replay(
    early: Vec<ChannelMsg>,
    up: &Channel<client::Msg>,
    observer: &Counting,
) -> Result<(), russh::Error> {
    for message in early {
        match message {
            ChannelMsg::Data { data } => {
                observer.to_upstream(&data);
                up.data_bytes(data).await?;
            }
            ChannelMsg::ExtendedData { data, ext } => up.extended_data_bytes(ext, data).await?,
            ChannelMsg::Eof => up.eof().await?,
            ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            } => {
                (up.window_change(col_width, row_height, pix_width, pix_height)).await?;
            }
            ChannelMsg::Signal { signal } => up.signal(signal).await?,
            // Requests were answered before the channel started.
            _ => {}
        }
    }
    Ok(())
}

/// Counts a channel's bytes on the channel and on its session (whose idle timer and
/// access-log line see them), and feeds the SFTP audit.
struct Counting {
    channel: Option<Arc<Live>>,
    session: Arc<Live>,
    audit: Option<SftpAudit>,
}

impl Counting {
    fn count(&self, n: usize, pick: impl Fn(&crate::relay::Counters) -> &AtomicU64) {
        for live in self.channel.iter().chain([&self.session]) {
            let c = &live.counters;
            c.record(pick(c), n);
        }
    }
}

impl Observer for Counting {
    fn to_upstream(&self, data: &[u8]) {
        self.count(data.len(), |c| &c.upstream_bytes);
        if let Some(audit) = &self.audit {
            audit.requests(data);
        }
    }

    fn to_downstream(&self, data: &[u8]) {
        self.count(data.len(), |c| &c.downstream_bytes);
        if let Some(audit) = &self.audit {
            audit.replies(data);
        }
    }
}
