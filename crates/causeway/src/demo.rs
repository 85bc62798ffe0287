//! `causeway demo`: a gateway on a built-in config in front of two echo backends, an active
//! one and a standby, all on loopback; plain TCP on one port, mutual TLS on another (with a
//! throwaway PKI made at start, in a temporary directory).

use crate::serve;
use demo::Backend;
use std::net::SocketAddr;
use std::process::ExitCode;
use tokio::io::AsyncWriteExt;

const DEMO_CONFIG: &str = r#"
drain:
  timeout: 2s
admin:
  address: 127.0.0.1:0
identities:
  - name: demo-server
    cert: "{dir}/server.pem"
    key: "{dir}/server-key.pem"
  - name: demo-ca
    bundle: "{dir}/ca.pem"
  - name: demo-client
    cert: "{dir}/client.pem"
    key: "{dir}/client-key.pem"
listeners:
  - name: demo
    address: "{listen}"
    routes:
      - cluster: echo
  - name: demo-tls
    address: "{tls_listen}"
    routes:
      - name: mtls
        terminate:
          identities: [demo-server]
          client_certificate: required
          trust: demo-ca
          allowed_clients: { spiffe_ids: ["spiffe://demo.causeway.test/client"] }
        cluster: echo
  - name: demo-fix
    address: "{fix_listen}"
    protocol: fix
    routes:
      - name: demo-venue
        match: { fix: { target_comp_id: [DEMOVENUE] } }
        authorization:
          rules: [{ action: allow, fix: { sender_comp_id: [CLIENT1, CLIENT2] } }]
          default: deny
        cluster: fix-venue
  - name: demo-mq
    address: "{mq_listen}"
    protocol: mq
    routes:
      - name: demo-channel
        match: { mq: { channel: [DEMO.SVRCONN] } }
        cluster: echo
  - name: demo-sftp
    address: "{sftp_listen}"
    protocol: ssh
    ssh:
      host_keys: ["{dir}/ssh_host_ed25519"]
      banner: "Causeway demo SFTP: user demo, password demo.\n"
      users:
        - { name: demo, password_hash: "{demo_hash}" }
    routes:
      - name: demo-sftp
        match: { ssh: { user: [demo] } }
        cluster: sftp-backend
        ssh: { private_key: "{dir}/upstream_ed25519", audit_log: "{dir}/sftp-audit.jsonl" }
  - name: demo-tunnel
    address: "{tunnel_listen}"
    routes:
      - cluster: through-tunnel
  - name: demo-terminator
    address: "{terminator}"
    routes:
      - name: tunnels
        terminate:
          identities: [demo-server]
          client_certificate: required
          trust: demo-ca
          alpn: [h2]
        connect: {}
        cluster: echo
clusters:
  - name: sftp-backend
    endpoints:
      - address: "{sftp_backend}"
    ssh:
      host_keys: ["{dir}/backend_host_ed25519.pub"]
  - name: through-tunnel
    endpoints:
      - address: "{terminator}"
    tls:
      trust: demo-ca
      identity: demo-client
      server_name: demo.causeway.test
      alpn: [h2]
    tunnel:
      authority: "echo:{active_port}"
      headers:
        - { name: x-causeway-client, value: "{source}" }
  - name: fix-venue
    health_check:
      interval: 1s
    endpoints:
      - address: "{fix_active}"
        priority: 0
      - address: "{fix_standby}"
        priority: 1
  - name: echo
    health_check:
      interval: 1s
    endpoints:
      - address: "{active}"
        priority: 0
      - address: "{standby}"
        priority: 1
"#;

/// Where the demo listens.
pub struct Addresses {
    pub listen: SocketAddr,
    pub tls_listen: SocketAddr,
    pub tunnel_listen: SocketAddr,
    pub fix_listen: SocketAddr,
    pub mq_listen: SocketAddr,
    pub sftp_listen: SocketAddr,
}

pub fn run(at: Addresses) -> ExitCode {
    on_runtime(2, async {
        let pki = match throwaway_pki() {
            Ok(dir) => dir,
            Err(e) => {
                eprintln!("cannot write the demo's certificates: {e}");
                return ExitCode::FAILURE;
            }
        };
        let dir = pki.path().display().to_string();
        let backends = match Backends::start(pki.path()).await {
            Ok(backends) => backends,
            Err(e) => {
                eprintln!("cannot set up the demo's SFTP server: {e}");
                return ExitCode::FAILURE;
            }
        };
        let config = demo_config(&at, &backends, &dir);
        let running = match serve::Running::start(&config, None).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}\n(choose another address with --listen 127.0.0.1:PORT)");
                return ExitCode::FAILURE;
            }
        };
        print_how_to_try_it(&running, &backends, &dir);
        running.serve_until_stopped().await;
        ExitCode::SUCCESS
    })
}

/// What the demo's gateway sends to: the echo pair, the FIX venue pair, the SFTP server.
struct Backends {
    active: Backend,
    standby: Backend,
    fix_active: Backend,
    fix_standby: Backend,
    sftp: demo::sftp_server::SftpServer,
}

impl Backends {
    /// Starts them all; the SFTP server's keys are written in `dir`, the only step that can
    /// fail.
    async fn start(dir: &std::path::Path) -> std::io::Result<Backends> {
        let active = greeting_echo("active").await;
        let standby = greeting_echo("standby").await;
        let (fix_active, _) = demo::fix::acceptor("DEMOVENUE").await;
        let (fix_standby, _) = demo::fix::acceptor("DEMOVENUE").await;
        let sftp = sftp_backend(dir).await?;
        Ok(Backends {
            active,
            standby,
            fix_active,
            fix_standby,
            sftp,
        })
    }
}

/// The built-in config with the demo's addresses, backends and PKI directory `dir` filled in.
fn demo_config(at: &Addresses, backends: &Backends, dir: &str) -> config::Config {
    let yaml = DEMO_CONFIG
        .replace("{fix_listen}", &at.fix_listen.to_string())
        .replace("{mq_listen}", &at.mq_listen.to_string())
        .replace("{sftp_listen}", &at.sftp_listen.to_string())
        .replace("{sftp_backend}", &backends.sftp.address.to_string())
        .replace("{demo_hash}", &ssh::credentials::hash_password("demo"))
        .replace("{fix_active}", &backends.fix_active.address.to_string())
        .replace("{fix_standby}", &backends.fix_standby.address.to_string())
        .replace("{listen}", &at.listen.to_string())
        .replace("{tls_listen}", &at.tls_listen.to_string())
        .replace("{tunnel_listen}", &at.tunnel_listen.to_string())
        .replace("{terminator}", &free_loopback_port().to_string())
        .replace("{dir}", dir)
        .replace("{active}", &backends.active.address.to_string())
        .replace("{active_port}", &backends.active.address.port().to_string())
        .replace("{standby}", &backends.standby.address.to_string());
    config::parse(&yaml, "<built-in demo config>").expect("the demo config is valid")
}

/// Where the running gateway listens for the demo's listener `name`.
fn listener(running: &serve::Running, name: &str, what: &str) -> SocketAddr {
    running.gateway.listener_address(name).expect(what)
}

/// What the demo prints once it runs: each listener and a command to try it with.
fn print_how_to_try_it(running: &serve::Running, backends: &Backends, dir: &str) {
    print_echo_and_tls(running, backends, dir);
    print_fix_and_mq(running, backends);
    print_sftp(running, backends, dir);
    let tunnel_address = listener(running, "demo-tunnel", "demo tunnel listener");
    println!();
    println!(
        "Through a tunnel: connections to {tunnel_address} are carried in an HTTP/2 CONNECT tunnel over mutual TLS to a terminator in the same process, which dials the echo cluster:"
    );
    println!("  nc {} {}", tunnel_address.ip(), tunnel_address.port());
    println!("Ctrl-C stops the demo.");
}

/// The plain listener in front of the echo pair, the admin API, the mutual TLS listener.
fn print_echo_and_tls(running: &serve::Running, backends: &Backends, dir: &str) {
    let address = listener(running, "demo", "demo listener");
    let tls_address = listener(running, "demo-tls", "demo TLS listener");
    println!("Causeway demo");
    println!("  gateway listening on {address}");
    println!(
        "  active echo backend  {} (priority 0)",
        backends.active.address
    );
    println!(
        "  standby echo backend {} (priority 1)",
        backends.standby.address
    );
    if let Some(admin) = running.admin.as_ref().and_then(|a| a.control) {
        println!("  admin API            http://{admin}/  (try /clusters and /connections)");
    }
    println!();
    println!("Try it:   nc {} {}", address.ip(), address.port());
    println!("Each connection is greeted by the backend it reached, then echoes what you type.");
    println!();
    println!("Mutual TLS on {tls_address} (a throwaway PKI in {dir}):");
    println!(
        "  openssl s_client -connect {tls_address} -servername demo.causeway.test -CAfile {dir}/ca.pem -cert {dir}/client.pem -key {dir}/client-key.pem"
    );
    println!(
        "Without -cert/-key (or with {dir}/stranger.pem and {dir}/stranger-key.pem, whose SPIFFE ID is not allowed) the handshake is refused."
    );
}

/// The FIX listener in front of the venue pair and the IBM MQ listener.
fn print_fix_and_mq(running: &serve::Running, backends: &Backends) {
    let fix_address = listener(running, "demo-fix", "demo FIX listener");
    let mq_address = listener(running, "demo-mq", "demo MQ listener");
    println!();
    println!(
        "FIX on {fix_address}: Logons to DEMOVENUE go to its active acceptor {} (standby {}); only CLIENT1 and CLIENT2 get in, others get a Logout saying why (from the repository root):",
        backends.fix_active.address, backends.fix_standby.address
    );
    println!("  python3 examples/fix-logon.py {fix_address} CLIENT1 DEMOVENUE");
    println!(
        "IBM MQ on {mq_address}: channel DEMO.SVRCONN goes to the echo cluster, other channels are refused:"
    );
    println!("  python3 examples/mq-initial.py {mq_address} DEMO.SVRCONN QM1");
}

/// The SSH listener in front of the built-in SFTP server.
fn print_sftp(running: &serve::Running, backends: &Backends, dir: &str) {
    let sftp_address = listener(running, "demo-sftp", "demo SFTP listener");
    println!(
        "SFTP on {sftp_address}: the gateway terminates SSH, checks user demo's password (demo) and logs in to a built-in SFTP server {} with its own key; files land in {dir}/sftp-root, one audit line per file operation in {dir}/sftp-audit.jsonl:",
        backends.sftp.address
    );
    println!(
        "  sftp -P {} demo@{}",
        sftp_address.port(),
        sftp_address.ip()
    );
}

/// The demo's SFTP server over `dir`/sftp-root, and the keys the gateway needs for it
/// (its host key, its key for the server, the server's public key), all made now.
async fn sftp_backend(dir: &std::path::Path) -> std::io::Result<demo::sftp_server::SftpServer> {
    use demo::sftp_server::{SftpServer, new_key};
    use ssh::russh::keys::ssh_key::LineEnding;
    let openssh = |e: ssh::russh::keys::ssh_key::Error| std::io::Error::other(e.to_string());
    let (gateway_host, upstream, backend_host) = (new_key(), new_key(), new_key());
    std::fs::write(
        dir.join("ssh_host_ed25519"),
        gateway_host
            .to_openssh(LineEnding::LF)
            .map_err(openssh)?
            .as_bytes(),
    )?;
    std::fs::write(
        dir.join("upstream_ed25519"),
        upstream
            .to_openssh(LineEnding::LF)
            .map_err(openssh)?
            .as_bytes(),
    )?;
    std::fs::write(
        dir.join("backend_host_ed25519.pub"),
        backend_host.public_key().to_openssh().map_err(openssh)?,
    )?;
    let root = dir.join("sftp-root");
    std::fs::create_dir_all(&root)?;
    std::fs::write(
        root.join("README.txt"),
        "Files put through the Causeway demo land here.\n",
    )?;
    Ok(SftpServer::start(root, backend_host, upstream.public_key().clone()).await)
}

/// A loopback address free now, for the demo's inside listener (the tunnel's terminator).
fn free_loopback_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 10447)))
}

/// A CA, the demo server's certificate, a client certificate the TLS route allows and one
/// it refuses, in a temporary directory removed when the demo ends.
fn throwaway_pki() -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("causeway-demo-")
        .tempdir()?;
    let ca = demo::pki::Ca::new("Causeway demo CA (throwaway)");
    ca.write(dir.path(), "ca");
    ca.server(&["demo.causeway.test"])
        .write(dir.path(), "server");
    ca.spiffe("spiffe://demo.causeway.test/client")
        .write(dir.path(), "client");
    ca.spiffe("spiffe://demo.causeway.test/stranger")
        .write(dir.path(), "stranger");
    Ok(dir)
}

/// An echo server that tells the client which backend it reached.
async fn greeting_echo(name: &'static str) -> Backend {
    Backend::start(move |mut stream| async move {
        let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let hello = format!("causeway demo: you reached the {name} backend ({local}); type a line and it echoes back\n");
        if stream.write_all(hello.as_bytes()).await.is_ok() {
            demo::echo(stream).await;
        }
    })
    .await
}

/// `causeway echo ADDRESS --name NAME [--proxy-protocol]`: a greeting echo server on a fixed
/// address.
pub fn echo_server(address: SocketAddr, name: &str, proxy_protocol: bool) -> ExitCode {
    on_runtime(1, async {
        let _server = if proxy_protocol {
            Backend::proxy_reporter_at(address, name).await
        } else {
            Backend::echo_at(address, name).await
        };
        println!("echo server `{name}` on {address}; Ctrl-C stops it");
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}

/// `causeway fix-acceptor ADDRESS --comp-id ID`: a FIX venue for the examples.
pub fn fix_acceptor(address: SocketAddr, comp_id: String, name: Option<String>) -> ExitCode {
    on_runtime(1, async {
        let listener = match tokio::net::TcpListener::bind(address).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{address}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("FIX acceptor `{comp_id}` on {address}; Ctrl-C stops it");
        tokio::select! {
            () = fixsim::run_acceptor(listener, comp_id, name) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        ExitCode::SUCCESS
    })
}

/// `causeway authorizer ADDRESS --verdict VERDICT`: a test ext_authz server.
pub fn authorizer(address: SocketAddr, verdict: &str) -> ExitCode {
    use demo::authorizer::{TestAuthorizer, Verdict};
    let string = authz::metadata::string;
    let verdict = match verdict.split_once(':') {
        None if verdict == "allow" => Verdict::Allow,
        None if verdict == "deny" => Verdict::Deny("denied by the test authorizer".into()),
        Some(("cluster", name)) => Verdict::Route(vec![("cluster".into(), string(name))]),
        Some(("address", target)) => Verdict::Route(vec![("address".into(), string(target))]),
        _ => {
            eprintln!("verdict `{verdict}`: use allow, deny, cluster:NAME or address:IP:PORT");
            return ExitCode::FAILURE;
        }
    };
    on_runtime(1, async {
        let _server = TestAuthorizer::start_at(address, verdict.clone()).await;
        println!("test authorizer on {address} answering {verdict:?}; Ctrl-C stops it");
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}

pub fn trace_receiver(address: SocketAddr, protocol: &str, quiet: bool) -> ExitCode {
    use demo::otlp::OtlpReceiver;
    on_runtime(1, async {
        let receiver = match protocol {
            "grpc" => OtlpReceiver::grpc_at(address).await,
            "http" => OtlpReceiver::http_at(address).await,
            _ => {
                eprintln!("protocol `{protocol}`: use grpc or http");
                return ExitCode::FAILURE;
            }
        };
        println!("OTLP/{protocol} trace receiver on {address}; Ctrl-C stops it");
        if quiet {
            let receiver = receiver.only_count();
            let _ = tokio::signal::ctrl_c().await;
            println!("{} spans received", receiver.count());
            return ExitCode::SUCCESS;
        }
        let mut printed = 0;
        loop {
            tokio::select! {
                count = receiver.more_than(printed) => {
                    for span in &receiver.spans()[printed..count] {
                        println!("{span}");
                    }
                    printed = count;
                }
                _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
            }
        }
    })
}

/// Runs `body` on a runtime of `workers` threads; a runtime that cannot start is a failure.
fn on_runtime(workers: usize, body: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match serve::runtime(workers) {
        Ok(runtime) => runtime.block_on(body),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
