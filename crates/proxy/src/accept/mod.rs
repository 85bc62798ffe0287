//! The accept stage: binding a listener, accepting connections (socket options), admission
//! ([`admission`]: the gateway's, the listener's and the per-source limits, the accept
//! rate), and handing each admitted connection to its driver. Also what the accept loop
//! and every connection of a listener share ([`Listener`]) and what the whole gateway's
//! connections share ([`Context`]).

pub mod admission;
mod failures;
mod metrics;

use crate::attributes::Attributes;
use crate::end::access_log::AccessLog;
use crate::end::registry::Registry;
use crate::route::RouteTable;
use crate::socket;
use admission::Slot;
use admission::{GlobalLimit, RateLimiter, SourceCounts};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections its socket accepted (tunnels inside them are not counted here).
    pub accepted: AtomicU64,
    /// Connections being handled now, tunnels inside them included.
    pub active: AtomicU64,
    /// Refused by the listener's `connection_limit`.
    pub rejected_limit: AtomicU64,
    pub rejected_global_limit: AtomicU64,
    pub rejected_source_limit: AtomicU64,
    pub rejected_accept_rate: AtomicU64,
    /// accept(2) failures (`causeway_listener_accept_errors_total`).
    pub accept_errors: failures::AcceptErrors,
    pub no_route: AtomicU64,
    /// Closed because inspection failed: too slow, malformed, or closed before it ended.
    pub inspection_failed: AtomicU64,
    /// Closed because the TLS handshake of a terminating route failed or was refused.
    pub tls_handshake_failed: AtomicU64,
    /// Closed because of the PROXY header: from an untrusted source, missing, malformed.
    pub proxy_protocol_failed: AtomicU64,
    /// Refused by authorization (rules or the external service, or its failure mode).
    pub authz_denied: AtomicU64,
    pub(crate) sources: SourceCounts,
    /// FIX sessions and MQ connections by route and protocol labels.
    pub sessions: crate::end::sessions::SessionCounts,
    /// SSH connections that did not authenticate (or timed out doing so).
    pub ssh_auth_failed: AtomicU64,
    /// SSH logins, upstream failures and channel requests.
    pub ssh: crate::terminate::ssh::SshStats,
}

/// What the accept loop and every connection of one listener share.
#[derive(Debug)]
pub struct Listener {
    pub config: config::Listener,
    pub name: Arc<str>,
    pub routes: RouteTable,
    /// The SSH server of an SSH listener (its keys read from files).
    pub ssh: Option<Arc<crate::terminate::ssh::SshServer>>,
    /// Shared by every version of the listener across reloads.
    pub stats: Arc<ListenerStats>,
}

/// Creates the listening socket (bound and listening, not yet accepting).
pub fn bind(config: &config::Listener) -> io::Result<std::net::TcpListener> {
    let address = config.address;
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if config.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    configure(&socket, config)?;
    Ok(socket.into())
}

/// Sets what can change on a listening socket without rebinding it: the options accepted
/// connections inherit, and the backlog (listen(2) again updates it).
pub(crate) fn configure(socket: &Socket, config: &config::Listener) -> io::Result<()> {
    // (Called on a fresh socket at bind, and on a listening one when a reload changes them.)
    socket::apply(socket, &config.socket)?;
    socket.listen(config.backlog.min(i32::MAX as u32) as i32)
}

/// What every accept loop and connection of a gateway shares.
pub(crate) struct Context {
    /// Parent of every listener's stop token.
    pub stop_accepting: CancellationToken,
    pub registry: Arc<Registry>,
    pub connections: TaskTracker,
    pub access_log: Option<AccessLog>,
    pub global: Arc<GlobalLimit>,
    /// TLS handshakes, terminated and originated, by result.
    pub handshakes: Arc<tls::HandshakeStats>,
    /// Where connections' spans go; `None`: tracing is off.
    pub tracer: Option<telemetry::trace::Tracer>,
    /// `relay.splice`: plain TCP relays forward with splice(2); changes on reload.
    pub splice: std::sync::atomic::AtomicBool,
}

/// Accepts until `stop`; each connection gets the listener's settings current at accept,
/// and is handed to `drive` (the gateway's front ends: the accept stage knows none of them).
pub(crate) async fn accept_loop<D, F>(
    socket: TcpListener,
    mut updates: watch::Receiver<Arc<Listener>>,
    stop: CancellationToken,
    context: Arc<Context>,
    drive: D,
) where
    D: Fn(TcpStream, Box<Attributes>, Slot, Arc<Context>) -> F + Copy,
    F: Future<Output = ()> + Send + 'static,
{
    let name = updates.borrow().name.clone();
    let mut handing = HandOver {
        rate: RateLimiter::new(),
        // Bound to one address, every connection's destination is that address: no
        // getsockname per accept. Bound to a wildcard, ask each connection.
        fixed_destination: socket
            .local_addr()
            .ok()
            .filter(|a| !a.ip().is_unspecified()),
        context,
        drive,
    };
    let mut failures = failures::FailureStreak::default();
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            changed = updates.changed() => {
                if changed.is_err() {
                    break;
                }
                let listener = updates.borrow_and_update().clone();
                if let Err(e) = configure(&SockRef::from(&socket), &listener.config) {
                    tracing::warn!(listener = %name, error = %e, "cannot change the listening socket's options");
                }
                continue;
            }
            accepted = socket.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                failures.succeeded(&name);
                let listener = updates.borrow().clone();
                handing.hand_over(stream, peer, &listener);
            }
            Err(e) => {
                let stats = updates.borrow().stats.clone();
                if let Some(pause) = failures.failed(&e, &name, &stats) {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
    // Closing a listening socket resets the connections still in its queue: take them first.
    // (With SO_REUSEPORT, net.ipv4.tcp_migrate_req=1 also moves any that arrive in between
    // to the other listener of the group; see docs/operations.md.)
    let listener = updates.borrow().clone();
    while let Ok(Ok((stream, peer))) = tokio::time::timeout(Duration::ZERO, socket.accept()).await {
        handing.hand_over(stream, peer, &listener);
    }
    drop(socket);
    tracing::info!(listener = %name, "stopped accepting");
}

/// What the accept loop of one listener hands each connection over with.
struct HandOver<D> {
    rate: RateLimiter,
    fixed_destination: Option<std::net::SocketAddr>,
    context: Arc<Context>,
    drive: D,
}

impl<D, F> HandOver<D>
where
    D: Fn(TcpStream, Box<Attributes>, Slot, Arc<Context>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    /// Admission, then the connection's own task.
    fn hand_over(
        &mut self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        listener: &Arc<Listener>,
    ) {
        let context = &self.context;
        let rate = Some(&mut self.rate);
        listener
            .stats
            .accepted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A trusted balancer's client is counted per source once its header names it.
        let source = (!admission::sends_proxy_headers(listener, peer.ip())).then_some(peer.ip());
        let slot = match admission::admit(listener, &context.global, rate, source) {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::warn!(
                    listener = %listener.name,
                    source = %peer,
                    reason = refusal.reason(),
                    "connection refused: {}",
                    refusal.reason().replace('_', " ")
                );
                return;
            }
        };
        let destination = match self.fixed_destination {
            Some(address) => address,
            None => match stream.local_addr() {
                Ok(address) => address,
                Err(e) => {
                    tracing::debug!(listener = %listener.name, error = %e, "connection gone at accept");
                    return;
                }
            },
        };
        let attributes = crate::attributes::accepted(&listener.name, peer, destination);
        context
            .connections
            .spawn((self.drive)(stream, attributes, slot, context.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options set once on the listening socket reach every accepted connection.
    #[test]
    fn accepted_connections_inherit_nodelay_and_keepalive() {
        let config = config::parse(
            "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    tcp_keepalive: { time: 42s, interval: 7s, retries: 3 }\n    routes: [{ cluster: c }]\nclusters:\n  - { name: c, endpoints: [{ address: \"127.0.0.1:1\" }] }\n",
            "t",
        )
        .unwrap();
        let listener = bind(&config.listeners[0]).unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        listener.set_nonblocking(false).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let sock = socket2::SockRef::from(&accepted);
        assert!(sock.tcp_nodelay().unwrap());
        assert!(sock.keepalive().unwrap());
        assert_eq!(
            sock.tcp_keepalive_time().unwrap(),
            std::time::Duration::from_secs(42)
        );
        assert_eq!(
            sock.tcp_keepalive_interval().unwrap(),
            std::time::Duration::from_secs(7)
        );
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), 3);
    }
}
