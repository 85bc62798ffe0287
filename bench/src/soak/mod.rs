//! `bench soak`: runs the release gateway as a child process for N minutes under churn of
//! every kind of connection it carries (plain, TLS terminated, an HTTP/2 CONNECT tunnel
//! from its edge to its own terminator, FIX routed on CompIDs, SFTP through its SSH
//! listener to a real sshd), with idle connections held throughout, configuration reloads
//! every few seconds and an ext_authz authorizer that flaps. Every byte is checked end to
//! end. It samples the process every second into a CSV and an SVG, and fails on a
//! corrupted byte, a kind that stops succeeding, or memory or descriptors trending up after
//! the warm-up (docs/robustness.md, "Soak").

mod chaos;
mod config;
mod drivers;
mod idle;
mod plot;
mod run;
mod sample;
mod sftp;
mod stats;
mod verdict;

use sample::Stage;
use stats::{Kind, KindStats};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::authorizer::{TestAuthorizer, Verdict};

pub struct Options {
    pub minutes: f64,
    /// Seconds; default a fifth of the run, at least 20 s, at most 2 minutes.
    pub warmup: Option<f64>,
    pub reload_every: Duration,
    pub out: PathBuf,
    pub causeway: PathBuf,
}

/// Churn and pause switches the drivers read, and the connections they have open now.
#[derive(Default)]
pub struct Control {
    stop: AtomicBool,
    pause: AtomicBool,
    pub in_flight: AtomicU64,
}

impl Control {
    pub fn stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    pub fn paused(&self) -> bool {
        self.pause.load(Relaxed)
    }
}

/// What every task of the soak shares.
pub struct Soak {
    pub addresses: config::Addresses,
    pub files: config::Files,
    pub config_path: PathBuf,
    pub gateway_pid: u32,
    pub tls: crate::tls::Client,
    pub ssh: testkit::ssh::Client,
    pub ssh_key: testkit::ssh::Credential,
    pub venue: Arc<testkit::fix::Venue>,
    pub control: Control,
    pub authz: chaos::AuthzState,
    pub authorizer: Mutex<Option<TestAuthorizer>>,
    pub reloads: chaos::Reloads,
    pub reload_every: Duration,
    stage: AtomicU8,
    stats: Vec<KindStats>,
}

impl Soak {
    pub fn stats(&self, kind: Kind) -> &KindStats {
        &self.stats[Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)]
    }

    fn stage(&self) -> Stage {
        match self.stage.load(Relaxed) {
            0 => Stage::Warmup,
            1 => Stage::Run,
            _ => Stage::Quiesce,
        }
    }

    fn set_stage(&self, stage: Stage) {
        self.stage.store(stage as u8, Relaxed);
    }
}

/// A seed that differs per run and per call.
pub fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_nanos() as u64)
        ^ COUNTER
            .fetch_add(1, Relaxed)
            .wrapping_mul(0x51_7CC1_B727_220A)
}

/// Runs the soak; `Err` when it failed (the summary says why).
pub fn run(options: Options) -> crate::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(soak(options))
}

/// The peers behind the gateway, which live as long as the run.
struct Peers {
    _echo: testkit::Backend,
    _venue: testkit::Backend,
    _sshd: testkit::ssh::Sshd,
}

async fn soak(options: Options) -> crate::Result<()> {
    let total = Duration::from_secs_f64(options.minutes * 60.0);
    let warmup = Duration::from_secs_f64(
        options
            .warmup
            .unwrap_or((total.as_secs_f64() / 5.0).clamp(20.0, 120.0)),
    );
    std::fs::create_dir_all(&options.out).map_err(|e| format!("{}: {e}", options.out.display()))?;
    let started = Instant::now();
    let (soak, peers, mut gateway) = start(&options).await?;
    println!(
        "soak: gateway pid {} up in {:.1}s; {} min, warm-up {}s, reload every {}s; samples in {}",
        soak.gateway_pid,
        started.elapsed().as_secs_f64(),
        options.minutes,
        warmup.as_secs(),
        options.reload_every.as_secs(),
        options.out.join("soak.csv").display()
    );
    let csv = sample::Csv::create(&options.out.join("soak.csv"))?;
    let result = run::drive(&soak, total, warmup, csv).await;
    stop_gateway(&mut gateway);
    drop(peers);
    report(&soak, &options, &result?, started)
}

/// Prints the summary, writes it and the plot beside the CSV; `Err` when the run failed.
fn report(
    soak: &Soak,
    options: &Options,
    driven: &run::Driven,
    started: Instant,
) -> crate::Result<()> {
    let run = verdict::Run {
        samples: &driven.samples,
        stats: &soak.stats,
        warm: driven.warm,
        end: driven.end,
        stalled: driven.stalled.clone(),
        reloads_sent: soak.reloads.sent.load(Relaxed),
        reloads_refused: soak.reloads.refused.load(Relaxed),
        flaps: soak.authz.flaps.load(Relaxed),
    };
    let failed = verdict::failures(&run);
    let mut text = verdict::summary(&run, &failed);
    for message in soak.reloads.messages.lock().unwrap().iter() {
        text.push_str(&format!("reload refused: {message}\n"));
    }
    let (rss, fds) = verdict::fits(&driven.samples);
    let svg = options.out.join("soak.svg");
    std::fs::write(&svg, plot::svg(&driven.samples, rss, fds))
        .map_err(|e| format!("{}: {e}", svg.display()))?;
    let summary = options.out.join("soak-summary.txt");
    std::fs::write(&summary, &text).map_err(|e| format!("{}: {e}", summary.display()))?;
    println!(
        "{text}soak: {:.0}s in all; {} samples in {}, plot {}, summary {}",
        started.elapsed().as_secs_f64(),
        driven.samples.len(),
        options.out.join("soak.csv").display(),
        svg.display(),
        summary.display()
    );
    match failed.is_empty() {
        true => Ok(()),
        false => Err(format!("soak failed: {}", failed.join("; "))),
    }
}

/// Starts the peers, writes the configuration and starts the gateway on it.
async fn start(options: &Options) -> crate::Result<(Arc<Soak>, Peers, Child)> {
    let dir = &options.out;
    let pki = crate::tls::Pki::write(dir)?;
    let echo = testkit::Backend::silent_echo().await;
    let (venue_backend, venue) = testkit::fix::acceptor("VENUE").await;
    let sshd = testkit::ssh::Sshd::start().await;
    let authorizer = TestAuthorizer::start(Verdict::Allow).await;
    let free = config::free_address;
    let addresses = config::Addresses {
        admin: free(),
        plain: free(),
        tls: free(),
        edge: free(),
        terminator: free(),
        fix: free(),
        ssh: free(),
        spare: free(),
        echo: echo.address,
        venue: venue_backend.address,
        sshd: sshd.address,
        authorizer: authorizer.address,
    };
    let keys = testkit::ssh::example_keys();
    let files = config::Files {
        cert: pki.cert,
        key: pki.key,
        certs: keys.join("../certs"),
        host_key: testkit::ssh::private_key(dir, "gateway_host_ed25519"),
        upstream_key: testkit::ssh::private_key(dir, "upstream_ed25519"),
        keys,
        // Written (the writer is part of the soak) but not kept: ~30 MB a minute.
        access_log: PathBuf::from("/dev/null"),
    };
    let config_path = dir.join("causeway.yaml");
    config::write(&config_path, &config::yaml(&addresses, &files, false))?;
    let gateway = spawn_gateway(options, &config_path)?;
    let ssh = testkit::ssh::Client::new(addresses.ssh);
    let ssh_key = ssh.key("alice");
    let soak = Arc::new(Soak {
        gateway_pid: gateway.id(),
        addresses,
        files,
        config_path,
        tls: crate::tls::Client::new(false),
        ssh,
        ssh_key,
        venue,
        control: Control::default(),
        authz: chaos::AuthzState::new(),
        authorizer: Mutex::new(None),
        reloads: chaos::Reloads::default(),
        reload_every: options.reload_every,
        stage: AtomicU8::new(0),
        stats: Kind::ALL.iter().map(|k| KindStats::new(*k)).collect(),
    });
    *soak.authorizer.lock().unwrap() = Some(authorizer);
    wait_ready(&soak, options).await?;
    let peers = Peers {
        _echo: echo,
        _venue: venue_backend,
        _sshd: sshd,
    };
    Ok((soak, peers, gateway))
}

fn spawn_gateway(options: &Options, config: &std::path::Path) -> crate::Result<Child> {
    let log_path = options.out.join("causeway.log");
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut command = Command::new(&options.causeway);
    command
        .args(["--log", "warn", "run", "--config"])
        .arg(config);
    crate::proxies::dies_with_us(&mut command)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", options.causeway.display()))
}

/// Waits (20 s at most) until the admin API says ready.
async fn wait_ready(soak: &Soak, options: &Options) -> crate::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok((200, _)) = sample::http(soak.addresses.admin, "GET", "/ready").await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(options.out.join("causeway.log")).unwrap_or_default();
    Err(format!("the gateway did not become ready in 20 s:\n{log}"))
}

fn stop_gateway(gateway: &mut Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(gateway.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if matches!(gateway.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = gateway.kill();
    let _ = gateway.wait();
}
