//! A channel from its open to the request that starts it, in a task of its own: the
//! upstream twin opened, then each request the route allows passed upstream; the one that
//! starts the channel (exec, shell, a subsystem) is answered with the upstream's reply
//! through the session's handle. russh's session loop never waits for the upstream, so the
//! session's other channels keep flowing meanwhile.
//!
//! russh keeps one "wants a reply" flag per channel, set by each request as it arrives and
//! consumed by the answer, so an answer sent late is taken as the latest request's. Only
//! the starting request is answered from here: it is the last one before data flows (the
//! client waits for its answer). `env` and `pty-req` are answered by the session at once,
//! by the route, and passed upstream without asking for the upstream's answer. A window
//! change or signal the client sends before that answer is kept and passed on in order once
//! the channel starts; but it clears russh's flag, so that answer is then not sent (a
//! russh limit; the command's data still flows).
//!
//! Every wait (a send to either session, the upstream's answer) is bounded and gives up
//! when the session ends; meanwhile what the client sends is kept, within a bound, then no
//! longer read, so russh's bounded channel queue holds the client back. A wait given up
//! closes the channel on both sides: a late answer is never taken as another request's.

use super::channels::{Parts, Pending};
use crate::accept::admission::Slot;
use ssh::channel::upstream_reply;
use ssh::russh::server::{ChannelOpenHandle, Msg};
use ssh::russh::{self, Channel, ChannelMsg, ChannelOpenFailure, client};
use std::collections::VecDeque;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long the upstream may take to answer a channel open or request, and a send to
/// either session may wait for room (only this channel waits).
const UPSTREAM_ANSWER: Duration = Duration::from_secs(30);

/// Bytes (each message counted 64 more) a client may send on a channel before the request
/// that starts it: kept and passed on once it starts; beyond, the channel is closed. What
/// comes behind the starting request (OpenSSH sends stdin right behind `exec`, without
/// waiting) is kept up to the same bound, then no longer read until the channel starts:
/// russh's bounded channel queue holds the client back.
const EARLY_DATA_LIMIT: usize = 64 * 1024;

/// How much the client may have sent while its session's handle has no room for this
/// channel's answer. The session's loop makes room between the client's packets (this
/// task keeps reading them meanwhile, so the loop never waits for it); reached only by a
/// session stuck, then the wait ends at [`UPSTREAM_ANSWER`].
const HANDLE_WAIT_LIMIT: usize = 1024 * 1024;

/// How long closing a channel that never started may take (on each side).
const CLOSE: Duration = Duration::from_secs(2);

/// The channel the client opened.
pub(super) enum Open {
    Session,
    DirectTcpip {
        host: String,
        port: u32,
        originator: String,
        originator_port: u32,
    },
}

/// Whether the route's `allow` lets a request of `kind` through.
pub(super) fn allowed(allow: config::SshAllow, kind: &str) -> bool {
    match kind {
        "sftp" => allow.sftp,
        "exec" => allow.exec,
        "shell" => allow.shell,
        "pty" | "env" => allow.shell || allow.exec,
        _ => false,
    }
}

/// The kind of a request the channel's task passes upstream, and whether it starts the
/// channel.
fn kind_of(message: &ChannelMsg) -> Option<(&'static str, bool)> {
    match message {
        ChannelMsg::RequestSubsystem { name, .. } if name == "sftp" => Some(("sftp", true)),
        ChannelMsg::RequestSubsystem { .. } => Some(("subsystem", true)),
        ChannelMsg::Exec { .. } => Some(("exec", true)),
        ChannelMsg::RequestShell { .. } => Some(("shell", true)),
        ChannelMsg::SetEnv { .. } => Some(("env", false)),
        ChannelMsg::RequestPty { .. } => Some(("pty", false)),
        _ => None,
    }
}

/// A channel between its open and its start.
struct Waiting {
    inbox: Inbox,
    up: Channel<client::Msg>,
    slot: Slot,
    early: Vec<ChannelMsg>,
}

/// The client's side of a channel that has not started.
struct Inbox {
    down: Channel<Msg>,
    /// What the client sent while the task waited, still to handle.
    backlog: VecDeque<ChannelMsg>,
    received: Received,
}

/// Why a wait was given up.
enum Stop {
    /// The client closed the channel (or its session is gone).
    Closed,
    /// The session ended.
    Ended,
    /// No answer, or no room, within [`UPSTREAM_ANSWER`]: a session stuck.
    Late,
}

impl Inbox {
    /// Waits for `work` (a send to either session, the upstream's answer), at most
    /// [`UPSTREAM_ANSWER`] and until the session `ended` or the client closes the channel;
    /// meanwhile keeps what the client sends while it sent at most `limit`, then no longer
    /// reads it (russh's bounded channel queue holds the client back).
    async fn during<T>(
        &mut self,
        ended: &CancellationToken,
        limit: usize,
        work: impl Future<Output = T>,
    ) -> Result<T, Stop> {
        let mut work = std::pin::pin!(work);
        let deadline = tokio::time::sleep(UPSTREAM_ANSWER);
        let mut deadline = std::pin::pin!(deadline);
        loop {
            tokio::select! {
                done = &mut work => return Ok(done),
                () = &mut deadline => return Err(Stop::Late),
                () = ended.cancelled() => return Err(Stop::Ended),
                message = self.down.wait(), if self.received.bytes <= limit => match message {
                    Some(ChannelMsg::Close) | None => return Err(Stop::Closed),
                    Some(message) => {
                        self.received.count(&message);
                        self.backlog.push_back(message);
                    }
                },
            }
        }
    }
}

/// What the client sent before its channel started.
#[derive(Default)]
struct Received {
    bytes: usize,
    /// A request that starts the channel was sent: what comes behind it is held back, not
    /// refused.
    starting: bool,
}

impl Received {
    /// Counts a message.
    fn count(&mut self, message: &ChannelMsg) {
        self.bytes += 64
            + match message {
                ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
                _ => 0,
            };
        if matches!(kind_of(message), Some((_, true))) {
            self.starting = true;
        }
    }

    /// Over the bound before any request that starts the channel.
    fn too_early(&self) -> bool {
        !self.starting && self.bytes > EARLY_DATA_LIMIT
    }
}

impl Parts {
    /// Opens the channel's upstream twin, answers the client's open, then (a session
    /// channel) waits for the request that starts it.
    pub(super) async fn open(
        self,
        down: Channel<Msg>,
        reply: ChannelOpenHandle,
        open: Open,
        slot: Slot,
    ) {
        let upstream = self.upstream.clone();
        let opened = async {
            match &open {
                Open::Session => upstream.channel_open_session().await,
                Open::DirectTcpip {
                    host,
                    port,
                    originator,
                    originator_port,
                } => {
                    let (host, originator) = (host.clone(), originator.clone());
                    (upstream.channel_open_direct_tcpip(host, *port, originator, *originator_port))
                        .await
                }
            }
        };
        let opened = tokio::select! {
            opened = tokio::time::timeout(UPSTREAM_ANSWER, opened) => opened,
            // The session ended meanwhile: the open is refused as the handle drops.
            () = self.shared.ended.cancelled() => return,
        };
        let up = match opened.unwrap_or(Err(russh::Error::ConnectionTimeout)) {
            Ok(up) => up,
            Err(e) => {
                let id = self.live.attributes.id;
                tracing::warn!(id, "ssh upstream refused a channel: {e}");
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return;
            }
        };
        reply.accept().await;
        let waiting = Waiting {
            inbox: Inbox {
                down,
                backlog: VecDeque::new(),
                received: Received::default(),
            },
            up,
            slot,
            early: Vec::new(),
        };
        match open {
            Open::DirectTcpip { .. } => self.start(waiting.started(), "port_forwarding"),
            Open::Session => self.until_started(waiting).await,
        }
    }

    /// Handles what the client sends until a request starts the channel (then relayed),
    /// or the channel or its session ends.
    async fn until_started(&self, mut w: Waiting) {
        let ended = &self.shared.ended;
        loop {
            let message = match w.inbox.backlog.pop_front() {
                Some(message) => Some(message),
                None => {
                    let message = tokio::select! {
                        message = w.inbox.down.wait() => message,
                        () = ended.cancelled() => None,
                    };
                    if let Some(m) = &message {
                        w.inbox.received.count(m);
                    }
                    message
                }
            };
            let Some(message) = message else {
                return close_upstream(w.up).await;
            };
            if w.inbox.received.too_early() {
                return self.too_early(w).await;
            }
            match message {
                ChannelMsg::Close => return close_upstream(w.up).await,
                ChannelMsg::Data { .. }
                | ChannelMsg::ExtendedData { .. }
                | ChannelMsg::Eof
                | ChannelMsg::WindowChange { .. }
                | ChannelMsg::Signal { .. } => {
                    w.early.push(message);
                }
                message => {
                    let Some((kind, starts)) = kind_of(&message) else {
                        continue;
                    };
                    // Refused ones were answered by the session (`refuse_unless_allowed`).
                    if !allowed(self.allow, kind) {
                        continue;
                    }
                    if !starts {
                        // Answered by the session, by the route; the upstream's answer is
                        // not asked for (it could not be told from the next request's).
                        let sent = forward(&w.up, message);
                        match w.inbox.during(ended, EARLY_DATA_LIMIT, sent).await {
                            Ok(Ok(())) => continue,
                            Ok(Err(_)) => return self.abandon(w, Stop::Late).await,
                            Err(stop) => return self.abandon(w, stop).await,
                        }
                    }
                    let ok = match ask(&mut w, message, ended).await {
                        Ok(ok) => ok,
                        Err(stop) => return self.abandon(w, stop).await,
                    };
                    let id = w.inbox.down.id();
                    // Started before the client hears so: a pty or env request it sends
                    // next is refused.
                    let started = &self.shared.started;
                    if ok {
                        started.lock().unwrap().insert(id);
                    }
                    let answer = async {
                        match ok {
                            true => self.handle.channel_success(id).await,
                            false => self.handle.channel_failure(id).await,
                        }
                    };
                    if let Err(stop) = w.inbox.during(ended, HANDLE_WAIT_LIMIT, answer).await {
                        started.lock().unwrap().remove(&id);
                        return self.abandon(w, stop).await;
                    }
                    if ok {
                        return self.start(w.started(), kind);
                    }
                    // Refused: what the client sends next is counted as early again.
                    let next = |m: &ChannelMsg| matches!(kind_of(m), Some((_, true)));
                    w.inbox.received.starting = w.inbox.backlog.iter().any(next);
                }
            }
        }
    }

    /// More than [`EARLY_DATA_LIMIT`] before the channel started: closed on both sides.
    async fn too_early(&self, w: Waiting) {
        self.listener.stats.ssh.channel("early_data", false);
        tracing::warn!(
            id = self.live.attributes.id,
            "ssh channel closed: over {EARLY_DATA_LIMIT} bytes before it started"
        );
        self.close_both(w).await;
    }

    /// A wait given up: the channel is closed on both sides (the client's unless it closed
    /// it or the session ended), so a late answer is never taken as another request's.
    async fn abandon(&self, w: Waiting, stop: Stop) {
        match stop {
            Stop::Late => {
                tracing::warn!(
                    id = self.live.attributes.id,
                    "ssh channel closed: no answer, or no room to send one, within {UPSTREAM_ANSWER:?}"
                );
                self.close_both(w).await;
            }
            Stop::Closed | Stop::Ended => close_upstream(w.up).await,
        }
    }

    /// A channel that never started, closed on both sides (bounded). The client's side is
    /// no longer read first: a session loop waiting to queue a message for it goes on.
    async fn close_both(&self, w: Waiting) {
        let id = w.inbox.down.id();
        drop(w.inbox);
        let _ = tokio::time::timeout(CLOSE, self.handle.close(id)).await;
        close_upstream(w.up).await;
    }
}

impl Waiting {
    /// The channel as it starts: what the client sent meanwhile goes first.
    fn started(mut self) -> Pending {
        self.early.extend(self.inbox.backlog);
        Pending {
            down: self.inbox.down,
            up: self.up,
            slot: self.slot,
            early: self.early,
        }
    }
}

/// Passes a request that starts the channel upstream and waits for its answer, keeping
/// what the client sends meanwhile (OpenSSH sends stdin right behind `exec`, without
/// waiting): up to [`EARLY_DATA_LIMIT`], then no longer read. Ok(false): refused (or the
/// upstream's channel is gone).
async fn ask(
    w: &mut Waiting,
    message: ChannelMsg,
    ended: &CancellationToken,
) -> Result<bool, Stop> {
    let Waiting { inbox, up, .. } = w;
    let sent = async {
        match message {
            ChannelMsg::Exec { command, .. } => up.exec(true, command).await,
            ChannelMsg::RequestSubsystem { name, .. } => up.request_subsystem(true, name).await,
            ChannelMsg::RequestShell { .. } => up.request_shell(true).await,
            _ => Err(russh::Error::Inconsistent),
        }
    };
    if inbox.during(ended, EARLY_DATA_LIMIT, sent).await?.is_err() {
        return Ok(false);
    }
    inbox
        .during(ended, EARLY_DATA_LIMIT, upstream_reply(up))
        .await
}

/// Passes an `env` or `pty-req` upstream, not asking for its answer.
async fn forward(up: &Channel<client::Msg>, message: ChannelMsg) -> Result<(), russh::Error> {
    match message {
        ChannelMsg::SetEnv {
            variable_name,
            variable_value,
            ..
        } => up.set_env(false, variable_name, variable_value).await,
        ChannelMsg::RequestPty {
            term,
            col_width,
            row_height,
            pix_width,
            pix_height,
            terminal_modes,
            ..
        } => {
            up.request_pty(
                false,
                &term,
                col_width,
                row_height,
                pix_width,
                pix_height,
                &terminal_modes,
            )
            .await
        }
        _ => Ok(()),
    }
}

/// The upstream twin of a channel that never started goes too (bounded: its session may
/// be stuck).
async fn close_upstream(up: Channel<client::Msg>) {
    let _ = tokio::time::timeout(CLOSE, up.close()).await;
}
