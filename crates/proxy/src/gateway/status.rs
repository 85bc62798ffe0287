//! The gateway at a glance, for the status page: listeners with their routes, clusters with
//! each endpoint's state, the longest-lived connections and the last reload — one value,
//! taken at one moment.

use super::Gateway;
use super::reload::LastReload;
use super::snapshot::{Cluster, Connection};
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;

/// How many of the oldest connections the page lists.
const LONGEST_LIVED: usize = 10;

#[derive(Serialize)]
pub struct Status {
    pub version: &'static str,
    pub uptime_s: u64,
    pub draining: bool,
    pub active_connections: usize,
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
    /// The oldest live connections, oldest first.
    pub longest_lived: Vec<Connection>,
    pub last_reload: Option<LastReload>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

#[derive(Serialize)]
pub struct Listener {
    pub name: String,
    pub address: String,
    pub protocol: config::ListenerProtocol,
    pub active_connections: u64,
    pub accepted: u64,
    pub routes: Vec<Route>,
}

#[derive(Serialize)]
pub struct Route {
    pub name: String,
    pub cluster: String,
    pub connections: u64,
}

impl Gateway {
    pub fn status(&self) -> Status {
        let addresses = self.listeners();
        let listeners = self
            .listener_states()
            .iter()
            .map(|l| Listener {
                name: l.name.to_string(),
                address: (addresses.iter().find(|(n, _)| **n == *l.name))
                    .map_or_else(|| l.config.address.to_string(), |(_, a)| a.to_string()),
                protocol: l.config.protocol,
                active_connections: l.stats.active.load(Relaxed),
                accepted: l.stats.accepted.load(Relaxed),
                routes: (l.routes.routes().iter())
                    .map(|r| Route {
                        name: r.config.name.clone(),
                        cluster: r.cluster.name().to_string(),
                        connections: r.connections.load(Relaxed),
                    })
                    .collect(),
            })
            .collect();
        let mut connections = self.connections_snapshot();
        connections.truncate(LONGEST_LIVED);
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: self.started.elapsed().as_secs(),
            draining: self.is_draining(),
            active_connections: self.registry().len(),
            listeners,
            clusters: self.clusters_snapshot(),
            longest_lived: connections,
            last_reload: self.reloads.last(),
            reloads_ok: self.reloads.ok.load(Relaxed),
            reloads_failed: self.reloads.failed.load(Relaxed),
        }
    }
}
