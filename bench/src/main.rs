//! `bench`: the load modes one at a time against any address, an echo backend, and `compare`.

use bench::compare::{self, Options};
use bench::modes::{ConnectionRate, IdleHold, PingPong, Target, Throughput};
use bench::proxies::{Binaries, Kind};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "bench", about = "Causeway's load tool and proxy comparison")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// An echo backend; prints `listening ADDRESS`.
    Backend {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Latency of request/response over N connections.
    PingPong {
        target: SocketAddr,
        #[arg(long, default_value_t = 1)]
        connections: usize,
        #[arg(long, default_value_t = 100)]
        size: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// TLS 1.3 to the target (a proxy terminating TLS).
        #[arg(long)]
        tls: bool,
    },
    /// Bulk echo throughput over N streams.
    Throughput {
        target: SocketAddr,
        #[arg(long, default_value_t = 1)]
        streams: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// New connections per second (open, exchange 16 bytes, close).
    ConnectionRate {
        target: SocketAddr,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// TLS 1.3 to the target: each connection a full handshake...
        #[arg(long)]
        tls: bool,
        /// ...or one that resumes a session.
        #[arg(long, requires = "tls")]
        resume: bool,
        /// Open each connection with a FIX Logon (`fix`) or an MQ initial segment (`mq`)
        /// instead of 16 bytes, for an inspecting listener.
        #[arg(long, value_parser = ["fix", "mq"])]
        first_message: Option<String>,
    },
    /// Open N connections, check they echo, hold them idle, check again.
    IdleHold {
        target: SocketAddr,
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// TLS 1.3 to the target (a proxy terminating TLS).
        #[arg(long)]
        tls: bool,
    },
    /// The release gateway for N minutes under churn of every kind of connection, reloads
    /// and authorizer flaps; fails on a corrupted byte, a kind that stops succeeding, or
    /// memory or descriptors trending up (docs/robustness.md, "Soak"). `scripts/soak` runs it.
    Soak(SoakArgs),
    /// Causeway, HAProxy, nginx and Envoy side by side, and the direct baseline; writes a
    /// Markdown report. `bench/compare` installs the rivals and runs this.
    Compare(CompareArgs),
}

#[derive(Args)]
struct SoakArgs {
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seconds not fitted (default: a fifth of the run, 20 s to 120 s).
    #[arg(long)]
    warmup: Option<f64>,
    /// Seconds between configuration reloads.
    #[arg(long, default_value_t = 4)]
    reload_every: u64,
    /// Where the CSV, the plot, the summary, the configuration and the gateway's log go.
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
    /// The gateway binary (default: `causeway` beside this program).
    #[arg(long)]
    causeway: Option<PathBuf>,
}

#[derive(Args)]
struct CompareArgs {
    /// A 2-minute subset for contributors: 1 round, 1 s per case, 1000 idle connections,
    /// written to bench/RESULTS-quick.md unless --output says otherwise.
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 1)]
    workers: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds per case and target.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Idle connections held per target: as many as the 20 000-descriptor limit allows with
    /// room to spare (a proxy holds two descriptors per connection; HAProxy's maxconn 9000).
    #[arg(long, default_value_t = 8000)]
    idle_connections: usize,
    #[arg(long, default_value_t = 2.0)]
    idle_seconds: f64,
    /// Targets to include, comma-separated (default: every target but the extra ones:
    /// causeway-traced, causeway-traced-0.01, causeway-splice).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Pins the load tool and the echo backend to this CPU, and every proxy to the other
    /// CPUs (for 1-vs-2-worker comparisons). Default: no pinning.
    #[arg(long)]
    pin_load: Option<usize>,
    #[arg(long, default_value = "/usr/sbin/haproxy")]
    haproxy: PathBuf,
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    #[arg(long, default_value = "/usr/lib/nginx/modules/ngx_stream_module.so")]
    nginx_stream_module: PathBuf,
    #[arg(long, default_value = ".venv/bin/envoy")]
    envoy: PathBuf,
    /// Where the report goes (default bench/RESULTS.md; bench/RESULTS-quick.md with --quick).
    #[arg(long)]
    output: Option<PathBuf>,
}

fn client<T>(f: impl std::future::Future<Output = bench::Result<T>>) -> bench::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(f)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Cmd) -> bench::Result<()> {
    match command {
        Cmd::Backend { listen } => client(echo_backend(listen)),
        Cmd::PingPong {
            target,
            connections,
            size,
            seconds,
            tls,
        } => client(
            PingPong {
                connections,
                size,
                duration: secs(seconds),
            }
            .run(&target_of(target, tls, false)),
        )
        .map(|r| println!("{r:?}")),
        Cmd::Throughput {
            target,
            streams,
            seconds,
        } => client(
            Throughput {
                streams,
                duration: secs(seconds),
                verify_content: false,
            }
            .run(target),
        )
        .map(|r| println!("{:.1} MiB/s ({r:?})", r.bytes_per_second / 1048576.0)),
        Cmd::ConnectionRate {
            target,
            concurrency,
            seconds,
            tls,
            resume,
            first_message,
        } => {
            let mut target = target_of(target, tls, resume);
            target.first_message = first_message.map(|m| match m.as_str() {
                "fix" => bench::first_messages::fix_logon().into(),
                _ => bench::first_messages::mq_initial().into(),
            });
            let case = ConnectionRate {
                concurrency,
                duration: secs(seconds),
            };
            let r = client(case.run(&target))?;
            let resumed = target.tls.as_ref().map(|c| c.resumed_share() * 100.0);
            println!("{r:?}, resumed: {resumed:?} %");
            Ok(())
        }
        Cmd::IdleHold {
            target,
            connections,
            seconds,
            tls,
        } => client(
            IdleHold {
                connections,
                hold: secs(seconds),
                open_concurrency: 64,
            }
            .run(&target_of(target, tls, false), || async { 0 }),
        )
        .map(|r| println!("{} connections held and echoing", r.connections)),
        Cmd::Compare(args) => compare(args),
        Cmd::Soak(args) => soak(args),
    }
}

fn target_of(address: SocketAddr, tls: bool, resume: bool) -> Target {
    Target {
        address,
        tls: tls.then(|| bench::tls::Client::new(resume)),
        first_message: None,
    }
}

/// An echo backend on `listen` until the process is stopped; prints `listening ADDRESS`.
async fn echo_backend(listen: SocketAddr) -> bench::Result<()> {
    let backend = testkit::Backend::start_at(listen, testkit::echo).await;
    println!("listening {}", backend.address);
    std::future::pending::<()>().await;
    Ok(())
}

fn soak(args: SoakArgs) -> bench::Result<()> {
    let causeway = match args.causeway {
        Some(path) => path,
        None => (std::env::current_exe().map_err(|e| e.to_string())?).with_file_name("causeway"),
    };
    bench::soak::run(bench::soak::Options {
        minutes: args.minutes,
        warmup: args.warmup,
        reload_every: Duration::from_secs(args.reload_every),
        out: args.out,
        causeway,
    })
}

/// The side-by-side run; prints the report it wrote.
fn compare(args: CompareArgs) -> bench::Result<()> {
    let kinds = match &args.only {
        None => Kind::all().to_vec(),
        Some(names) => (names.iter())
            .map(|name| {
                (Kind::all().into_iter())
                    .chain(Kind::extra())
                    .find(|k| k.name() == name)
                    .ok_or_else(|| format!("unknown target {name}"))
            })
            .collect::<bench::Result<Vec<_>>>()?,
    };
    let pinning = match args.pin_load {
        Some(cpu) => {
            let proxies = bench::affinity::pin_load(cpu)?;
            Some(format!(
                "load tool and echo backend on CPU {cpu}, proxies on CPUs {proxies:?}"
            ))
        }
        None => None,
    };
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let binaries = Binaries {
        causeway: exe.with_file_name("causeway"),
        haproxy: args.haproxy,
        nginx: args.nginx,
        nginx_stream_module: args.nginx_stream_module,
        envoy: args.envoy,
    };
    let command = std::env::var("CAUSEWAY_BENCH_COMMAND")
        .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    let (rounds, seconds, idle_connections, idle_seconds, output) = match args.quick {
        true => (1, 1.0, 1000, 1.0, "bench/RESULTS-quick.md"),
        false => (
            args.rounds,
            args.seconds,
            args.idle_connections,
            args.idle_seconds,
            "bench/RESULTS.md",
        ),
    };
    let text = compare::run(Options {
        kinds,
        workers: args.workers,
        rounds,
        case_duration: secs(seconds),
        idle_connections,
        idle_hold: secs(idle_seconds),
        binaries,
        output: args.output.unwrap_or_else(|| output.into()),
        command,
        pinning,
    })?;
    println!("{text}");
    Ok(())
}
