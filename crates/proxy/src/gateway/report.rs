//! The gateway as a metrics source: its own series (connections, draining, reloads), then
//! each stage's — TLS, authorizers, listeners (with routes and sessions), clusters.

use super::Gateway;
use crate::dial::cluster::LiveBytes;
use std::sync::atomic::Ordering::Relaxed;
use telemetry::{Out, Source};

impl Source for Gateway {
    fn report(&self, out: &mut Out<'_>) {
        let active = self.active_connections() as f64;
        out.gauge("causeway_connections_active", vec![], active);
        let limit = self.context.global.limit.load(Relaxed) as f64;
        out.gauge("causeway_connections_limit", vec![], limit);
        if let Some(log) = &self.context.access_log {
            let dropped = log.dropped.load(Relaxed);
            out.counter("causeway_access_log_dropped_total", vec![], dropped);
            let failed = log.failed.load(Relaxed);
            out.counter("causeway_access_log_write_errors_total", vec![], failed);
            if let Some(otlp) = &log.otlp {
                let exported = "causeway_access_log_otlp_exported_total";
                let dropped = "causeway_access_log_otlp_dropped_total";
                report_export(otlp.stats(), exported, dropped, out);
            }
        }
        if let Some(tracer) = &self.context.tracer {
            let exported = "causeway_trace_spans_exported_total";
            let dropped = "causeway_trace_spans_dropped_total";
            report_export(tracer.stats(), exported, dropped, out);
        }
        let draining = f64::from(u8::from(self.is_draining()));
        out.gauge("causeway_draining", vec![], draining);
        let pipes = crate::relay::pipes() as f64;
        out.gauge("causeway_relay_pipes", vec![], pipes);
        crate::dial::resolve::report(out);
        for (result, count) in [("ok", &self.reloads.ok), ("failed", &self.reloads.failed)] {
            let labels = vec![("result", result.into())];
            out.counter("causeway_reloads_total", labels, count.load(Relaxed));
        }
        crate::terminate::tls::report(self.handshakes(), &self.identities(), out);
        crate::authorize::report(&self.authorizers(), out);
        for listener in self.listener_states() {
            listener.report(out);
        }
        // Endpoint byte totals = closed connections' + live ones'. A closing connection
        // leaves the registry before its bytes join the endpoint's total, so reading the
        // totals first and the registry second can only miss bytes for a moment, never count
        // them twice (and an exported counter must never overshoot).
        let config = self.config();
        let clusters: Vec<_> = (config.clusters.iter())
            .filter_map(|c| self.cluster(&c.name))
            .collect();
        let mut closed = LiveBytes::new();
        for cluster in &clusters {
            cluster.closed_bytes(&mut closed);
        }
        let live = self.registry().bytes_by_endpoint();
        for cluster in &clusters {
            cluster.report(&closed, &live, out);
        }
    }
}

/// What an OTLP export sent, and what it dropped by reason.
fn report_export(
    stats: &telemetry::trace::ExportStats,
    exported: &'static str,
    dropped: &'static str,
    out: &mut Out<'_>,
) {
    out.counter(exported, vec![], stats.exported.load(Relaxed));
    for (reason, count) in [
        ("queue_full", &stats.dropped_queue_full),
        ("export_failed", &stats.dropped_export_failed),
    ] {
        let labels = vec![("reason", reason.into())];
        out.counter(dropped, labels, count.load(Relaxed));
    }
}
