//! The performance targets (issue 20), each checked against one run's medians: met, or
//! missed by how much.

use crate::proxies::Kind;
use crate::report::{Metric, Results};

/// One line per target the run has the figures for.
pub fn verdicts(results: &Results) -> Vec<String> {
    let m = |metric, kind| results.median(metric, kind);
    let mut lines = Vec::new();
    let mut check = |what: &str, ours: Option<f64>, bound: Option<f64>, at_most: bool| {
        if let (Some(ours), Some(bound)) = (ours, bound) {
            let met = if at_most {
                ours <= bound
            } else {
                ours >= bound
            };
            let verdict = if met { "met" } else { "MISSED" };
            lines.push(format!("{what}: {ours:.2} against {bound:.2} — {verdict}"));
        }
    };
    let plain = [Kind::HaProxy, Kind::Nginx, Kind::Envoy];
    let tls = [Kind::HaProxyTls, Kind::NginxTls, Kind::EnvoyTls];
    for (metric, name) in [(Metric::PingPong1P50, "p50"), (Metric::PingPong1P99, "p99")] {
        let added = |kind| Some(m(metric, kind)? - m(metric, Kind::Direct)?);
        let best = |kinds: &[Kind]| kinds.iter().filter_map(|k| added(*k)).reduce(f64::min);
        let bound = |kinds: &[Kind]| best(kinds).map(|b| 0.8 * b);
        let plain_what = format!("added {name} latency, plain, µs ≤ 0.8× the best peer's");
        check(&plain_what, added(Kind::Causeway), bound(&plain), true);
        let tls_what = format!("added {name} latency, TLS, µs ≤ 0.8× the best peer's");
        check(&tls_what, added(Kind::CausewayTls), bound(&tls), true);
    }
    let ours = m(Metric::Throughput1, Kind::Causeway);
    for peer in [Kind::Envoy, Kind::HaProxy] {
        let what = format!("single-stream MiB/s ≥ 1.3× {}", peer.name());
        check(
            &what,
            ours,
            m(Metric::Throughput1, peer).map(|p| 1.3 * p),
            false,
        );
    }
    let best_cpu = (plain.iter())
        .filter_map(|k| m(Metric::CpuPerGib, *k))
        .reduce(f64::min);
    check(
        "CPU s per GiB ≤ 0.7× the best peer's",
        m(Metric::CpuPerGib, Kind::Causeway),
        best_cpu.map(|b| 0.7 * b),
        true,
    );
    check(
        "new connections/s ≥ 1.2× HAProxy",
        m(Metric::ConnectionRate, Kind::Causeway),
        m(Metric::ConnectionRate, Kind::HaProxy).map(|p| 1.2 * p),
        false,
    );
    for (metric, what) in [
        (Metric::ConnectionRate, "TLS full handshakes/s ≥ 1.2× Envoy"),
        (Metric::ResumedRate, "TLS resumed handshakes/s ≥ 1.2× Envoy"),
    ] {
        let envoy = m(metric, Kind::EnvoyTls).map(|p| 1.2 * p);
        check(what, m(metric, Kind::CausewayTls), envoy, false);
    }
    for (kind, bytes) in [
        (Kind::Causeway, 1024.0),
        (Kind::CausewayTunnel, 2048.0),
        (Kind::CausewayTls, 8192.0),
    ] {
        let what = format!("{}: memory per idle connection, bytes", kind.name());
        check(
            &what,
            m(Metric::IdleBytesPerConnection, kind),
            Some(bytes),
            true,
        );
    }
    for (kind, rate, first) in [
        (Kind::CausewayFix, Metric::FixRate, Metric::FixFirstAnswer),
        (Kind::CausewayMq, Metric::MqRate, Metric::MqFirstAnswer),
    ] {
        let plain = |metric| m(metric, Kind::Causeway);
        let what = format!("{}: connections/s ≥ 0.9× the plain route's", kind.name());
        check(&what, m(rate, kind), plain(rate).map(|p| 0.9 * p), false);
        let what = format!(
            "{}: connect → echo p50 µs ≤ 1.1× the plain route's",
            kind.name()
        );
        check(&what, m(first, kind), plain(first).map(|p| 1.1 * p), true);
    }
    for (metric, what) in [
        (Metric::SftpPut, "SFTP put MiB/s ≥ 0.9× direct OpenSSH"),
        (Metric::SftpGet, "SFTP get MiB/s ≥ 0.9× direct OpenSSH"),
    ] {
        let direct = m(metric, Kind::Direct).map(|d| 0.9 * d);
        check(what, m(metric, Kind::CausewaySftp), direct, false);
    }
    let tunnels = [
        (Kind::CausewayTunnel, Kind::EnvoyTunnel, "h2c"),
        (
            Kind::CausewayTunnelMtls,
            Kind::EnvoyTunnelMtls,
            "h2 over mTLS",
        ),
    ];
    for (ours, envoy, between) in tunnels {
        let theirs = |metric| m(metric, envoy);
        for (metric, what, factor, at_most) in [
            (Metric::PingPong1P50, "p50 µs ≤ 0.8×", 0.8, true),
            (
                Metric::Throughput1,
                "single-stream MiB/s ≥ 1.2×",
                1.2,
                false,
            ),
            (
                Metric::Throughput100,
                "100 streams MiB/s ≥ 1.2×",
                1.2,
                false,
            ),
        ] {
            let what = format!("tunnel ({between}) {what} Envoy→Envoy");
            let bound = theirs(metric).map(|p| factor * p);
            check(&what, m(metric, ours), bound, at_most);
        }
    }
    lines
}
