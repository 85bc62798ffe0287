//! A listener's series: connections accepted, active and refused (by reason), and what its
//! routes, protocol sessions and SSH logins count.

use super::Listener;
use crate::terminate::ssh::SshStats;
use std::sync::atomic::Ordering::Relaxed;
use telemetry::Out;

impl Listener {
    pub(crate) fn report(&self, out: &mut Out<'_>) {
        let l = || vec![("listener", self.name.to_string())];
        let s = &self.stats;
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
        for (reason, count) in [
            ("connection_limit", &s.rejected_limit),
            ("no_route", &s.no_route),
            ("global_connection_limit", &s.rejected_global_limit),
            ("source_connection_limit", &s.rejected_source_limit),
            ("accept_rate", &s.rejected_accept_rate),
            ("inspection_failed", &s.inspection_failed),
            ("tls_handshake_failed", &s.tls_handshake_failed),
            ("proxy_protocol", &s.proxy_protocol_failed),
            ("authz_denied", &s.authz_denied),
        ] {
            let mut labels = l();
            labels.push(("reason", reason.into()));
            out.counter(
                "causeway_listener_connections_rejected_total",
                labels,
                count.load(Relaxed),
            );
        }
        for (reason, count) in s.accept_errors.by_reason() {
            let labels = vec![
                ("listener", self.name.to_string()),
                ("reason", reason.into()),
            ];
            out.counter("causeway_listener_accept_errors_total", labels, count);
        }
        self.routes.report(&self.name, out);
        let comp_ids = self.config.fix.comp_id_metrics;
        s.sessions.report(&self.name, comp_ids, out);
        if self.ssh.is_some() {
            self.report_ssh(out);
        }
    }

    /// Logins, sessions, upstream failures and channel requests of an SSH listener.
    fn report_ssh(&self, out: &mut Out<'_>) {
        let name = || ("listener", self.name.to_string());
        let s = &self.stats;
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
        s.ssh.pre_auth.report(&self.name, out);
        if let Some(server) = &self.ssh {
            server.report(&self.name, out);
        }
    }
}
