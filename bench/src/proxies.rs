//! The proxies under comparison: their configs (all with the same worker threads, no idle
//! timeout, no connection caps), starting and stopping them, and their memory.

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
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Causeway => "causeway",
            Kind::HaProxy => "haproxy",
            Kind::Nginx => "nginx",
            Kind::Envoy => "envoy",
        }
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
    child: Option<Child>,
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
            child: None,
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
        let file = |name: &str, text: String| -> crate::Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(path)
        };
        let log = std::fs::File::create(dir.join(format!("{}.log", kind.name())))
            .map_err(|e| e.to_string())?;
        let mut command = match kind {
            Kind::Direct => return Ok(Proxy::direct(backend)),
            Kind::Causeway => {
                let config = file(
                    "causeway.yaml",
                    format!(
                        "workers: {workers}\nadmin: {{ enabled: false }}\nlisteners:\n  - name: bench\n    address: {address}\n    routes: [{{ cluster: echo }}]\nclusters:\n  - {{ name: echo, endpoints: [{{ address: \"{backend}\" }}] }}\n"
                    ),
                )?;
                let mut c = Command::new(&bins.causeway);
                // Like the rivals here, no per-connection log lines.
                c.args(["--log", "warn", "run", "--config"]).arg(config);
                c
            }
            Kind::HaProxy => {
                let config = file(
                    "haproxy.cfg",
                    format!(
                        "global\n  nbthread {workers}\n  maxconn 9000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 24h\n  timeout server 24h\nlisten bench\n  bind {address}\n  server echo {backend}\n"
                    ),
                )?;
                let mut c = Command::new(&bins.haproxy);
                c.arg("-db").arg("-f").arg(config);
                c
            }
            Kind::Nginx => {
                let config = file(
                    "nginx.conf",
                    format!(
                        "load_module {module};\nworker_processes {workers};\nworker_rlimit_nofile 20000;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/nginx-error.log warn;\nevents {{ worker_connections 19000; }}\nstream {{\n  server {{\n    listen {address};\n    proxy_pass {backend};\n    proxy_timeout 24h;\n    proxy_half_close on;\n  }}\n}}\n",
                        module = bins.nginx_stream_module.display(),
                        dir = dir.display()
                    ),
                )?;
                let mut c = Command::new(&bins.nginx);
                c.arg("-e")
                    .arg(dir.join("nginx-error.log"))
                    .arg("-p")
                    .arg(dir)
                    .arg("-c")
                    .arg(config);
                c
            }
            Kind::Envoy => {
                let config = file(
                    "envoy.yaml",
                    format!(
                        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: bench
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: bench
          cluster: echo
          idle_timeout: 0s
  clusters:
  - name: echo
    type: STATIC
    connect_timeout: 5s
    circuit_breakers:
      thresholds:
      - {{ max_connections: 1000000, max_pending_requests: 1000000, max_requests: 1000000 }}
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: {ip}, port_value: {bport} }} }} }}
"#,
                        admin = free_port(),
                        ip = backend.ip(),
                        bport = backend.port()
                    ),
                )?;
                let mut c = Command::new(&bins.envoy);
                c.arg("-c")
                    .arg(config)
                    .args(["--concurrency", &workers.to_string()])
                    .args(["--disable-hot-restart", "-l", "warning"]);
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", kind.name()))?;
        let proxy = Proxy {
            kind,
            address,
            child: Some(child),
        };
        proxy.wait_ready(dir)?;
        Ok(proxy)
    }

    /// Waits until a connection through the proxy echoes.
    fn wait_ready(&self, dir: &Path) -> crate::Result<()> {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = std::net::TcpStream::connect(self.address).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.write_all(b"ready?")?;
                let mut answer = [0u8; 6];
                s.read_exact(&mut answer)?;
                Ok(answer == *b"ready?")
            });
            if let Ok(true) = attempt {
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

    /// Resident memory of the proxy and its child processes (nginx workers), in KiB.
    pub fn rss_kib(&self) -> u64 {
        match &self.child {
            Some(child) => tree_rss_kib(child.id()),
            None => 0,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets nginx's master take its workers down with it.
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn tree_rss_kib(root: u32) -> u64 {
    let mut total = rss_of(root);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(')')?.1.to_string();
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if parent == Some(root) {
                total += rss_of(pid);
            }
        }
    }
    total
}

/// The version line each program prints about itself.
pub fn version(kind: Kind, bins: &Binaries) -> String {
    let (bin, args): (&Path, &[&str]) = match kind {
        Kind::Direct => return "-".into(),
        Kind::Causeway => (&bins.causeway, &["--version"]),
        Kind::HaProxy => (&bins.haproxy, &["-v"]),
        Kind::Nginx => (&bins.nginx, &["-v"]),
        Kind::Envoy => (&bins.envoy, &["--version"]),
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
