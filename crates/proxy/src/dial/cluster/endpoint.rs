//! One upstream address: its health, its passive-ejection state, its counters, and the
//! token that closes its connections on failback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct EndpointStats {
    pub connect_attempts: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Connections relaying through this endpoint now.
    pub active: AtomicU64,
    pub connections: AtomicU64,
    pub health_checks_passed: AtomicU64,
    pub health_checks_failed: AtomicU64,
    pub ejections: AtomicU64,
    pub health_transitions: AtomicU64,
    /// Bytes of connections that have ended (live ones are counted in the registry).
    pub closed_bytes_upstream: AtomicU64,
    pub closed_bytes_downstream: AtomicU64,
}

#[derive(Debug)]
pub struct Endpoint {
    pub address: String,
    /// `address` when it is an IP address, parsed once; `None` for a host name.
    pub(crate) socket_address: Option<std::net::SocketAddr>,
    pub priority: u32,
    /// Carried over to the endpoint of the same address in the cluster a reload replaces
    /// this one's with, so its counters go on (an exported counter never goes back).
    pub stats: std::sync::Arc<EndpointStats>,
    /// As the active health check last decided; true when there is no health check.
    healthy: AtomicBool,
    consecutive_connect_failures: AtomicU32,
    /// Milliseconds after `epoch` until which passive ejection keeps the endpoint out; 0: never.
    ejected_until_ms: AtomicU64,
    epoch: Instant,
}

impl Endpoint {
    /// `stats`: the counts of the endpoint this one replaces, or none.
    pub(crate) fn new(
        config: &config::Endpoint,
        stats: Option<std::sync::Arc<EndpointStats>>,
    ) -> Self {
        Endpoint {
            address: config.address.clone(),
            socket_address: config.address.parse().ok(),
            priority: config.priority,
            stats: stats.unwrap_or_default(),
            healthy: AtomicBool::new(true),
            consecutive_connect_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Relaxed);
        until != 0 && self.epoch.elapsed().as_millis() < until as u128
    }

    /// Healthy and not ejected: eligible for new connections.
    pub fn is_available(&self) -> bool {
        self.is_healthy() && !self.is_ejected()
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Relaxed);
        if healthy {
            self.ejected_until_ms.store(0, Relaxed);
            self.consecutive_connect_failures.store(0, Relaxed);
        }
    }

    /// Ends a passive ejection early (a health check passed); true when one was in effect.
    pub(crate) fn end_ejection(&self) -> bool {
        let until = self.ejected_until_ms.swap(0, Relaxed);
        until != 0 && self.epoch.elapsed().as_millis() < until as u128
    }

    pub(crate) fn connect_succeeded(&self) {
        self.consecutive_connect_failures.store(0, Relaxed);
    }

    /// Counts a failed connect; returns true when it ejects the endpoint.
    pub(crate) fn connect_failed(&self, ejection: Option<&config::PassiveEjection>) -> bool {
        self.stats.connect_failures.fetch_add(1, Relaxed);
        let failures = self.consecutive_connect_failures.fetch_add(1, Relaxed) + 1;
        match ejection {
            Some(e) if failures >= e.consecutive_failures => {
                let until = self.epoch.elapsed() + e.duration;
                self.ejected_until_ms
                    .store(until.as_millis().max(1) as u64, Relaxed);
                self.consecutive_connect_failures.store(0, Relaxed);
                self.stats.ejections.fetch_add(1, Relaxed);
                true
            }
            _ => false,
        }
    }
}

/// Held while a connection uses an endpoint; keeps the endpoint's `active` count right.
#[derive(Debug)]
pub struct Lease {
    pub endpoint: Arc<Endpoint>,
}

impl Lease {
    pub(crate) fn new(endpoint: Arc<Endpoint>) -> Self {
        endpoint.stats.active.fetch_add(1, Relaxed);
        endpoint.stats.connections.fetch_add(1, Relaxed);
        Lease { endpoint }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.stats.active.fetch_sub(1, Relaxed);
    }
}
