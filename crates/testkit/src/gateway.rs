//! A gateway running inside the test's own runtime.

use proxy::dial::cluster::{Cluster, Endpoint};
use proxy::{Gateway, ShutdownReport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub struct TestGateway {
    pub gateway: Gateway,
    /// What `/metrics` serves for this gateway (no statsd).
    telemetry: telemetry::Telemetry,
}

impl TestGateway {
    /// Starts a gateway from YAML; listeners should use port 0. Panics on a bad config.
    pub fn start(yaml: &str) -> TestGateway {
        let config = config::parse(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let gateway = Gateway::start(&config).expect("gateway starts");
        let telemetry = telemetry::Telemetry::new(&Default::default()).expect("telemetry");
        TestGateway { gateway, telemetry }
    }

    pub fn address(&self, listener: &str) -> SocketAddr {
        self.gateway
            .listener_address(listener)
            .unwrap_or_else(|| panic!("no listener `{listener}`"))
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

    /// The Prometheus text `/metrics` serves now.
    pub fn metrics_text(&self) -> String {
        self.telemetry.render(&self.gateway)
    }

    /// The value of one series of `/metrics` (`name` with exactly these `labels`, in any
    /// order); 0 when the series is not there (a counter not yet counted). Histograms:
    /// ask for `NAME_count` or `NAME_sum`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_in(&self.metrics_text(), name, labels)
    }

    pub async fn shutdown(self) -> ShutdownReport {
        self.gateway.shutdown().await
    }

    /// `causeway_listener_connections_rejected_total` of `listener` for `reason`.
    pub fn rejected(&self, listener: &str, reason: &str) -> f64 {
        self.metric(
            "causeway_listener_connections_rejected_total",
            &[("listener", listener), ("reason", reason)],
        )
    }

    /// An endpoint series (`causeway_endpoint_*`) of the endpoint at `address` of `cluster`.
    pub fn endpoint_metric(&self, name: &str, cluster: &str, address: SocketAddr) -> f64 {
        let endpoint = address.to_string();
        self.metric(name, &[("cluster", cluster), ("endpoint", &endpoint)])
    }

    /// Active health checks of an endpoint with this `result` (`passed`, `failed`).
    pub fn health_checks(&self, cluster: &str, address: SocketAddr, result: &str) -> f64 {
        let endpoint = address.to_string();
        let labels = [
            ("cluster", cluster),
            ("endpoint", &endpoint),
            ("result", result),
        ];
        self.metric("causeway_endpoint_health_checks_total", &labels)
    }

    /// Every series of `name` whose labels include `labels` (it may have more), with all
    /// its labels and its value; for counting series or summing over a label.
    pub fn series(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(Labels, f64)> {
        series_in(&self.metrics_text(), name, labels)
    }

    /// The sum of [`TestGateway::series`]: 0 when there is none.
    pub fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name, labels).iter().map(|(_, v)| v).sum()
    }
}

/// The value of a series in Prometheus text; 0 when absent.
pub fn metric_in(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let wanted: std::collections::BTreeMap<&str, &str> = labels.iter().copied().collect();
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == name
                && s.labels.len() == wanted.len()
                && wanted.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map_or(0.0, |s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => panic!("{name} is a histogram or summary: ask for NAME_count or NAME_sum"),
        })
}

/// The labels of one series.
pub type Labels = std::collections::BTreeMap<String, String>;

/// Every counter or gauge series of `name` in Prometheus text whose labels include
/// `labels`, with all its labels and its value.
pub fn series_in(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(Labels, f64)> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => panic!("{name} is a histogram or summary"),
            };
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (labels, value)
        })
        .collect()
}
