//! Binding a listener and accepting connections: socket options, the connection limit,
//! and handing each connection to the pipeline.

use crate::connection;
use crate::routing::RouteTable;
use crate::socket;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Default)]
pub struct ListenerStats {
    pub accepted: AtomicU64,
    /// Connections being handled now.
    pub active: AtomicU64,
    pub rejected_limit: AtomicU64,
    pub no_route: AtomicU64,
}

/// What the accept loop and every connection of one listener share.
#[derive(Debug)]
pub struct Listener {
    pub config: config::Listener,
    pub name: Arc<str>,
    pub routes: RouteTable,
    pub stats: ListenerStats,
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
    socket.listen(config.backlog.min(i32::MAX as u32) as i32)?;
    Ok(socket.into())
}

/// Holds a slot of the listener's `active` count for one connection.
pub(crate) struct ActiveGuard(pub(crate) Arc<Listener>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.stats.active.fetch_sub(1, Relaxed);
    }
}

pub(crate) struct Context {
    pub stop_accepting: CancellationToken,
    pub close_connections: CancellationToken,
    pub connections: TaskTracker,
}

pub(crate) async fn accept_loop(
    socket: TcpListener,
    listener: Arc<Listener>,
    context: Arc<Context>,
) {
    let local = socket.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            _ = context.stop_accepting.cancelled() => break,
            accepted = socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors (or similar): back off instead of spinning.
                tracing::warn!(listener = %listener.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        listener.stats.accepted.fetch_add(1, Relaxed);
        let active = listener.stats.active.fetch_add(1, Relaxed);
        let guard = ActiveGuard(listener.clone());
        if listener
            .config
            .connection_limit
            .is_some_and(|limit| active >= limit as u64)
        {
            listener.stats.rejected_limit.fetch_add(1, Relaxed);
            tracing::warn!(
                listener = %listener.name,
                source = %peer,
                limit = listener.config.connection_limit,
                "connection refused: listener connection limit reached"
            );
            drop(stream);
            continue;
        }
        if let Err(e) = socket::apply(&stream, &listener.config.socket) {
            tracing::debug!(listener = %listener.name, error = %e, "socket options");
        }
        let destination = stream
            .local_addr()
            .ok()
            .or(local)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let attributes = connection::accepted(&listener.name, peer, destination);
        context.connections.spawn(connection::serve(
            stream,
            attributes,
            guard,
            context.clone(),
        ));
    }
    drop(socket);
    tracing::info!(listener = %listener.name, "stopped accepting");
}
