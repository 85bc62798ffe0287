//! The gateway's snapshot interface: what the admin API (and anything else outside the
//! pipeline) may read of clusters and live connections, as plain serializable values taken
//! at one moment — never the stages' own structures.

use super::Gateway;
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;

#[derive(Serialize)]
pub struct Cluster {
    pub name: String,
    pub load_balancing: config::LoadBalancing,
    /// No endpoint of the most preferred priority can take a connection.
    pub failover_active: bool,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Serialize)]
pub struct Endpoint {
    pub address: String,
    pub priority: u32,
    pub healthy: bool,
    pub ejected: bool,
    pub active_connections: u64,
    pub connections: u64,
    pub connect_attempts: u64,
    pub connect_failures: u64,
}

impl Gateway {
    /// Every cluster with its endpoints' state and counts, in config order.
    pub fn clusters_snapshot(&self) -> Vec<Cluster> {
        let gateway = self;
        let config = gateway.config();
        config
            .clusters
            .iter()
            .filter_map(|c| gateway.cluster(&c.name))
            .map(|c| Cluster {
                name: c.name().to_string(),
                load_balancing: c.config.load_balancing,
                failover_active: c.failed_over(),
                endpoints: c
                    .endpoints
                    .iter()
                    .map(|e| Endpoint {
                        address: e.address.clone(),
                        priority: e.priority,
                        healthy: e.is_healthy(),
                        ejected: e.is_ejected(),
                        active_connections: e.stats.active.load(Relaxed),
                        connections: e.stats.connections.load(Relaxed),
                        connect_attempts: e.stats.connect_attempts.load(Relaxed),
                        connect_failures: e.stats.connect_failures.load(Relaxed),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Every live connection: who, where to, for how long, bytes so far; oldest first.
    pub fn connections_snapshot(&self) -> Vec<Connection> {
        connections(self)
    }
}

#[derive(Serialize)]
pub struct Connection {
    pub id: u64,
    pub listener: String,
    pub source: String,
    pub destination: String,
    pub route: Option<String>,
    pub cluster: Option<String>,
    pub endpoint: Option<String>,
    pub age_ms: u64,
    pub bytes_upstream: u64,
    pub bytes_downstream: u64,
    /// The server name asked for (inspected or terminated).
    pub sni: Option<String>,
    /// The TLS session the gateway terminated: `TLSv1_3`, `TLS13_AES_256_GCM_SHA384`...
    pub tls_version: Option<String>,
    pub tls_cipher: Option<String>,
    /// The SPIFFE ID and subject of the client's verified certificate.
    pub peer_spiffe_id: Option<String>,
    pub peer_subject: Option<String>,
    /// The SSH login; on a channel, its kind (`sftp`, `exec`...) and the session's id.
    pub ssh_user: Option<String>,
    pub ssh_channel: Option<&'static str>,
    pub ssh_session: Option<u64>,
    /// The trace of the connection's span (tracing on), and the span now (a continued
    /// span's id changes every `span_max_duration`).
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

fn connections(gateway: &Gateway) -> Vec<Connection> {
    gateway
        .registry()
        .snapshot()
        .iter()
        .map(|l| connection(l))
        .collect()
}

/// What the admin API shows of one live connection.
pub(super) fn connection(live: &crate::end::registry::Live) -> Connection {
    let upstream = live.upstream();
    let session = live.attributes.session.as_deref();
    let peer = session.and_then(|s| s.peer.as_ref());
    let login = live.attributes.ssh();
    let channel = login.and_then(|l| l.channel.as_ref());
    let span = live.attributes.span.context();
    Connection {
        id: live.attributes.id,
        listener: live.attributes.listener.to_string(),
        source: live.attributes.source.to_string(),
        destination: live.attributes.destination.to_string(),
        route: upstream.map(|u| u.route.config.name.clone()),
        cluster: upstream.map(|u| u.cluster.name().to_string()),
        endpoint: upstream.map(|u| u.endpoint.address.clone()),
        age_ms: live.counters.started().elapsed().as_millis() as u64,
        bytes_upstream: live.counters.upstream_bytes.load(Relaxed),
        bytes_downstream: live.counters.downstream_bytes.load(Relaxed),
        sni: live.attributes.sni().map(str::to_string),
        tls_version: session.map(|s| s.version.clone()),
        tls_cipher: session.map(|s| s.cipher.clone()),
        peer_spiffe_id: peer.and_then(|p| p.spiffe_id.clone()),
        peer_subject: peer.map(|p| p.subject.clone()),
        ssh_user: login.map(|l| l.user.clone()),
        ssh_channel: channel.map(|c| c.kind),
        ssh_session: channel.map(|c| c.session),
        trace_id: span.as_ref().map(|s| s.trace_id_hex()),
        span_id: span.as_ref().map(|s| s.span_id_hex()),
    }
}
