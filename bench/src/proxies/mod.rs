//! The proxies under comparison: their configs (all with the same worker threads, no idle
//! timeout, no connection caps), starting and stopping them, and their memory.

mod envoy;
mod plain;
mod process;
pub mod sftp;
mod tls;
mod tunnel;

use process::{cpu_of, rss_of, tree_sum};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// No proxy: the client talks to the backend. The physical limit.
    Direct,
    Causeway,
    HaProxy,
    Nginx,
    Envoy,
    /// Causeway edge → HTTP/2 CONNECT tunnel (plaintext) → Causeway terminator → backend.
    CausewayTunnel,
    /// The same topology with two Envoys (tcp_proxy tunneling_config → HCM CONNECT).
    EnvoyTunnel,
    /// Both tunnel topologies with mutual TLS between the two ends.
    CausewayTunnelMtls,
    EnvoyTunnelMtls,
    /// Causeway with tracing on, every connection sampled, spans sent to a collector.
    CausewayTraced,
    /// Causeway with tracing on, 1 % of connections sampled.
    CausewayTracedSampled,
    /// Causeway relaying with splice(2) (`relay.splice: true`).
    CausewaySplice,
    /// Each proxy terminating TLS 1.3 (the same certificate and key exchange group), the
    /// plaintext to the backend.
    CausewayTls,
    HaProxyTls,
    NginxTls,
    EnvoyTls,
    /// Causeway inspecting FIX (routing on the Logon's TargetCompID) and IBM MQ (on the
    /// channel of the first segment): new connections only, against the plain route.
    CausewayFix,
    CausewayMq,
    /// SFTP: OpenSSH's client through Causeway's SSH listener (terminated, re-originated)
    /// to an OpenSSH sshd; the direct baseline is the same sshd.
    CausewaySftp,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Causeway => "causeway",
            Kind::HaProxy => "haproxy",
            Kind::Nginx => "nginx",
            Kind::Envoy => "envoy",
            Kind::CausewayTunnel => "causeway-tunnel",
            Kind::EnvoyTunnel => "envoy-tunnel",
            Kind::CausewayTunnelMtls => "causeway-tunnel-mtls",
            Kind::EnvoyTunnelMtls => "envoy-tunnel-mtls",
            Kind::CausewayTraced => "causeway-traced",
            Kind::CausewayTracedSampled => "causeway-traced-0.01",
            Kind::CausewaySplice => "causeway-splice",
            Kind::CausewayTls => "causeway-tls",
            Kind::HaProxyTls => "haproxy-tls",
            Kind::NginxTls => "nginx-tls",
            Kind::EnvoyTls => "envoy-tls",
            Kind::CausewayFix => "causeway-fix",
            Kind::CausewayMq => "causeway-mq",
            Kind::CausewaySftp => "causeway-sftp",
        }
    }

    /// Edge → HTTP/2 CONNECT tunnel → terminator.
    pub fn tunnel(self) -> bool {
        matches!(
            self,
            Kind::CausewayTunnel
                | Kind::EnvoyTunnel
                | Kind::CausewayTunnelMtls
                | Kind::EnvoyTunnelMtls
        )
    }

    /// What its clients say first, which it reads to route (None: anything goes).
    pub fn first_message(self) -> Option<Vec<u8>> {
        match self {
            Kind::CausewayFix => Some(crate::first_messages::fix_logon()),
            Kind::CausewayMq => Some(crate::first_messages::mq_initial()),
            _ => None,
        }
    }

    /// Relays whatever bytes its clients send (the echo cases run on it).
    pub fn relays_anything(self) -> bool {
        self.first_message().is_none() && self != Kind::CausewaySftp
    }

    /// Clients speak TLS 1.3 to it.
    pub fn tls(self) -> bool {
        matches!(
            self,
            Kind::CausewayTls | Kind::HaProxyTls | Kind::NginxTls | Kind::EnvoyTls
        )
    }

    /// Targets run only when asked for (`--only`): what tracing costs, what splice saves.
    pub fn extra() -> [Kind; 3] {
        [
            Kind::CausewayTraced,
            Kind::CausewayTracedSampled,
            Kind::CausewaySplice,
        ]
    }

    pub fn all() -> [Kind; 16] {
        [
            Kind::Direct,
            Kind::Causeway,
            Kind::HaProxy,
            Kind::Nginx,
            Kind::Envoy,
            Kind::CausewayTunnel,
            Kind::EnvoyTunnel,
            Kind::CausewayTunnelMtls,
            Kind::EnvoyTunnelMtls,
            Kind::CausewayTls,
            Kind::HaProxyTls,
            Kind::NginxTls,
            Kind::EnvoyTls,
            Kind::CausewayFix,
            Kind::CausewayMq,
            Kind::CausewaySftp,
        ]
    }
}

/// Where each program is.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub causeway: PathBuf,
    pub haproxy: PathBuf,
    pub nginx: PathBuf,
    pub nginx_stream_module: PathBuf,
    pub envoy: PathBuf,
}

pub struct Proxy {
    pub kind: Kind,
    pub address: SocketAddr,
    /// The processes (two for a tunnel topology: the inside one first).
    children: Vec<Child>,
    /// Processes beside it whose memory is not the proxy's (a trace collector).
    helpers: Vec<Child>,
    /// The SFTP server behind `causeway-sftp`.
    pub sftp: Option<sftp::SftpOrigin>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Proxy {
    pub fn direct(backend: SocketAddr) -> Proxy {
        Proxy {
            kind: Kind::Direct,
            address: backend,
            children: Vec::new(),
            helpers: Vec::new(),
            sftp: None,
        }
    }

    /// Starts `kind` in front of `backend` with `workers` threads/processes, files in `dir`.
    pub fn start(
        kind: Kind,
        bins: &Binaries,
        workers: usize,
        backend: SocketAddr,
        dir: &Path,
    ) -> crate::Result<Proxy> {
        let port = free_port();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let launch = Launch::new(kind, bins, workers, dir)?;
        let (mut children, mut helpers, mut sftp) = (Vec::new(), Vec::new(), None);
        let command = match kind {
            Kind::Direct => return Ok(Proxy::direct(backend)),
            Kind::CausewayTunnel | Kind::CausewayTunnelMtls => {
                let mtls = kind == Kind::CausewayTunnelMtls;
                launch.causeway_tunnel(address, backend, mtls, &mut children)?
            }
            Kind::EnvoyTunnel | Kind::EnvoyTunnelMtls => {
                let mtls = kind == Kind::EnvoyTunnelMtls;
                launch.envoy_tunnel(port, backend, mtls, &mut children)?
            }
            Kind::Causeway => launch.causeway_alone(address, backend, "")?,
            Kind::CausewaySplice => {
                launch.causeway_alone(address, backend, "relay: { splice: true }\n")?
            }
            Kind::HaProxy => launch.haproxy(address, backend)?,
            Kind::Nginx => launch.nginx(address, backend)?,
            Kind::Envoy => launch.envoy_alone(port, backend)?,
            Kind::CausewayTraced => launch.causeway_traced(address, backend, 1.0, &mut helpers)?,
            Kind::CausewayTracedSampled => {
                launch.causeway_traced(address, backend, 0.01, &mut helpers)?
            }
            Kind::CausewayTls => launch.causeway_tls(address, backend)?,
            Kind::HaProxyTls => launch.haproxy_tls(address, backend)?,
            Kind::NginxTls => launch.nginx_tls(address, backend)?,
            Kind::EnvoyTls => launch.envoy_tls(port, backend)?,
            Kind::CausewayFix => launch.causeway_inspecting(address, backend, "fix")?,
            Kind::CausewayMq => launch.causeway_inspecting(address, backend, "mq")?,
            Kind::CausewaySftp => {
                let origin = sftp::SftpOrigin::start(dir)?;
                let command = launch.causeway_sftp(address, &origin)?;
                sftp = Some(origin);
                command
            }
        };
        children.push(launch.spawn(command)?);
        let proxy = Proxy {
            kind,
            address,
            children,
            helpers,
            sftp,
        };
        proxy.wait_ready(dir)?;
        Ok(proxy)
    }

    /// How clients reach it: plain, or TLS (resuming sessions when `resume`).
    pub fn target(&self, resume: bool) -> crate::modes::Target {
        crate::modes::Target {
            address: self.address,
            tls: self.kind.tls().then(|| crate::tls::Client::new(resume)),
            first_message: self.kind.first_message().map(Into::into),
        }
    }

    /// Waits until a connection through the proxy echoes.
    fn wait_ready(&self, dir: &Path) -> crate::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        loop {
            if runtime.block_on(self.echoes_once()).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join(format!("{}.log", self.kind.name())))
                    .unwrap_or_default();
                return Err(format!("{} did not start: {log}", self.kind.name()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn echoes_once(&self) -> crate::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if self.kind == Kind::CausewaySftp {
            return self.greets_in_ssh().await;
        }
        let message = self.kind.first_message().unwrap_or(b"ready?".to_vec());
        let attempt = async {
            let mut conn = crate::modes::open(&self.target(false)).await?;
            conn.write_all(&message).await.map_err(|e| e.to_string())?;
            let mut answer = vec![0u8; message.len()];
            (conn.read_exact(&mut answer).await).map_err(|e| e.to_string())?;
            match answer == message {
                true => Ok(()),
                false => Err("wrong echo".to_string()),
            }
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .map_err(|_| "no answer".to_string())?
    }

    /// An SSH server's first words: its version line.
    async fn greets_in_ssh(&self) -> crate::Result<()> {
        use tokio::io::AsyncReadExt;
        let attempt = async {
            let mut conn =
                (tokio::net::TcpStream::connect(self.address).await).map_err(|e| e.to_string())?;
            let mut greeting = [0u8; 8];
            (conn.read_exact(&mut greeting).await).map_err(|e| e.to_string())?;
            match &greeting == b"SSH-2.0-" {
                true => Ok(()),
                false => Err("not an SSH server".to_string()),
            }
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .map_err(|_| "no greeting".to_string())?
    }

    /// Resident memory of the proxy and its child processes (nginx workers), in KiB.
    pub fn rss_kib(&self) -> u64 {
        (self.children.iter())
            .map(|c| tree_sum(c.id(), rss_of) as u64)
            .sum()
    }

    /// CPU time (user + system) the proxy and its child processes have used, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        self.children.iter().map(|c| tree_sum(c.id(), cpu_of)).sum()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let helpers = std::mem::take(&mut self.helpers);
        for mut child in self.children.drain(..).rev().chain(helpers) {
            // SIGTERM lets nginx's master take its workers down with it.
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut ended = false;
            while Instant::now() < deadline && !ended {
                ended = matches!(child.try_wait(), Ok(Some(_)));
                if !ended {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if !ended {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// `command`, set to be killed when the run ends, even a run stopped by a signal that skips
/// its cleanup.
pub(crate) fn dies_with_us(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(2) only, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// What starting one proxy takes: its programs, workers, config files in `dir` and one log
/// file for all its processes.
struct Launch<'a> {
    kind: Kind,
    bins: &'a Binaries,
    workers: usize,
    dir: &'a Path,
    log: std::fs::File,
}

impl<'a> Launch<'a> {
    fn new(kind: Kind, bins: &'a Binaries, workers: usize, dir: &'a Path) -> crate::Result<Self> {
        let log = std::fs::File::create(dir.join(format!("{}.log", kind.name())))
            .map_err(|e| e.to_string())?;
        Ok(Launch {
            kind,
            bins,
            workers,
            dir,
            log,
        })
    }

    /// Writes `text` to the file `name` in the directory.
    fn file(&self, name: &str, text: String) -> crate::Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    /// Runs `command` with its output in the log (on the proxies' CPUs under `--pin-load`).
    fn spawn(&self, mut command: Command) -> crate::Result<Child> {
        if let Some(cpus) = crate::affinity::proxy_cpus() {
            use std::os::unix::process::CommandExt;
            // SAFETY: sched_setaffinity(2) only, between fork and exec.
            unsafe { command.pre_exec(move || crate::affinity::set_affinity(&cpus)) };
        }
        dies_with_us(&mut command)
            .stdin(Stdio::null())
            .stdout(self.log.try_clone().map_err(|e| e.to_string())?)
            .stderr(self.log.try_clone().map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.kind.name()))
    }

    /// Causeway on the config `yaml` (written as `name`, with the workers, no admin and, like
    /// the rivals here, no connection cap: each listener sets `connection_limit` too).
    fn causeway(&self, name: &str, yaml: String) -> crate::Result<Command> {
        let config = self.file(
            name,
            format!(
                "workers: {}\nadmin: {{ enabled: false }}\nmax_connections: 1000000\n{yaml}",
                self.workers
            ),
        )?;
        let mut c = Command::new(&self.bins.causeway);
        c.args(["--log", "warn", "run", "--config"]).arg(config);
        Ok(c)
    }

    /// Envoy on the config `yaml` (written as `name`) with the workers.
    fn envoy(&self, name: &str, yaml: String) -> crate::Result<Command> {
        let config = self.file(name, yaml)?;
        let mut c = Command::new(&self.bins.envoy);
        c.arg("-c")
            .arg(config)
            .args(["--concurrency", &self.workers.to_string()])
            .args(["--disable-hot-restart", "-l", "warning"]);
        Ok(c)
    }
}

/// The version line each program prints about itself.
pub fn version(kind: Kind, bins: &Binaries) -> String {
    let (bin, args): (&Path, &[&str]) = match kind {
        Kind::Direct => return "-".into(),
        Kind::Causeway
        | Kind::CausewayTunnel
        | Kind::CausewayTunnelMtls
        | Kind::CausewayTraced
        | Kind::CausewayTracedSampled
        | Kind::CausewaySplice
        | Kind::CausewayTls
        | Kind::CausewayFix
        | Kind::CausewayMq
        | Kind::CausewaySftp => (&bins.causeway, &["--version"]),
        Kind::HaProxy | Kind::HaProxyTls => (&bins.haproxy, &["-v"]),
        Kind::Nginx | Kind::NginxTls => (&bins.nginx, &["-v"]),
        Kind::Envoy | Kind::EnvoyTunnel | Kind::EnvoyTunnelMtls | Kind::EnvoyTls => {
            (&bins.envoy, &["--version"])
        }
    };
    match Command::new(bin).args(args).output() {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("?")
                .to_string()
        }
        Err(e) => format!("unavailable: {e}"),
    }
}
