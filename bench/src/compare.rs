//! The side-by-side run: one backend, every proxy started once, every case run against every
//! target in turn, round after round; then medians, ratios and memory into a report.

use crate::modes::{ConnectionRate, IdleHold, PingPong, SftpTransfer, Throughput};
use crate::proxies::{Binaries, Kind, Proxy};
use crate::report::{self, Metric, Results};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Options {
    pub kinds: Vec<Kind>,
    pub workers: usize,
    pub rounds: usize,
    pub case_duration: Duration,
    pub idle_connections: usize,
    pub idle_hold: Duration,
    pub binaries: Binaries,
    pub output: PathBuf,
    pub command: String,
    /// Where the processes run, when `--pin-load` placed them.
    pub pinning: Option<String>,
}

/// The echo backend, in its own process so it competes with the proxies like a real server.
struct BackendProcess {
    child: Child,
    address: SocketAddr,
}

impl BackendProcess {
    fn start() -> crate::Result<Self> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = Command::new(exe);
        command.args(["backend", "--listen", "127.0.0.1:0"]);
        let mut child = crate::proxies::dies_with_us(&mut command)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("backend: {e}"))?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let address = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("backend said {line:?}"))?;
        Ok(BackendProcess { child, address })
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(options: Options) -> crate::Result<String> {
    let dir = std::env::temp_dir().join(format!("causeway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    crate::tls::Pki::write(&dir)?;
    let backend = BackendProcess::start()?;
    eprintln!("backend on {}", backend.address);

    let mut results = Results::default();
    let mut targets = Vec::new();
    for &kind in &options.kinds {
        let proxy = start_target(kind, &options, backend.address, &dir)?;
        eprintln!("{} on {}", kind.name(), proxy.address);
        targets.push(proxy);
    }

    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let rounds = Rounds {
        client: &client,
        targets: &targets,
        options: &options,
        backend: backend.address,
        dir: &dir,
    };
    for round in 1..=options.rounds {
        eprintln!("round {round}/{}", options.rounds);
        rounds.run_one(&mut results)?;
    }
    drop(targets);

    let text = report::markdown(&results, &report_context(&options));
    std::fs::write(&options.output, &text)
        .map_err(|e| format!("{}: {e}", options.output.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(text)
}

/// `kind` in front of `backend` as the options say (the backend itself for the direct
/// baseline), its files in `dir`.
fn start_target(
    kind: Kind,
    options: &Options,
    backend: SocketAddr,
    dir: &Path,
) -> crate::Result<Proxy> {
    if kind == Kind::Direct {
        Ok(Proxy::direct(backend))
    } else {
        Proxy::start(kind, &options.binaries, options.workers, backend, dir)
    }
}

/// What every round runs on: the client's runtime, the started targets, and what it takes to
/// start a fresh instance of each.
struct Rounds<'a> {
    client: &'a tokio::runtime::Runtime,
    targets: &'a [Proxy],
    options: &'a Options,
    backend: SocketAddr,
    dir: &'a Path,
}

impl Rounds<'_> {
    /// Every case against every target in turn, into `results`.
    fn run_one(&self, results: &mut Results) -> crate::Result<()> {
        self.ping_pong_one_connection(results);
        self.ping_pong_sixteen_connections(results);
        self.throughput(results);
        self.connection_rate(results);
        self.inspected_connection_rate(results);
        self.sftp(results);
        self.idle_memory(results)
    }

    fn ping_pong_one_connection(&self, results: &mut Results) {
        for target in self.relaying_anything() {
            let case = PingPong {
                connections: 1,
                size: 100,
                duration: self.options.case_duration,
            };
            let outcome = self.client.block_on(case.run(&target.target(false)));
            if let Some(r) = results.record(target.kind, "ping-pong, 1 conn", outcome) {
                results.add(Metric::PingPong1P50, target.kind, r.p50_us);
                results.add(Metric::PingPong1P99, target.kind, r.p99_us);
                results.add(Metric::PingPong1P999, target.kind, r.p999_us);
            }
        }
    }

    fn ping_pong_sixteen_connections(&self, results: &mut Results) {
        for target in self.relaying_anything() {
            let case = PingPong {
                connections: 16,
                size: 100,
                duration: self.options.case_duration,
            };
            let outcome = self.client.block_on(case.run(&target.target(false)));
            if let Some(r) = results.record(target.kind, "ping-pong, 16 conns", outcome) {
                results.add(Metric::PingPong16P50, target.kind, r.p50_us);
                results.add(Metric::PingPong16P99, target.kind, r.p99_us);
            }
        }
    }

    fn throughput(&self, results: &mut Results) {
        let cases = [
            (1, Metric::Throughput1),
            (4, Metric::Throughput4),
            (100, Metric::Throughput100),
        ];
        for (streams, metric) in cases {
            // Bulk TLS is the cipher's work, alike everywhere: the TLS targets are here for
            // handshakes, latency and memory. 100 streams: how a tunnel shares its
            // connection (issue 20's tunnel row), for the tunnel targets.
            let runs_on = |t: &&Proxy| !t.kind.tls() && (streams < 100 || t.kind.tunnel());
            for target in self.relaying_anything().filter(runs_on) {
                let case = Throughput {
                    streams,
                    duration: self.options.case_duration,
                    verify_content: false,
                };
                let cpu_before = target.cpu_seconds();
                let outcome = self.client.block_on(case.run(target.address));
                let cpu = target.cpu_seconds() - cpu_before;
                if let Some(r) = results.record(target.kind, metric.label(), outcome) {
                    results.add(metric, target.kind, r.bytes_per_second / (1024.0 * 1024.0));
                    let gib = r.bytes as f64 / (1024.0 * 1024.0 * 1024.0);
                    if streams == 1 && target.kind != Kind::Direct && gib > 0.0 {
                        results.add(Metric::CpuPerGib, target.kind, cpu / gib);
                    }
                }
            }
        }
    }

    /// New connections/s; on a TLS target each a full handshake, then again each resuming
    /// a session.
    fn connection_rate(&self, results: &mut Results) {
        for target in self.relaying_anything() {
            let case = ConnectionRate {
                concurrency: 16,
                duration: self.options.case_duration,
            };
            let outcome = self.client.block_on(case.run(&target.target(false)));
            if let Some(r) = results.record(target.kind, "new connections/s", outcome) {
                results.add(Metric::ConnectionRate, target.kind, r.per_second);
            }
        }
        for target in self.targets.iter().filter(|t| t.kind.tls()) {
            let case = ConnectionRate {
                concurrency: 16,
                duration: self.options.case_duration,
            };
            let resuming = target.target(true);
            let outcome = self.client.block_on(case.run(&resuming));
            if let Some(r) = results.record(target.kind, "resumed TLS connections/s", outcome) {
                results.add(Metric::ResumedRate, target.kind, r.per_second);
                let share = resuming.tls.as_ref().map_or(0.0, |c| c.resumed_share());
                results.add(Metric::ResumedShare, target.kind, share * 100.0);
            }
        }
    }

    /// The targets that relay whatever the client sends (not the FIX and MQ ones, which
    /// need their protocol's first message).
    fn relaying_anything(&self) -> impl Iterator<Item = &Proxy> {
        self.targets.iter().filter(|t| t.kind.relays_anything())
    }

    /// A put and a get of the 256 MiB file, direct to the sshd and through the gateway, in
    /// turn; the ciphers each client negotiated go into the report's notes.
    fn sftp(&self, results: &mut Results) {
        use crate::proxies::sftp::{FILE_NAME, USER};
        let Some(gateway) = self.targets.iter().find(|t| t.kind == Kind::CausewaySftp) else {
            return;
        };
        let Some(origin) = &gateway.sftp else { return };
        let transfer = |server, key: &Path| SftpTransfer {
            server,
            user: USER.into(),
            key: key.to_path_buf(),
        };
        let paths = [
            (
                Kind::Direct,
                transfer(origin.sshd.address, &origin.direct_key),
            ),
            (
                Kind::CausewaySftp,
                transfer(gateway.address, &origin.gateway_key),
            ),
        ];
        let local = self.dir.join(FILE_NAME);
        let got = self.dir.join(format!("{FILE_NAME}-got"));
        for (kind, transfer) in &paths {
            let outcome = transfer.put(&local, FILE_NAME);
            if let Some(rate) = results.record(*kind, Metric::SftpPut.label(), outcome) {
                results.add(Metric::SftpPut, *kind, rate / (1024.0 * 1024.0));
            }
        }
        for (kind, transfer) in &paths {
            let outcome = transfer.get(FILE_NAME, &got, &local);
            if let Some(rate) = results.record(*kind, Metric::SftpGet.label(), outcome) {
                results.add(Metric::SftpGet, *kind, rate / (1024.0 * 1024.0));
            }
            if let Ok(cipher) = transfer.cipher() {
                let leg = match kind {
                    Kind::Direct => "client → sshd (direct)",
                    _ => "client → gateway",
                };
                results.note(format!("SFTP cipher, {leg}: {cipher}"));
            }
        }
        results.note(
            "SFTP cipher, gateway → sshd: aes256-gcm@openssh.com (the gateway's first choice \
             where it is the client; OpenSSH offers it)"
                .into(),
        );
    }

    /// New connections that open with a FIX Logon or an MQ initial segment: through the
    /// inspecting listener, and through the plain route with the same bytes.
    fn inspected_connection_rate(&self, results: &mut Results) {
        let inspected = [
            (Kind::CausewayFix, Metric::FixRate, Metric::FixFirstAnswer),
            (Kind::CausewayMq, Metric::MqRate, Metric::MqFirstAnswer),
        ];
        for (kind, rate, first_answer) in inspected {
            let Some(message) = kind.first_message() else {
                continue;
            };
            let runs_on = |t: &&Proxy| t.kind == kind || t.kind == Kind::Causeway;
            if !self.targets.iter().any(|t| t.kind == kind) {
                continue;
            }
            for target in self.targets.iter().filter(runs_on) {
                let case = ConnectionRate {
                    concurrency: 16,
                    duration: self.options.case_duration,
                };
                let mut client = target.target(false);
                client.first_message = Some(message.clone().into());
                let outcome = self.client.block_on(case.run(&client));
                if let Some(r) = results.record(target.kind, rate.label(), outcome) {
                    results.add(rate, target.kind, r.per_second);
                    results.add(first_answer, target.kind, r.first_answer_p50_us);
                }
            }
        }
    }

    /// Memory on a fresh instance each round: proxies keep pools after a first hold
    /// (HAProxy, Envoy), so a second hold on the same process would read as free.
    fn idle_memory(&self, results: &mut Results) -> crate::Result<()> {
        for target in self.relaying_anything() {
            let fresh = start_target(target.kind, self.options, self.backend, self.dir)?;
            self.idle_hold(&fresh, results);
        }
        Ok(())
    }

    /// Memory at start and per idle connection held through `fresh`.
    fn idle_hold(&self, fresh: &Proxy, results: &mut Results) {
        let before = fresh.rss_kib();
        if fresh.kind != Kind::Direct {
            results.add(Metric::FreshRss, fresh.kind, before as f64 / 1024.0);
        }
        let hold = IdleHold {
            connections: self.options.idle_connections,
            hold: self.options.idle_hold,
            open_concurrency: 64,
        };
        let outcome = self
            .client
            .block_on(hold.run(&fresh.target(false), || async {
                // Let the proxy settle after the last accept before reading its memory.
                tokio::time::sleep(Duration::from_millis(500)).await;
                fresh.rss_kib()
            }));
        let Some(r) = results.record(fresh.kind, "idle hold", outcome) else {
            return;
        };
        if fresh.kind != Kind::Direct {
            let per = r.measured.saturating_sub(before) as f64 * 1024.0 / r.connections as f64;
            results.add(Metric::IdleBytesPerConnection, fresh.kind, per);
        }
    }
}

/// The report's header facts: what ran, where, when, how.
fn report_context(options: &Options) -> report::Context {
    report::Context {
        kinds: options.kinds.clone(),
        versions: options
            .kinds
            .iter()
            .filter(|k| **k != Kind::Direct)
            .map(|k| (*k, crate::proxies::version(*k, &options.binaries)))
            .collect(),
        machine: machine(),
        date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        command: options.command.clone(),
        workers: options.workers,
        rounds: options.rounds,
        case_seconds: options.case_duration.as_secs_f64(),
        idle_connections: options.idle_connections,
        pinning: options.pinning.clone(),
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = command_output("sh", &["-c", "free -g | awk '/Mem:/ {print $2}'"]);
    format!(
        "{cores} cores ({cpu}), {memory} GiB RAM, Linux {}, loopback",
        command_output("uname", &["-r"])
    )
}
