//! A gateway running inside the test's own runtime.

use proxy::accept::ListenerStats;
use proxy::dial::cluster::{Cluster, Endpoint};
use proxy::{Gateway, ShutdownReport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct TestGateway {
    pub gateway: Gateway,
}

impl TestGateway {
    /// Starts a gateway from YAML; listeners should use port 0. Panics on a bad config.
    pub fn start(yaml: &str) -> TestGateway {
        let config = config::parse(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let gateway = Gateway::start(&config).expect("gateway starts");
        TestGateway { gateway }
    }

    pub fn address(&self, listener: &str) -> SocketAddr {
        self.gateway
            .listener_address(listener)
            .unwrap_or_else(|| panic!("no listener `{listener}`"))
    }

    pub fn listener_stats(&self, listener: &str) -> Arc<ListenerStats> {
        self.gateway.listener_stats(listener).expect("listener")
    }

    pub fn cluster(&self, name: &str) -> Arc<Cluster> {
        self.gateway.cluster(name).expect("cluster")
    }

    /// The endpoint at `address` of cluster `cluster`.
    pub fn endpoint(&self, cluster: &str, address: SocketAddr) -> Arc<Endpoint> {
        self.cluster(cluster)
            .endpoint(&address.to_string())
            .unwrap_or_else(|| panic!("no endpoint {address} in cluster {cluster}"))
            .clone()
    }

    /// Reloads from YAML; panics on a bad config.
    pub fn reload(&self, yaml: &str) -> proxy::ReloadSummary {
        let config = config::parse(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        self.gateway.reload(&config).expect("reload applies")
    }

    /// Waits (on the cluster's health signal, at most 10 s) until the endpoint at `address`
    /// has the given health.
    pub async fn wait_health(&self, cluster: &str, address: SocketAddr, healthy: bool) {
        let endpoint = self.endpoint(cluster, address);
        let cluster = self.cluster(cluster);
        let mut changes = cluster.health_changes();
        let wait = async {
            while endpoint.is_healthy() != healthy {
                changes.changed().await.expect("cluster alive");
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .unwrap_or_else(|_| panic!("{address} did not become healthy={healthy}"));
    }

    pub async fn shutdown(self) -> ShutdownReport {
        self.gateway.shutdown().await
    }
}
