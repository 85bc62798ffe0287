//! The channels of an authenticated session. Each is a connection of its own: admitted at
//! its open (counted against `max_connections` and the listener's limits), let through by
//! the route's `allow`, then relayed under the route's timeouts and re-checks, registered,
//! and ended with its own access-log line — by the same stages as any connection. Its
//! bytes count on the session too (the session's idle timer, its access-log line) and feed
//! the SFTP audit.

use super::{Gate, UPSTREAM_ANSWER};
use crate::accept::admission::{self, Slot};
use crate::attributes::{Attributes, Protocol, SpanSlot, SshChannel, next_id};
use crate::end::{self, registry::Live, registry::Upstream};
use crate::route::Route;
use ssh::audit::SftpAudit;
use ssh::channel::{Ended, Observer, relay, upstream_reply};
use ssh::russh::server::{Msg, Session};
use ssh::russh::{self, Channel, ChannelId, ChannelMsg, client};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use telemetry::trace::SpanKind;
use tokio_util::sync::CancellationToken;

/// Bytes (each message counted 64 more) a client may send on a channel before the request
/// that starts it: kept and passed on once it starts; beyond, the channel is closed.
const EARLY_DATA_LIMIT: usize = 64 * 1024;

/// A channel opened on both sides, waiting for the request that starts it; a connection
/// (holding its admission slot) from its open.
pub(super) struct Pending {
    pub down: Channel<Msg>,
    pub up: Channel<client::Msg>,
    pub slot: Slot,
    /// What the client sent before the channel started, in order (see `early_data`).
    pub early: Vec<ChannelMsg>,
    pub early_bytes: usize,
}

impl Pending {
    pub(super) fn new(down: Channel<Msg>, up: Channel<client::Msg>, slot: Slot) -> Pending {
        Pending {
            down,
            up,
            slot,
            early: Vec::new(),
            early_bytes: 0,
        }
    }
}

/// The channel's next queued message, if one is there now.
fn queued(channel: &mut Channel<Msg>) -> Option<ChannelMsg> {
    use std::task::{Context, Poll, Waker};
    let mut next = std::pin::pin!(channel.wait());
    match next.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(message) => message,
        Poll::Pending => None,
    }
}

impl Gate {
    pub(super) fn allow(&self) -> config::SshAllow {
        self.admitted
            .as_ref()
            .and_then(|a| a.route.config.ssh.as_ref())
            .map(|s| s.allow)
            .unwrap_or_default()
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

    /// Data on a channel not started yet. russh queues it for the channel, whose queue
    /// nobody reads before it starts: once full, the whole session would stall. Taken off
    /// the queue and kept for the start, bounded; beyond the bound the channel is closed.
    pub(super) async fn early_data(&mut self, id: ChannelId, session: &mut Session) {
        let Some(pending) = self.pending.get_mut(&id) else {
            return;
        };
        while let Some(message) = queued(&mut pending.down) {
            pending.early_bytes += 64
                + match &message {
                    ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
                    _ => 0,
                };
            pending.early.push(message);
        }
        if pending.early_bytes <= EARLY_DATA_LIMIT {
            return;
        }
        let pending = self.pending.remove(&id).expect("pending");
        self.listener.stats.ssh.channel("early_data", false);
        tracing::warn!(
            id = self.attributes.id,
            "ssh channel closed: over {EARLY_DATA_LIMIT} bytes before it started"
        );
        let _ = session.close(id);
        let _ = pending.up.close().await;
    }

    /// Answers a request of a channel not started yet: passed upstream when `allowed`,
    /// and the channel started (relayed) when `starts` and the upstream said yes.
    pub(super) async fn request(
        &mut self,
        id: ChannelId,
        kind: &'static str,
        allowed: bool,
        starts: bool,
        session: &mut Session,
        send: impl AsyncFnOnce(&Channel<client::Msg>) -> Result<(), russh::Error>,
    ) -> Result<(), russh::Error> {
        self.listener.stats.ssh.channel(kind, allowed);
        let Some(pending) = self.pending.get_mut(&id).filter(|_| allowed) else {
            if !allowed {
                let user = self.admitted.as_ref().and_then(|a| a.attributes.ssh());
                let user = user.map(|l| l.user.clone());
                tracing::info!(
                    id = self.attributes.id,
                    user,
                    request = kind,
                    "ssh channel request denied by the route"
                );
            }
            return session.channel_failure(id);
        };
        // Bounded: the client's session waits for this answer.
        let up = &mut pending.up;
        let asked = async { send(up).await.is_ok() && upstream_reply(up).await };
        let ok = tokio::time::timeout(UPSTREAM_ANSWER, asked)
            .await
            .unwrap_or(false);
        if !ok {
            return session.channel_failure(id);
        }
        session.channel_success(id)?;
        if starts && let Some(pending) = self.pending.remove(&id) {
            self.start(pending, kind, session);
        }
        Ok(())
    }

    /// Runs a started channel as a connection, in a task of its own.
    pub(super) fn start(&self, pending: Pending, kind: &'static str, session: &Session) {
        let (Some(live), Some(admitted)) = (self.live.clone(), self.admitted.as_ref()) else {
            return;
        };
        let route = admitted.route.clone();
        let audit = match kind {
            "sftp" => self.server.routes[&route.config.name].audit.clone(),
            _ => None,
        }
        .map(|log| audit(log, &live, &route));
        let channel = ChannelTask {
            attributes: channel_attributes(&live.attributes, kind),
            observer: Counting {
                channel: None,
                session: live,
                audit,
            },
            route,
            context: self.context.clone(),
            server: session.handle(),
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
            early_bytes: _,
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
        end::finish(
            registration,
            &route,
            &result,
            self.context.access_log.as_ref(),
        );
        drop(slot);
    }
}

fn shutting_down(result: &Result<(), crate::error::Error>) -> bool {
    matches!(result, Err(e) if e.kind == crate::error::Kind::Shutdown)
}

/// Passes on to the upstream what the client sent before the channel started.
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
            // Requests were answered as they came.
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
