//! The side-by-side run: one backend, every proxy started once, every case run against every
//! target in turn, round after round; then medians, ratios and memory into a report.

use crate::modes::{ConnectionRate, IdleHold, PingPong, Throughput};
use crate::proxies::{Binaries, Kind, Proxy};
use crate::report::{self, Metric, Results};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
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
}

/// The echo backend, in its own process so it competes with the proxies like a real server.
struct BackendProcess {
    child: Child,
    address: SocketAddr,
}

impl BackendProcess {
    fn start() -> crate::Result<Self> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["backend", "--listen", "127.0.0.1:0"])
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
    let backend = BackendProcess::start()?;
    eprintln!("backend on {}", backend.address);

    let mut results = Results::default();
    let mut targets = Vec::new();
    for &kind in &options.kinds {
        let proxy = if kind == Kind::Direct {
            Proxy::direct(backend.address)
        } else {
            Proxy::start(
                kind,
                &options.binaries,
                options.workers,
                backend.address,
                &dir,
            )?
        };
        eprintln!("{} on {}", kind.name(), proxy.address);
        targets.push(proxy);
    }

    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let d = options.case_duration;
    for round in 1..=options.rounds {
        eprintln!("round {round}/{}", options.rounds);
        for target in &targets {
            let case = PingPong {
                connections: 1,
                size: 100,
                duration: d,
            };
            let outcome = client.block_on(case.run(target.address));
            if let Some(r) = results.record(target.kind, "ping-pong, 1 conn", outcome) {
                results.add(Metric::PingPong1P50, target.kind, r.p50_us);
                results.add(Metric::PingPong1P99, target.kind, r.p99_us);
                results.add(Metric::PingPong1P999, target.kind, r.p999_us);
            }
        }
        for target in &targets {
            let case = PingPong {
                connections: 16,
                size: 100,
                duration: d,
            };
            let outcome = client.block_on(case.run(target.address));
            if let Some(r) = results.record(target.kind, "ping-pong, 16 conns", outcome) {
                results.add(Metric::PingPong16P50, target.kind, r.p50_us);
                results.add(Metric::PingPong16P99, target.kind, r.p99_us);
            }
        }
        for (streams, metric) in [(1, Metric::Throughput1), (4, Metric::Throughput4)] {
            for target in &targets {
                let case = Throughput {
                    streams,
                    duration: d,
                    verify_content: false,
                };
                let outcome = client.block_on(case.run(target.address));
                if let Some(r) = results.record(target.kind, metric.label(), outcome) {
                    results.add(metric, target.kind, r.bytes_per_second / (1024.0 * 1024.0));
                }
            }
        }
        for target in &targets {
            let case = ConnectionRate {
                concurrency: 16,
                duration: d,
            };
            let outcome = client.block_on(case.run(target.address));
            if let Some(r) = results.record(target.kind, "new connections/s", outcome) {
                results.add(Metric::ConnectionRate, target.kind, r.per_second);
            }
        }
        // Memory on a fresh instance each round: proxies keep pools after a first hold
        // (HAProxy, Envoy), so a second hold on the same process would read as free.
        for target in &targets {
            let fresh = match target.kind {
                Kind::Direct => Proxy::direct(backend.address),
                kind => Proxy::start(
                    kind,
                    &options.binaries,
                    options.workers,
                    backend.address,
                    &dir,
                )?,
            };
            let before = fresh.rss_kib();
            if fresh.kind != Kind::Direct {
                results.add(Metric::FreshRss, fresh.kind, before as f64 / 1024.0);
            }
            let hold = IdleHold {
                connections: options.idle_connections,
                hold: options.idle_hold,
                open_concurrency: 64,
            };
            let outcome = client.block_on(hold.run(fresh.address, || async {
                // Let the proxy settle after the last accept before reading its memory.
                tokio::time::sleep(Duration::from_millis(500)).await;
                fresh.rss_kib()
            }));
            let Some(r) = results.record(fresh.kind, "idle hold", outcome) else {
                continue;
            };
            if fresh.kind != Kind::Direct {
                let per = r.measured.saturating_sub(before) as f64 * 1024.0 / r.connections as f64;
                results.add(Metric::IdleBytesPerConnection, fresh.kind, per);
            }
        }
    }
    drop(targets);

    let ctx = report::Context {
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
    };
    let text = report::markdown(&results, &ctx);
    std::fs::write(&options.output, &text)
        .map_err(|e| format!("{}: {e}", options.output.display()))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(text)
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
