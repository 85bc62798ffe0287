//! A cluster's series: per endpoint, connect attempts and failures, connections, health,
//! ejections and bytes; for a tunnel cluster, its tunnels and HTTP/2 connections.

use super::{Cluster, Endpoint};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use telemetry::{Labels, Out};

/// Bytes (upstream, downstream) of the live connections, by endpoint.
pub type LiveBytes = HashMap<*const Endpoint, (u64, u64)>;

impl Cluster {
    /// `closed`: each endpoint's closed-connection bytes, read BEFORE `live` was (see
    /// `Gateway::report`: never counting a closing connection's bytes twice).
    pub fn report(&self, closed: &LiveBytes, live: &LiveBytes, out: &mut Out<'_>) {
        if self.config.tunnel.is_some() {
            self.report_tunnels(out);
        }
        let cluster = || vec![("cluster", self.name().to_string())];
        let name = "causeway_upstream_connect_duration_seconds";
        out.histogram(name, cluster(), &self.connect_latency);
        let failover = f64::from(u8::from(self.failed_over()));
        out.gauge("causeway_cluster_failover_active", cluster(), failover);
        for e in &self.endpoints {
            let labels = || -> Labels {
                vec![
                    ("cluster", self.name().to_string()),
                    ("endpoint", e.address.clone()),
                ]
            };
            let s = &e.stats;
            for (name, count) in [
                (
                    "causeway_endpoint_connect_attempts_total",
                    &s.connect_attempts,
                ),
                (
                    "causeway_endpoint_connect_failures_total",
                    &s.connect_failures,
                ),
                ("causeway_endpoint_connections_total", &s.connections),
                (
                    "causeway_endpoint_health_transitions_total",
                    &s.health_transitions,
                ),
                ("causeway_endpoint_ejections_total", &s.ejections),
            ] {
                out.counter(name, labels(), count.load(Relaxed));
            }
            for (result, count) in [
                ("passed", &s.health_checks_passed),
                ("failed", &s.health_checks_failed),
            ] {
                let mut l = labels();
                l.push(("result", result.into()));
                out.counter(
                    "causeway_endpoint_health_checks_total",
                    l,
                    count.load(Relaxed),
                );
            }
            let active = s.active.load(Relaxed) as f64;
            out.gauge("causeway_endpoint_connections_active", labels(), active);
            let healthy = f64::from(u8::from(e.is_available()));
            out.gauge("causeway_endpoint_healthy", labels(), healthy);
            let key = Arc::as_ptr(e);
            let (closed_up, closed_down) = closed.get(&key).copied().unwrap_or_default();
            let (live_up, live_down) = live.get(&key).copied().unwrap_or_default();
            for (direction, total) in [
                ("upstream", closed_up + live_up),
                ("downstream", closed_down + live_down),
            ] {
                let mut l = labels();
                l.push(("direction", direction.into()));
                out.counter("causeway_endpoint_bytes_total", l, total);
            }
        }
    }

    /// Bytes of each endpoint's closed connections.
    pub fn closed_bytes(&self, into: &mut LiveBytes) {
        for e in &self.endpoints {
            let s = &e.stats;
            let bytes = (
                s.closed_bytes_upstream.load(Relaxed),
                s.closed_bytes_downstream.load(Relaxed),
            );
            into.insert(Arc::as_ptr(e), bytes);
        }
    }

    fn report_tunnels(&self, out: &mut Out<'_>) {
        let l = |extra: Option<(&'static str, String)>| {
            let mut labels = vec![("cluster", self.name().to_string())];
            labels.extend(extra);
            labels
        };
        let t = &self.tunnels.stats;
        let active = t.active.load(Relaxed) as f64;
        out.gauge("causeway_tunnel_streams_active", l(None), active);
        for (result, count) in [("ok", &t.opened), ("failed", &t.failed)] {
            let labels = l(Some(("result", result.into())));
            out.counter(
                "causeway_tunnel_connects_total",
                labels,
                count.load(Relaxed),
            );
        }
        out.histogram(
            "causeway_tunnel_open_duration_seconds",
            l(None),
            &t.open_latency,
        );
        let connections = t.connections.load(Relaxed);
        out.counter(
            "causeway_tunnel_http2_connections_total",
            l(None),
            connections,
        );
    }
}
