//! Which channel requests of an authenticated session go through (the route's `allow`),
//! and the relay of each started channel, counted on the connection and fed to the SFTP
//! audit.

use super::{Gate, UPSTREAM_ANSWER};
use crate::end::registry::Live;
use ssh::audit::SftpAudit;
use ssh::channel::{Observer, relay, upstream_reply};
use ssh::russh::server::{Msg, Session};
use ssh::russh::{self, Channel, ChannelId, client};
use std::sync::Arc;

impl Gate {
    pub(super) fn allow(&self) -> config::SshAllow {
        self.admitted
            .as_ref()
            .and_then(|a| a.route.config.ssh.as_ref())
            .map(|s| s.allow)
            .unwrap_or_default()
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
    pub(super) fn start(
        &self,
        down: Channel<Msg>,
        up: Channel<client::Msg>,
        sftp: bool,
        session: &Session,
    ) {
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
