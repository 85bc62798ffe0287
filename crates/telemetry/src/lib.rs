//! Metrics. The gateway counts in plain atomics on its hot paths (no registry lookups, no
//! string formatting per connection or per byte). This crate reads them and publishes them
//! through the `metrics` facade to a fan-out of Prometheus (served by the admin API at
//! `/metrics`) and statsd (pushed every flush interval), so both always agree.
//! Names and labels: docs/metrics.md.

use metrics::{Counter, Gauge, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use proxy::Gateway;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;

pub struct Telemetry {
    /// Prometheus, and statsd when configured: every metric is registered with each.
    recorders: Vec<Box<dyn Recorder + Send + Sync>>,
    prometheus: PrometheusHandle,
    published: Mutex<HashMap<Key, Published>>,
}

enum Published {
    /// A handle per recorder, and the highest total published so far.
    Counter(Vec<Counter>, u64),
    Gauge(Vec<Gauge>),
}

static METADATA: Metadata<'static> = Metadata::new("causeway", Level::INFO, Some("causeway"));

impl Telemetry {
    pub fn new(config: &config::Metrics) -> Result<Telemetry, String> {
        let prometheus = PrometheusBuilder::new().build_recorder();
        let handle = prometheus.handle();
        let mut recorders: Vec<Box<dyn Recorder + Send + Sync>> = vec![Box::new(prometheus)];
        if let Some(statsd) = &config.statsd {
            let (host, port) = statsd
                .address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse().ok()?)))
                .ok_or_else(|| format!("statsd address `{}`", statsd.address))?;
            let recorder = metrics_exporter_statsd::StatsdBuilder::from(host, port)
                .with_buffer_size(512)
                .build(Some(&statsd.prefix))
                .map_err(|e| format!("statsd: {e}"))?;
            recorders.push(Box::new(recorder));
        }
        Ok(Telemetry {
            recorders,
            prometheus: handle,
            published: Mutex::new(HashMap::new()),
        })
    }

    /// Publishes the gateway's current counts, then renders the Prometheus text.
    pub fn render(&self, gateway: &Gateway) -> String {
        self.publish(gateway);
        self.prometheus.render()
    }

    /// Reads every count of the gateway and publishes what changed.
    pub fn publish(&self, gateway: &Gateway) {
        let mut published = self.published.lock().unwrap();
        let mut out = Out {
            recorders: &self.recorders,
            published: &mut published,
        };
        out.gauge(
            "causeway_connections_active",
            vec![],
            gateway.active_connections() as f64,
        );
        out.gauge(
            "causeway_draining",
            vec![],
            f64::from(u8::from(gateway.is_draining())),
        );
        out.counter(
            "causeway_reloads_total",
            vec![("result", "ok".into())],
            gateway.reloads.ok.load(Relaxed),
        );
        out.counter(
            "causeway_reloads_total",
            vec![("result", "failed".into())],
            gateway.reloads.failed.load(Relaxed),
        );

        for ((side, result), count) in gateway.handshakes().snapshot() {
            out.counter(
                "causeway_tls_handshakes_total",
                vec![("side", side.into()), ("result", result.into())],
                count,
            );
        }
        for authorizer in gateway.authorizers() {
            let l = |extra: Option<(&'static str, String)>| {
                let mut labels = vec![("authorizer", authorizer.name().to_string())];
                labels.extend(extra);
                labels
            };
            let s = &authorizer.stats;
            for (result, count) in [
                ("ok", &s.ok),
                ("denied", &s.denied),
                ("error", &s.error),
                ("timeout", &s.timeout),
            ] {
                out.counter(
                    "causeway_authz_checks_total",
                    l(Some(("result", result.into()))),
                    count.load(Relaxed),
                );
            }
            out.counter(
                "causeway_authz_cache_hits_total",
                l(None),
                s.cache_hits.load(Relaxed),
            );
            let (buckets, sum, count) = s.histogram();
            for (le, n) in buckets {
                out.counter(
                    "causeway_authz_check_duration_seconds_bucket",
                    l(Some(("le", le.to_string()))),
                    n,
                );
            }
            out.counter(
                "causeway_authz_check_duration_seconds_bucket",
                l(Some(("le", "+Inf".into()))),
                count,
            );
            out.gauge("causeway_authz_check_duration_seconds_sum", l(None), sum);
            out.counter(
                "causeway_authz_check_duration_seconds_count",
                l(None),
                count,
            );
        }
        for identity in gateway.identities() {
            let l = || vec![("identity", identity.name.to_string())];
            if let Some(left) = identity.current().and_then(|m| m.seconds_left()) {
                out.gauge("causeway_tls_certificate_expiry_seconds", l(), left);
            }
            out.counter(
                "causeway_tls_identity_rotations_total",
                l(),
                identity.stats.rotations.load(Relaxed),
            );
            out.counter(
                "causeway_tls_identity_load_failures_total",
                l(),
                identity.stats.failures.load(Relaxed),
            );
        }

        for listener in gateway.listener_states() {
            let l = || vec![("listener", listener.name.to_string())];
            let s = &listener.stats;
            out.counter(
                "causeway_listener_connections_accepted_total",
                l(),
                s.accepted.load(Relaxed),
            );
            out.gauge(
                "causeway_listener_connections_active",
                l(),
                s.active.load(Relaxed) as f64,
            );
            let rejected = |reason: &str| {
                let mut labels = l();
                labels.push(("reason", reason.into()));
                labels
            };
            out.counter(
                "causeway_listener_connections_rejected_total",
                rejected("connection_limit"),
                s.rejected_limit.load(Relaxed),
            );
            for (reason, count) in [
                ("no_route", &s.no_route),
                ("global_connection_limit", &s.rejected_global_limit),
                ("source_connection_limit", &s.rejected_source_limit),
                ("accept_rate", &s.rejected_accept_rate),
                ("inspection_failed", &s.inspection_failed),
                ("tls_handshake_failed", &s.tls_handshake_failed),
                ("proxy_protocol", &s.proxy_protocol_failed),
                ("authz_denied", &s.authz_denied),
            ] {
                out.counter(
                    "causeway_listener_connections_rejected_total",
                    rejected(reason),
                    count.load(Relaxed),
                );
            }
            for route in listener.routes.routes() {
                let labels = vec![
                    ("listener", listener.name.to_string()),
                    ("route", route.config.name.clone()),
                ];
                out.counter(
                    "causeway_route_connections_total",
                    labels,
                    route.connections.load(Relaxed),
                );
            }
            let comp_ids = listener.config.fix.comp_id_metrics;
            for ((route, sender, target), total) in s.sessions.fix() {
                let mut labels = vec![("listener", listener.name.to_string()), ("route", route)];
                if comp_ids {
                    labels.push(("sender_comp_id", sender));
                    labels.push(("target_comp_id", target));
                }
                out.counter("causeway_fix_sessions_total", labels, total);
            }
            for ((route, channel, queue_manager), total) in s.sessions.mq() {
                let labels = vec![
                    ("listener", listener.name.to_string()),
                    ("route", route),
                    ("channel", channel),
                    ("queue_manager", queue_manager),
                ];
                out.counter("causeway_mq_connections_total", labels, total);
            }
            if listener.ssh.is_some() {
                ssh_metrics(&mut out, &listener);
            }
        }

        // Endpoint byte totals = closed connections' + live ones'. A closing connection leaves
        // the registry before its bytes join the endpoint's total, so reading the totals
        // first and the registry second can only miss bytes for a moment, never count them
        // twice (and an exported counter must never overshoot).
        let config = gateway.config();
        let clusters: Vec<_> = config
            .clusters
            .iter()
            .filter_map(|c| gateway.cluster(&c.name))
            .collect();
        let closed_bytes: HashMap<*const proxy::dial::cluster::Endpoint, (u64, u64)> = clusters
            .iter()
            .flat_map(|c| c.endpoints.iter())
            .map(|e| {
                let s = &e.stats;
                (
                    std::sync::Arc::as_ptr(e),
                    (
                        s.closed_bytes_upstream.load(Relaxed),
                        s.closed_bytes_downstream.load(Relaxed),
                    ),
                )
            })
            .collect();
        let mut live_bytes: HashMap<*const proxy::dial::cluster::Endpoint, (u64, u64)> =
            HashMap::new();
        for live in gateway.registry().snapshot() {
            if let Some(upstream) = live.upstream() {
                let entry = live_bytes
                    .entry(std::sync::Arc::as_ptr(&upstream.endpoint))
                    .or_default();
                entry.0 += live.counters.upstream_bytes.load(Relaxed);
                entry.1 += live.counters.downstream_bytes.load(Relaxed);
            }
        }
        for cluster in clusters.iter().filter(|c| c.config.tunnel.is_some()) {
            let l = |extra: Option<(&'static str, String)>| {
                let mut labels = vec![("cluster", cluster.name().to_string())];
                labels.extend(extra);
                labels
            };
            let t = &cluster.tunnels.stats;
            out.gauge(
                "causeway_tunnel_streams_active",
                l(None),
                t.active.load(Relaxed) as f64,
            );
            for (result, count) in [("ok", &t.opened), ("failed", &t.failed)] {
                out.counter(
                    "causeway_tunnel_connects_total",
                    l(Some(("result", result.into()))),
                    count.load(Relaxed),
                );
            }
            out.counter(
                "causeway_tunnel_http2_connections_total",
                l(None),
                t.connections.load(Relaxed),
            );
        }
        for cluster in &clusters {
            for e in &cluster.endpoints {
                let labels = || {
                    vec![
                        ("cluster", cluster.name().to_string()),
                        ("endpoint", e.address.clone()),
                    ]
                };
                let s = &e.stats;
                out.counter(
                    "causeway_endpoint_connect_attempts_total",
                    labels(),
                    s.connect_attempts.load(Relaxed),
                );
                out.counter(
                    "causeway_endpoint_connect_failures_total",
                    labels(),
                    s.connect_failures.load(Relaxed),
                );
                out.counter(
                    "causeway_endpoint_connections_total",
                    labels(),
                    s.connections.load(Relaxed),
                );
                out.gauge(
                    "causeway_endpoint_connections_active",
                    labels(),
                    s.active.load(Relaxed) as f64,
                );
                out.gauge(
                    "causeway_endpoint_healthy",
                    labels(),
                    f64::from(u8::from(e.is_available())),
                );
                out.counter(
                    "causeway_endpoint_health_transitions_total",
                    labels(),
                    s.health_transitions.load(Relaxed),
                );
                out.counter(
                    "causeway_endpoint_ejections_total",
                    labels(),
                    s.ejections.load(Relaxed),
                );
                let (closed_up, closed_down) = closed_bytes
                    .get(&std::sync::Arc::as_ptr(e))
                    .copied()
                    .unwrap_or_default();
                let (live_up, live_down) = live_bytes
                    .get(&std::sync::Arc::as_ptr(e))
                    .copied()
                    .unwrap_or_default();
                let direction = |d: &str| {
                    let mut l = labels();
                    l.push(("direction", d.into()));
                    l
                };
                out.counter(
                    "causeway_endpoint_bytes_total",
                    direction("upstream"),
                    closed_up + live_up,
                );
                out.counter(
                    "causeway_endpoint_bytes_total",
                    direction("downstream"),
                    closed_down + live_down,
                );
            }
        }
    }

    /// Publishes every `interval` until the process ends (statsd needs pushing).
    pub fn spawn_flusher(
        self: std::sync::Arc<Self>,
        gateway: std::sync::Arc<Gateway>,
        interval: std::time::Duration,
    ) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                self.publish(&gateway);
            }
        });
    }
}

struct Out<'a> {
    recorders: &'a [Box<dyn Recorder + Send + Sync>],
    published: &'a mut HashMap<Key, Published>,
}

impl Out<'_> {
    /// Publishes the growth of a total kept by the gateway. A total can dip for a moment
    /// (a counter carried over a reload); only growth past the highest value is published,
    /// so the exported counter never goes back.
    fn counter(&mut self, name: &'static str, labels: Vec<(&'static str, String)>, total: u64) {
        let key = key(name, labels);
        let recorders = self.recorders;
        let entry = self.published.entry(key.clone()).or_insert_with(|| {
            let handles = recorders
                .iter()
                .map(|r| r.register_counter(&key, &METADATA))
                .collect();
            Published::Counter(handles, 0)
        });
        if let Published::Counter(handles, highest) = entry
            && total > *highest
        {
            for handle in handles.iter() {
                handle.increment(total - *highest);
            }
            *highest = total;
        }
    }

    fn gauge(&mut self, name: &'static str, labels: Vec<(&'static str, String)>, value: f64) {
        let key = key(name, labels);
        let recorders = self.recorders;
        let entry = self.published.entry(key.clone()).or_insert_with(|| {
            Published::Gauge(
                recorders
                    .iter()
                    .map(|r| r.register_gauge(&key, &METADATA))
                    .collect(),
            )
        });
        if let Published::Gauge(handles) = entry {
            for handle in handles.iter() {
                handle.set(value);
            }
        }
    }
}

/// Logins, sessions, upstream failures and channel requests of an SSH listener.
fn ssh_metrics(out: &mut Out<'_>, listener: &proxy::accept::Listener) {
    use proxy::terminate::ssh::SshStats;
    let name = || ("listener", listener.name.to_string());
    let s = &listener.stats;
    out.counter(
        "causeway_listener_connections_rejected_total",
        vec![name(), ("reason", "ssh_auth_failed".into())],
        s.ssh_auth_failed.load(Relaxed),
    );
    for ((method, result), total) in SshStats::snapshot(&s.ssh.auth) {
        let labels = vec![name(), ("method", method.into()), ("result", result.into())];
        out.counter("causeway_ssh_auth_total", labels, total);
    }
    for ((route, method, _), total) in s.sessions.ssh() {
        let labels = vec![name(), ("route", route), ("method", method)];
        out.counter("causeway_ssh_sessions_total", labels, total);
    }
    for (reason, total) in SshStats::snapshot(&s.ssh.upstream_failures) {
        let labels = vec![name(), ("reason", reason)];
        out.counter("causeway_ssh_upstream_failures_total", labels, total);
    }
    for ((request, result), total) in SshStats::snapshot(&s.ssh.channel_requests) {
        let labels = vec![
            name(),
            ("request", request.into()),
            ("result", result.into()),
        ];
        out.counter("causeway_ssh_channel_requests_total", labels, total);
    }
}

fn key(name: &'static str, labels: Vec<(&'static str, String)>) -> Key {
    Key::from_parts(
        name,
        labels
            .into_iter()
            .map(|(k, v)| Label::new(k, v))
            .collect::<Vec<_>>(),
    )
}
