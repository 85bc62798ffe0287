//! One sample a second of the gateway process: resident memory, descriptors and threads
//! from /proc, and a few series of its /metrics; written to the CSV as they come.

use super::Soak;
use super::stats::Kind;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which part of the run a sample belongs to: only `Run` samples are fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Warmup,
    Run,
    /// Churn stopped, waiting for the gateway to hold only the idle connections.
    Quiesce,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub t: f64,
    pub stage: Stage,
    pub rss_kib: u64,
    pub fds: u64,
    pub threads: u64,
    /// `causeway_connections_active`.
    pub active: f64,
    /// `causeway_listener_connections_accepted_total`, all listeners.
    pub accepted: f64,
    /// `causeway_connections_closed_total` with a reason other than `closed`.
    pub closed_abnormally: f64,
    pub reloads_ok: f64,
    pub reloads_failed: f64,
    /// `causeway_authz_checks_total` by result: ok, denied, error + timeout.
    pub authz: [f64; 3],
    pub phase: &'static str,
    /// Successful connections per kind so far (Kind::ALL order), and all errors.
    pub ok: [u64; 5],
    pub errors: u64,
    pub corrupted: u64,
}

pub const CSV_HEADER: &str = "t_s,stage,rss_kib,fds,threads,active_connections,accepted_total,\
closed_abnormally_total,reloads_ok,reloads_failed,authz_ok,authz_denied,authz_failed,\
authorizer,ok_plain,ok_tls,ok_tunnel,ok_fix,ok_ssh,errors,corrupted";

impl Sample {
    pub fn csv(&self) -> String {
        let stage = match self.stage {
            Stage::Warmup => "warmup",
            Stage::Run => "run",
            Stage::Quiesce => "quiesce",
        };
        let ok: Vec<String> = self.ok.iter().map(u64::to_string).collect();
        format!(
            "{:.1},{stage},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.t,
            self.rss_kib,
            self.fds,
            self.threads,
            self.active,
            self.accepted,
            self.closed_abnormally,
            self.reloads_ok,
            self.reloads_failed,
            self.authz[0],
            self.authz[1],
            self.authz[2],
            self.phase,
            ok.join(","),
            self.errors,
            self.corrupted
        )
    }
}

/// Takes one sample of the gateway (pid) at `t` seconds.
pub async fn take(soak: &Soak, t: f64, stage: Stage) -> Sample {
    let pid = soak.gateway_pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        (status.lines())
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    let metrics = match http(soak.addresses.admin, "GET", "/metrics").await {
        Ok((200, text)) => text,
        _ => String::new(),
    };
    let m = |name: &str, label: &str| metric_sum(&metrics, name, label);
    let stats = |f: fn(&super::stats::KindStats) -> u64| -> u64 {
        Kind::ALL.iter().map(|k| f(soak.stats(*k))).sum()
    };
    Sample {
        t,
        stage,
        rss_kib: field("VmRSS:"),
        fds,
        threads: field("Threads:"),
        active: m("causeway_connections_active", ""),
        accepted: m("causeway_listener_connections_accepted_total", ""),
        closed_abnormally: m("causeway_connections_closed_total", "")
            - m("causeway_connections_closed_total", "reason=\"closed\""),
        reloads_ok: m("causeway_reloads_total", "result=\"ok\""),
        reloads_failed: m("causeway_reloads_total", "result=\"failed\""),
        authz: [
            m("causeway_authz_checks_total", "result=\"ok\""),
            m("causeway_authz_checks_total", "result=\"denied\""),
            m("causeway_authz_checks_total", "result=\"error\"")
                + m("causeway_authz_checks_total", "result=\"timeout\""),
        ],
        phase: soak.authz.snapshot().phase.name(),
        ok: Kind::ALL.map(|k| soak.stats(k).ok.load(Relaxed)),
        errors: stats(|s| s.errors.load(Relaxed) + s.idle_lost.load(Relaxed)),
        corrupted: stats(|s| s.corrupted.load(Relaxed)),
    }
}

/// The sum of every series of `name` whose labels contain `label` (all of them for "").
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    (text.lines())
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (series_name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            (series_name == name && labels.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// An HTTP/1.0 request to the admin API (one connection each, no body): its status and
/// body. HTTP/1.0, so the answer ends with the connection and is never chunked.
pub async fn http(address: SocketAddr, method: &str, path: &str) -> crate::Result<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nCauseway-Admin: soak\r\nContent-Length: 0\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("{method} {path}: no answer in 5 s"))?
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = (head.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: not an HTTP answer"))?;
    Ok((status, body.to_string()))
}

/// The CSV, a line a sample, flushed as it goes (a run stopped midway keeps its samples).
pub struct Csv(std::io::BufWriter<std::fs::File>);

impl Csv {
    pub fn create(path: &std::path::Path) -> crate::Result<Csv> {
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut csv = Csv(std::io::BufWriter::new(file));
        csv.line(CSV_HEADER);
        Ok(csv)
    }

    pub fn line(&mut self, line: &str) {
        let _ = writeln!(self.0, "{line}").and_then(|()| self.0.flush());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn series_are_summed_by_name_and_label() {
        let text = "# TYPE causeway_reloads_total counter\n\
                    causeway_reloads_total{result=\"ok\"} 7\n\
                    causeway_reloads_total{result=\"failed\"} 1\n\
                    causeway_reloads_total_other 5\n\
                    causeway_connections_active 12\n";
        assert_eq!(super::metric_sum(text, "causeway_reloads_total", ""), 8.0);
        assert_eq!(
            super::metric_sum(text, "causeway_reloads_total", "result=\"ok\""),
            7.0
        );
        assert_eq!(
            super::metric_sum(text, "causeway_connections_active", ""),
            12.0
        );
    }
}
