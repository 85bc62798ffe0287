//! Medians, ratios and the Markdown report.

use crate::proxies::Kind;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One reported figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    PingPong1P50,
    PingPong1P99,
    PingPong1P999,
    PingPong16P50,
    PingPong16P99,
    Throughput1,
    Throughput4,
    /// Tunnel targets: 100 streams at once over the edge's pooled connection.
    Throughput100,
    CpuPerGib,
    ConnectionRate,
    /// TLS targets: new connections/s, each resuming a session.
    ResumedRate,
    /// TLS targets: the share of those handshakes that did resume, in %.
    ResumedShare,
    /// New connections opening with a FIX Logon / an MQ initial segment: per second, and
    /// the median time from connect to its echo (through the venue, the echo backend).
    FixRate,
    FixFirstAnswer,
    MqRate,
    MqFirstAnswer,
    IdleBytesPerConnection,
    FreshRss,
    /// SFTP put and get of one 256 MiB file with OpenSSH's client: MiB/s.
    SftpPut,
    SftpGet,
}

impl Metric {
    pub fn label(self) -> &'static str {
        match self {
            Metric::PingPong1P50 => "ping-pong, 1 conn, 100 B: p50 µs",
            Metric::PingPong1P99 => "ping-pong, 1 conn, 100 B: p99 µs",
            Metric::PingPong1P999 => "ping-pong, 1 conn, 100 B: p99.9 µs",
            Metric::PingPong16P50 => "ping-pong, 16 conns, 100 B: p50 µs",
            Metric::PingPong16P99 => "ping-pong, 16 conns, 100 B: p99 µs",
            Metric::Throughput1 => "throughput, 1 stream: MiB/s",
            Metric::Throughput4 => "throughput, 4 streams: MiB/s",
            Metric::Throughput100 => "throughput, 100 streams (tunnels): MiB/s",
            Metric::CpuPerGib => "throughput, 1 stream: CPU s per GiB echoed",
            Metric::ConnectionRate => "new connections/s (16 at once; TLS: full handshakes)",
            Metric::ResumedRate => "TLS resumed handshakes/s (16 at once)",
            Metric::ResumedShare => "TLS: % of those that resumed",
            Metric::FixRate => "FIX Logon connections/s (16 at once)",
            Metric::FixFirstAnswer => "FIX: connect → Logon echoed by the venue, p50 µs",
            Metric::MqRate => "MQ initial-segment connections/s (16 at once)",
            Metric::MqFirstAnswer => "MQ: connect → segment echoed by the server, p50 µs",
            Metric::IdleBytesPerConnection => "memory per idle connection: bytes",
            Metric::FreshRss => "memory at start: RSS MiB",
            Metric::SftpPut => "SFTP put, 256 MiB: MiB/s",
            Metric::SftpGet => "SFTP get, 256 MiB: MiB/s",
        }
    }

    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::Throughput1
                | Metric::Throughput4
                | Metric::Throughput100
                | Metric::ConnectionRate
                | Metric::ResumedRate
                | Metric::FixRate
                | Metric::MqRate
                | Metric::SftpPut
                | Metric::SftpGet
        )
    }

    pub const ALL: [Metric; 20] = [
        Metric::PingPong1P50,
        Metric::PingPong1P99,
        Metric::PingPong1P999,
        Metric::PingPong16P50,
        Metric::PingPong16P99,
        Metric::Throughput1,
        Metric::Throughput4,
        Metric::Throughput100,
        Metric::CpuPerGib,
        Metric::ConnectionRate,
        Metric::ResumedRate,
        Metric::ResumedShare,
        Metric::FixRate,
        Metric::FixFirstAnswer,
        Metric::MqRate,
        Metric::MqFirstAnswer,
        Metric::IdleBytesPerConnection,
        Metric::FreshRss,
        Metric::SftpPut,
        Metric::SftpGet,
    ];
}

#[derive(Default, Debug)]
pub struct Results {
    samples: BTreeMap<(Metric, Kind), Vec<f64>>,
    /// Cases a target failed (its cells stay empty), with the error.
    failures: Vec<String>,
    /// Facts found while running (the SFTP ciphers), each once.
    notes: Vec<String>,
}

impl Results {
    /// Keeps `value` or, for a case that failed, the failure; the comparison goes on.
    pub fn record<T>(&mut self, kind: Kind, case: &str, outcome: crate::Result<T>) -> Option<T> {
        match outcome {
            Ok(value) => Some(value),
            Err(e) => {
                eprintln!("{}: {case} failed: {e}", kind.name());
                self.failures.push(format!("{}: {case}: {e}", kind.name()));
                None
            }
        }
    }

    pub fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    pub fn add(&mut self, metric: Metric, kind: Kind, value: f64) {
        self.samples.entry((metric, kind)).or_default().push(value);
    }

    pub fn median(&self, metric: Metric, kind: Kind) -> Option<f64> {
        let mut v = self.samples.get(&(metric, kind))?.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let mid = v.len() / 2;
        Some(if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        })
    }
}

pub struct Context {
    pub kinds: Vec<Kind>,
    pub versions: Vec<(Kind, String)>,
    pub machine: String,
    pub date: String,
    pub command: String,
    pub workers: usize,
    pub rounds: usize,
    pub case_seconds: f64,
    pub idle_connections: usize,
    pub pinning: Option<String>,
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn markdown(results: &Results, ctx: &Context) -> String {
    let mut out = String::new();
    write_header(&mut out, ctx);
    let proxies: Vec<Kind> = ctx
        .kinds
        .iter()
        .copied()
        .filter(|k| *k != Kind::Direct)
        .collect();
    write_medians(&mut out, results, ctx);
    let plain: Vec<Kind> = (proxies.iter().copied())
        .filter(|k| !k.tls() && k.relays_anything())
        .collect();
    write_ratios(&mut out, results, Kind::Causeway, &plain);
    let tls: Vec<Kind> = proxies.iter().copied().filter(|k| k.tls()).collect();
    if tls.contains(&Kind::CausewayTls) {
        write_ratios(&mut out, results, Kind::CausewayTls, &tls);
    }
    for (ours, envoy) in [
        (Kind::CausewayTunnel, Kind::EnvoyTunnel),
        (Kind::CausewayTunnelMtls, Kind::EnvoyTunnelMtls),
    ] {
        if ctx.kinds.contains(&ours) && ctx.kinds.contains(&envoy) {
            write_tunnel_ratios(&mut out, results, ours, envoy);
        }
    }
    if ctx.kinds.contains(&Kind::CausewaySftp) {
        write_sftp(&mut out, results);
    }
    let direct = results.median(Metric::PingPong1P50, Kind::Direct);
    if let Some(direct) = direct {
        write_added_latency(&mut out, results, &proxies, direct);
    }
    write_rounds(&mut out, results, ctx);
    if !results.failures.is_empty() {
        let _ = writeln!(out, "\n## Failed cases\n");
        for failure in &results.failures {
            let _ = writeln!(out, "- {failure}");
        }
    }
    let _ = writeln!(
        out,
        "\n## Targets\n\nIssue 20's; for each one missed, [PROFILES.md](PROFILES.md) says where the \
         time or memory goes and what was tried.\n"
    );
    for line in crate::targets::verdicts(results) {
        let _ = writeln!(out, "- {line}");
    }
    out
}

/// The title and what ran: command, date, machine, versions, the settings every proxy shares.
fn write_header(out: &mut String, ctx: &Context) {
    let _ = writeln!(out, "# Benchmark results\n");
    let _ = writeln!(out, "- Command: `{}`", ctx.command);
    let _ = writeln!(out, "- Date: {}", ctx.date);
    let _ = writeln!(out, "- Machine: {}", ctx.machine);
    for (kind, version) in &ctx.versions {
        let _ = writeln!(out, "- {}: {}", kind.name(), version);
    }
    let _ = writeln!(
        out,
        "- Every proxy: {} worker thread(s)/process(es), no idle timeout, no connection cap, no access log; \
         one echo backend; client, proxy and backend share the machine. {} interleaved rounds \
         (each round runs every case against every target in turn), {} s per case; medians shown. \
         Idle hold: {} connections, on a freshly started instance of each proxy every round.",
        ctx.workers, ctx.rounds, ctx.case_seconds, ctx.idle_connections
    );
    let placement = (ctx.pinning.as_deref()).unwrap_or("no process pinned to a CPU");
    let _ = writeln!(out, "- CPUs: {placement}.");
    if !ctx.kinds.iter().any(|k| k.tls()) {
        let _ = writeln!(out);
        return;
    }
    let _ = writeln!(
        out,
        "- TLS targets (`*-tls`): TLS 1.3 terminated, the plaintext to the backend; one ECDSA \
         P-256 certificate for all; key exchange {} only; the client does not verify the \
         certificate (it would cost more than the server it measures); resumption with the \
         tickets each server issues by default. No bulk throughput over TLS.\n",
        crate::tls::KEY_EXCHANGE
    );
}

/// The rest of a table's first row (one column per kind) and the alignment row.
fn write_columns(out: &mut String, kinds: &[Kind]) {
    for k in kinds {
        let _ = write!(out, " {} |", k.name());
    }
    let _ = write!(out, "\n|---|");
    for _ in kinds {
        let _ = write!(out, "---:|");
    }
    let _ = writeln!(out);
}

/// `theirs / ours` to two decimals, or `-` when either is missing or ours is zero.
fn ratio(theirs: Option<f64>, ours: Option<f64>) -> String {
    match (theirs, ours) {
        (Some(theirs), Some(ours)) if ours > 0.0 => format!("{:.2}", theirs / ours),
        _ => "-".into(),
    }
}

/// Every metric's median for every target.
fn write_medians(out: &mut String, results: &Results, ctx: &Context) {
    let _ = write!(out, "## Medians\n\n| case |");
    write_columns(out, &ctx.kinds);
    for metric in Metric::ALL {
        let _ = write!(out, "| {} |", metric.label());
        for k in &ctx.kinds {
            let cell = results.median(metric, *k).map_or("-".into(), fmt_value);
            let _ = write!(out, " {cell} |");
        }
        let _ = writeln!(out);
    }
}

/// Every figure of every round, in the order they ran: what each median was taken from.
fn write_rounds(out: &mut String, results: &Results, ctx: &Context) {
    let _ = write!(
        out,
        "\n## Every round\n\nEach cell: round 1 / round 2 / …, in the order they ran.\n\n| case |"
    );
    write_columns(out, &ctx.kinds);
    for metric in Metric::ALL {
        let _ = write!(out, "| {} |", metric.label());
        for k in &ctx.kinds {
            let cell = match results.samples.get(&(metric, *k)) {
                Some(values) if !values.is_empty() => (values.iter())
                    .map(|v| fmt_value(*v))
                    .collect::<Vec<_>>()
                    .join(" / "),
                _ => "-".into(),
            };
            let _ = write!(out, " {cell} |");
        }
        let _ = writeln!(out);
    }
}

/// Every metric's median for each of `proxies` but `ours` over `ours`'.
fn write_ratios(out: &mut String, results: &Results, ours: Kind, proxies: &[Kind]) {
    let what = if ours.tls() {
        "TLS termination: each rival's median / causeway-tls's"
    } else {
        "Ratios: each rival's median / Causeway's"
    };
    let _ = write!(
        out,
        "\n## {what}\n\n\
         Above 1 means the rival has more of the figure: better for throughput and connections/s, \
         worse for latency and memory.\n\n| case |"
    );
    let rivals: Vec<Kind> = proxies.iter().copied().filter(|k| *k != ours).collect();
    write_columns(out, &rivals);
    for metric in Metric::ALL {
        let _ = write!(out, "| {} |", metric.label());
        let ours = results.median(metric, ours);
        for k in &rivals {
            let cell = ratio(results.median(metric, *k), ours);
            let _ = write!(out, " {cell} |");
        }
        let _ = writeln!(out);
    }
}

/// Envoy's tunnel topology over Causeway's, metric by metric.
fn write_tunnel_ratios(out: &mut String, results: &Results, ours: Kind, envoy: Kind) {
    let between = match ours {
        Kind::CausewayTunnelMtls => "mutual TLS 1.3, ALPN h2",
        _ => "plaintext, h2c",
    };
    let _ = write!(
        out,
        "\n## Tunnels ({between}): Envoy's median / Causeway's, same topology\n\n\
         Edge → HTTP/2 CONNECT tunnel ({between}) → terminator → backend, both ends the same \
         program. Above 1 means Envoy has more of the figure.\n\n| case | {} / {} |\n|---|---:|\n",
        envoy.name(),
        ours.name()
    );
    for metric in Metric::ALL {
        let ratio = ratio(results.median(metric, envoy), results.median(metric, ours));
        let _ = writeln!(out, "| {} | {ratio} |", metric.label());
    }
}

/// SFTP through the gateway against OpenSSH direct, and the ciphers each leg used.
fn write_sftp(out: &mut String, results: &Results) {
    let _ = write!(
        out,
        "\n## SFTP: through Causeway / direct to the same OpenSSH sshd\n\n\
         OpenSSH's `sftp` (default algorithms) puts and gets one 256 MiB file; through the \
         gateway its SSH session is terminated and re-originated to the sshd (audit log on). \
         Above 1 means faster through the gateway.\n\n| case | direct MiB/s | causeway-sftp MiB/s | ratio |\n|---|---:|---:|---:|\n"
    );
    for metric in [Metric::SftpPut, Metric::SftpGet] {
        let (direct, ours) = (
            results.median(metric, Kind::Direct),
            results.median(metric, Kind::CausewaySftp),
        );
        let cell = |v: Option<f64>| v.map_or("-".into(), fmt_value);
        let ratio = ratio(ours, direct);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ratio} |",
            metric.label(),
            cell(direct),
            cell(ours)
        );
    }
    let _ = writeln!(out);
    for note in &results.notes {
        let _ = writeln!(out, "- {note}");
    }
}

/// Each proxy's p50 (1 connection) minus the direct p50.
fn write_added_latency(out: &mut String, results: &Results, proxies: &[Kind], direct: f64) {
    let _ = write!(
        out,
        "\n## Added latency: p50 through the proxy minus direct (1 conn, 100 B)\n\n| proxy | µs |\n|---|---:|\n"
    );
    for k in proxies {
        if let Some(p) = results.median(Metric::PingPong1P50, *k) {
            let _ = writeln!(out, "| {} | {:.1} |", k.name(), p - direct);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        let mut r = Results::default();
        for v in [3.0, 1.0, 2.0] {
            r.add(Metric::Throughput1, Kind::Causeway, v);
        }
        assert_eq!(r.median(Metric::Throughput1, Kind::Causeway), Some(2.0));
        r.add(Metric::Throughput1, Kind::Causeway, 10.0);
        assert_eq!(r.median(Metric::Throughput1, Kind::Causeway), Some(2.5));
        assert_eq!(r.median(Metric::Throughput1, Kind::Envoy), None);
    }
}
