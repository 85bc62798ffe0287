//! The gateway at a glance, for the status page: listeners with their routes, clusters with
//! each endpoint's state, the longest-lived connections and the last reload — one value,
//! taken at one moment, for one of two audiences: the network-facing probe listener sees
//! counts, states and configured names only; the control API also sees who each connection
//! is (source, server name, identity) and why a reload was refused.

use super::Gateway;
use super::reload::LastReload;
use super::snapshot::{Cluster, connection};
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
    pub longest_lived: Vec<LongLived>,
    pub last_reload: Option<LastReload>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

/// Who reads the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The probe listener, reachable from the network: nothing a client told us.
    Public,
    /// The control API: everything.
    Operator,
}

/// One long-lived connection: where and how much; who, for operators only.
#[derive(Serialize)]
pub struct LongLived {
    pub id: u64,
    pub listener: String,
    pub route: Option<String>,
    pub endpoint: Option<String>,
    pub age_ms: u64,
    pub bytes_upstream: u64,
    pub bytes_downstream: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The client's verified SPIFFE ID, SSH user or server name, whichever it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
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
    pub fn status(&self, audience: Audience) -> Status {
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
        let operator = audience == Audience::Operator;
        let longest_lived = (self.registry().oldest(LONGEST_LIVED).iter())
            .map(|live| {
                let c = connection(live);
                let identity = c.peer_spiffe_id.or(c.ssh_user).or(c.sni);
                LongLived {
                    id: c.id,
                    listener: c.listener,
                    route: c.route,
                    endpoint: c.endpoint,
                    age_ms: c.age_ms,
                    bytes_upstream: c.bytes_upstream,
                    bytes_downstream: c.bytes_downstream,
                    source: Some(c.source).filter(|_| operator),
                    identity: identity.filter(|_| operator),
                }
            })
            .collect();
        let last_reload = self.reloads.last().map(|mut last| {
            if !operator && !last.ok {
                // The refusal names files and values of the configuration.
                last.detail = "refused: the reason is in the log and on the control API".into();
            }
            last
        });
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: self.started.elapsed().as_secs(),
            draining: self.is_draining(),
            active_connections: self.registry().len(),
            listeners,
            clusters: self.clusters_snapshot(),
            longest_lived,
            last_reload,
            reloads_ok: self.reloads.ok.load(Relaxed),
            reloads_failed: self.reloads.failed.load(Relaxed),
        }
    }
}
