//! A running gateway: listeners bound, clusters checking health, connections tracked, and
//! the graceful shutdown that lets live connections finish.

use crate::cluster::Cluster;
use crate::listener::{self, Context, Listener, ListenerStats};
use crate::routing::RouteTable;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
#[error("listener `{listener}` cannot listen on {address}: {source}")]
pub struct StartError {
    pub listener: String,
    pub address: SocketAddr,
    pub source: io::Error,
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections that ended by themselves within the drain timeout.
    pub drained: bool,
    /// Connections still open when the drain timeout ran out, and closed.
    pub closed: usize,
}

pub struct Gateway {
    listeners: Vec<(Arc<Listener>, SocketAddr)>,
    clusters: HashMap<String, Arc<Cluster>>,
    context: Arc<Context>,
    accept_loops: Vec<JoinHandle<()>>,
    drain_timeout: Duration,
    stop_health_checks: CancellationToken,
}

impl Gateway {
    /// Binds every listener and starts serving. Must be called inside a tokio runtime.
    pub fn start(config: &config::Config) -> Result<Gateway, StartError> {
        let stop_health_checks = CancellationToken::new();
        let context = Arc::new(Context {
            stop_accepting: CancellationToken::new(),
            close_connections: CancellationToken::new(),
            connections: TaskTracker::new(),
        });
        let clusters: HashMap<String, Arc<Cluster>> = config
            .clusters
            .iter()
            .map(|c| {
                let stop = stop_health_checks.child_token();
                let cluster = Cluster::start(c, stop, &context.close_connections);
                (c.name.clone(), cluster)
            })
            .collect();

        // Bind everything before accepting anywhere: a config either starts whole or not at all.
        let mut bound = Vec::new();
        for l in &config.listeners {
            let socket = listener::bind(l).map_err(|source| StartError {
                listener: l.name.clone(),
                address: l.address,
                source,
            })?;
            bound.push((l, socket));
        }
        let mut listeners = Vec::new();
        let mut accept_loops = Vec::new();
        for (l, socket) in bound {
            let socket =
                tokio::net::TcpListener::from_std(socket).map_err(|source| StartError {
                    listener: l.name.clone(),
                    address: l.address,
                    source,
                })?;
            let address = socket.local_addr().unwrap_or(l.address);
            let state = Arc::new(Listener {
                config: l.clone(),
                name: Arc::from(l.name.as_str()),
                routes: RouteTable::new(&l.routes, &clusters),
                stats: ListenerStats::default(),
            });
            tracing::info!(listener = %l.name, %address, "listening");
            accept_loops.push(tokio::spawn(listener::accept_loop(
                socket,
                state.clone(),
                context.clone(),
            )));
            listeners.push((state, address));
        }
        Ok(Gateway {
            listeners,
            clusters,
            context,
            accept_loops,
            drain_timeout: config.drain.timeout,
            stop_health_checks,
        })
    }

    /// The address a listener is bound to (its real port when configured with port 0).
    pub fn listener_address(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(l, _)| &*l.name == name)
            .map(|(_, a)| *a)
    }

    pub fn listeners(&self) -> impl Iterator<Item = (&str, SocketAddr)> {
        self.listeners.iter().map(|(l, a)| (&*l.name, *a))
    }

    pub fn listener_stats(&self, name: &str) -> Option<&ListenerStats> {
        self.listeners
            .iter()
            .find(|(l, _)| &*l.name == name)
            .map(|(l, _)| &l.stats)
    }

    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name)
    }

    /// Connections being handled now, across all listeners.
    pub fn active_connections(&self) -> usize {
        self.context.connections.len()
    }

    /// Stops accepting, gives live connections until the drain timeout to end by themselves,
    /// then closes the rest.
    pub async fn shutdown(self) -> ShutdownReport {
        self.context.stop_accepting.cancel();
        for accept_loop in self.accept_loops {
            let _ = accept_loop.await;
        }
        self.context.connections.close();
        let live = self.context.connections.len();
        tracing::info!(connections = live, timeout = ?self.drain_timeout, "draining");
        let drained = tokio::time::timeout(self.drain_timeout, self.context.connections.wait())
            .await
            .is_ok();
        let closed = self.context.connections.len();
        if !drained {
            tracing::warn!(
                connections = closed,
                "drain timeout reached: closing the remaining connections"
            );
            self.context.close_connections.cancel();
            self.context.connections.wait().await;
        }
        self.stop_health_checks.cancel();
        ShutdownReport { drained, closed }
    }
}
