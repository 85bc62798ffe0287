//! The real binary: validate's exit codes, and SIGTERM draining live connections.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use testkit::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_causeway");

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn temp_config(yaml: &str) -> tempfile_lite::TempFile {
    tempfile_lite::TempFile::new(yaml)
}

/// A tiny temp file helper (no extra dependency).
pub(crate) mod tempfile_lite {
    use std::path::{Path, PathBuf};
    pub struct TempFile(PathBuf);
    impl TempFile {
        pub fn new(contents: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("causeway-test-{}-{n}.yaml", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Every example validates from the repository root, as the docs run them (their files —
/// certificates, keys — are opened and read too).
#[test]
fn validate_accepts_every_example() {
    let mut checked = 0;
    let shipped = [
        "examples/migrating-from-envoy/causeway.yaml",
        "deploy/debian/causeway.yaml",
    ]
    .map(repo_file);
    let examples = std::fs::read_dir(repo_file("examples")).unwrap();
    for path in examples.map(|e| e.unwrap().path()).chain(shipped) {
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = Command::new(BIN)
                .args(["validate", "--config"])
                .arg(&path)
                .current_dir(repo_file(""))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 3, "no example configs found");
}

/// The Envoy side of docs/migrating-from-envoy.md is a configuration the real Envoy accepts.
#[test]
fn envoy_accepts_the_migration_examples_envoy_config() {
    let out = Command::new(crate::tunnels::Envoy::binary())
        .args([
            "--mode",
            "validate",
            "--use-dynamic-base-id",
            "-l",
            "error",
            "-c",
        ])
        .arg(repo_file("examples/migrating-from-envoy/envoy.yaml"))
        .current_dir(repo_file(""))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn validate_reports_file_line_col_and_exits_1() {
    let file = temp_config(
        "listeners:\n  - name: l\n    address: 127.0.0.1:1\n    routes: [{ cluster: nowhere }]\n",
    );
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:4:25: route `route-0` names cluster `nowhere`, which is not defined",
        file.path().display()
    );
    assert_eq!(stderr.trim(), expected);
}

/// `${VAR}` and `${VAR:-default}` take the environment's values; an unset variable without
/// a default is reported at its place.
#[test]
fn configuration_values_come_from_the_environment() {
    let file = temp_config(
        "listeners:\n  - name: l\n    address: ${LISTEN_ADDRESS}\n    routes: [{ cluster: c }]\nclusters:\n  - { name: c, endpoints: [{ address: \"${BACKEND:-127.0.0.1:9}\" }] }\n",
    );
    let validate = |listen: Option<&str>| {
        let mut command = Command::new(BIN);
        command.args(["validate", "--config"]).arg(file.path());
        command.env_remove("LISTEN_ADDRESS").env_remove("BACKEND");
        if let Some(address) = listen {
            command.env("LISTEN_ADDRESS", address);
        }
        command.output().unwrap()
    };
    let out = validate(Some("127.0.0.1:10000"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = validate(None);
    assert_eq!(out.status.code(), Some(1));
    let expected = format!(
        "{}:3:14: environment variable `LISTEN_ADDRESS` is not set (a default: `${{LISTEN_ADDRESS:-VALUE}}`)",
        file.path().display()
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), expected);
}

/// `validate` opens every file the configuration names, as `run` would: a missing key or
/// an unreadable SSH host key is reported with its path, before anything runs.
#[test]
fn validate_opens_the_files_the_configuration_names() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-key.pem");
    let ca = testkit::pki::Ca::new("validate CA");
    let (cert, _) = ca.server(&["x.test"]).write(dir.path(), "server");
    let identity = format!(
        "identities:\n  - {{ name: server, cert: \"{}\", key: \"{}\" }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ terminate: {{ identities: [server] }}, cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"127.0.0.1:9\" }}] }}\n",
        cert.display(),
        missing.display()
    );
    // The SFTP tests' gateway, its host key gone.
    let ssh = crate::sftp::gateway_yaml("127.0.0.1:9", "", &crate::sftp::pinned())
        .replace("gateway_host_ed25519", "no-such-host-key");
    let host_key = std::path::PathBuf::from("no-such-host-key");
    for (yaml, path) in [(identity, missing), (ssh, host_key)] {
        let file = temp_config(&yaml);
        let out = Command::new(BIN)
            .args(["validate", "--config"])
            .arg(file.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&path.display().to_string()),
            "names the file: {stderr}"
        );
    }
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("causeway "));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["run", "validate", "demo"] {
        assert!(help.contains(command), "{help}");
    }
}

/// A gateway process whose stderr is watched for the listening address.
pub(crate) struct Process {
    child: Child,
    pub address: SocketAddr,
    lines: mpsc::Receiver<String>,
    pub _config: Option<tempfile_lite::TempFile>,
}

impl Process {
    pub fn start(yaml: &str) -> Process {
        let config = temp_config(yaml);
        let mut process = Process::run(config.path());
        process._config = Some(config);
        process
    }

    /// The same, allowed at most `limit` open files (prlimit(1) execs the gateway: the
    /// child's pid is the gateway's).
    pub fn start_with_open_files(yaml: &str, limit: u64) -> Process {
        let config = temp_config(yaml);
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={limit}:{limit}"))
            .arg("--")
            .arg(BIN);
        let mut process = Process::run_as(command, config.path());
        process._config = Some(config);
        process
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn run(config: &std::path::Path) -> Process {
        Process::run_as(Command::new(BIN), config)
    }

    fn run_as(mut command: Command, config: &std::path::Path) -> Process {
        let mut child = command
            .args(["run", "--config"])
            .arg(config)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut process = Process {
            child,
            address: "0.0.0.0:0".parse().unwrap(),
            lines,
            _config: None,
        };
        process.address = process.wait_for_address("listening");
        process
    }

    /// Waits for a log line containing `text` and returns the `address=` it names.
    pub fn wait_for_address(&mut self, text: &str) -> SocketAddr {
        let line = self.wait_for(text);
        let address = line
            .rsplit("address=")
            .next()
            .unwrap()
            .split_whitespace()
            .next();
        address
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }

    pub fn wait_for(&mut self, text: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("gateway never logged {text:?}"),
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "gateway did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain_config(backend: &Backend, timeout: &str) -> String {
    format!(
        "drain: {{ timeout: {timeout} }}\nadmin: {{ address: 127.0.0.1:0 }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
        backend.address
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_lets_live_connections_finish() {
    testkit::bounded(async {
        let echo = Backend::silent_echo().await;
        let mut gw = Process::start(&drain_config(&echo, "30s"));
        let mut live = TcpStream::connect(gw.address).await.unwrap();
        live.write_all(b"before").await.unwrap();
        let mut buf = [0u8; 6];
        live.read_exact(&mut buf).await.unwrap();

        gw.signal(libc::SIGTERM);
        tokio::task::block_in_place(|| gw.wait_for("stopped accepting"));
        assert!(
            TcpStream::connect(gw.address).await.is_err(),
            "new connections are refused while draining"
        );
        live.write_all(b"during").await.unwrap();
        live.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"during", "the live connection still relays");

        live.shutdown().await.unwrap();
        let mut rest = Vec::new();
        live.read_to_end(&mut rest).await.unwrap();
        let status = tokio::task::block_in_place(|| gw.wait_exit());
        assert!(status.success(), "{status:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_closes_what_is_left_and_exits() {
    testkit::bounded(async {
        let echo = Backend::silent_echo().await;
        let mut gw = Process::start(&drain_config(&echo, "300ms"));
        let mut live = TcpStream::connect(gw.address).await.unwrap();
        live.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        live.read_exact(&mut byte).await.unwrap();

        gw.signal(libc::SIGTERM);
        let line = tokio::task::block_in_place(|| gw.wait_for("connection closed"));
        assert!(line.contains("reason=shutdown"), "{line}");
        assert_eq!(
            live.read(&mut byte).await.unwrap(),
            0,
            "closed by the gateway"
        );
        let status = tokio::task::block_in_place(|| gw.wait_exit());
        assert!(status.success(), "{status:?}");
        let _ = std::io::stderr().flush();
    })
    .await
}

/// examples/basic.yaml exactly as docs/getting-started.md runs it, on its fixed ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_example_fails_over_and_back_as_documented() {
    testkit::bounded(async {
        use testkit::Client;
        let mut active = Backend::echo_at("127.0.0.1:10001".parse().unwrap(), "active").await;
        let _standby = Backend::echo_at("127.0.0.1:10002".parse().unwrap(), "standby").await;
        let mut gw = Process::run(&repo_file("examples/basic.yaml"));
        assert_eq!(gw.address, "127.0.0.1:10000".parse().unwrap());
        assert_eq!(Client::greeted(gw.address).await.1, "active");

        active.stop().await;
        let stopped = tokio::time::Instant::now();
        // At once: the failed connect moves on to the standby.
        let (mut held, name) = Client::greeted(gw.address).await;
        assert_eq!(name, "standby");
        // Within 3 s the health check has marked the active down.
        let line = tokio::task::block_in_place(|| gw.wait_for("healthy=false"));
        assert!(stopped.elapsed() < Duration::from_secs(3), "{line}");
        assert_eq!(Client::greeted(gw.address).await.1, "standby");

        active.resume().await;
        tokio::task::block_in_place(|| gw.wait_for("healthy=true"));
        assert_eq!(Client::greeted(gw.address).await.1, "active");
        held.assert_echo("the standby connection is unaffected")
            .await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_how_to_try_it_and_serves() {
    testkit::bounded(async {
        let mut child = tokio::process::Command::new(BIN)
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--tls-listen",
                "127.0.0.1:0",
                "--fix-listen",
                "127.0.0.1:0",
                "--mq-listen",
                "127.0.0.1:0",
                "--sftp-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut address, mut openssl, mut tunnel) = (None, None, None);
        let (mut fix, mut mq, mut sftp, mut admin) = (None, None, None, None);
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.trim().strip_prefix("admin API") {
                let url = rest.split_whitespace().next().unwrap();
                let address = url.trim_start_matches("http://").trim_end_matches('/');
                admin = Some(address.parse::<SocketAddr>().unwrap());
            }
            if let Some(rest) = line.trim().strip_prefix("sftp -P ") {
                let (port, target) = rest.split_once(' ').unwrap();
                let (user, host) = target.split_once('@').unwrap();
                let address = format!("{host}:{port}").parse::<SocketAddr>().unwrap();
                sftp = Some((user.to_string(), address));
            }
            if line.trim().starts_with("python3 examples/fix-logon.py") {
                fix = Some(line.trim().to_string());
            }
            if line.trim().starts_with("python3 examples/mq-initial.py") {
                mq = Some(line.trim().to_string());
            }
            if let Some(rest) = line.trim().strip_prefix("Try it:   nc ") {
                let (host, port) = rest.split_once(' ').unwrap();
                address = Some(format!("{host}:{port}").parse::<SocketAddr>().unwrap());
            }
            if line.trim().starts_with("openssl s_client") {
                openssl = Some(line.trim().to_string());
            }
            if openssl.is_some()
                && let Some(rest) = line.trim().strip_prefix("nc ")
            {
                let (host, port) = rest.split_once(' ').unwrap();
                tunnel = Some(format!("{host}:{port}").parse::<SocketAddr>().unwrap());
                break;
            }
        }
        let tunnel = tunnel.expect("the demo prints how to try the tunnel");
        let (mut through, greeting) = testkit::Client::greeted(tunnel).await;
        assert!(greeting.contains("active backend"), "{greeting}");
        through.assert_echo("through the demo's tunnel").await;
        let address = address.expect("the demo prints an nc command");
        let (mut client, greeting) = testkit::Client::greeted(address).await;
        assert!(greeting.contains("active backend"), "{greeting}");
        client.assert_echo("hello demo").await;
        drop(client);

        // The printed openssl command reaches the same backend over mutual TLS.
        let openssl = openssl.expect("the demo prints an openssl command");
        let mut tls = tokio::process::Command::new("sh")
            .args(["-c", &format!("{openssl} -quiet")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut out = tokio::io::BufReader::new(tls.stdout.take().unwrap()).lines();
        let greeting = out.next_line().await.unwrap().unwrap_or_default();
        assert!(greeting.contains("active backend"), "{greeting}");
        drop(tls);

        // The printed FIX and MQ commands, from the repository root.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let run = |command: String| {
            let root = root.clone();
            async move {
                let out = tokio::process::Command::new("sh")
                    .args(["-c", &command])
                    .current_dir(root)
                    .output()
                    .await
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
        };
        let fix = fix.expect("the demo prints a FIX command");
        let logon = run(fix.clone()).await;
        assert!(logon.contains("|35=A|49=DEMOVENUE|56=CLIENT1|"), "{logon}");
        let refused = run(fix.replace("CLIENT1", "CLIENT9")).await;
        assert!(
            refused.contains("|35=5|49=DEMOVENUE|56=CLIENT9|"),
            "{refused}"
        );
        assert!(refused.contains("|58=not authorized|"), "{refused}");
        let mq = run(mq.expect("the demo prints an MQ command")).await;
        assert!(mq.contains("active backend"), "{mq}");

        // The printed sftp command, with the password the demo gives, to its SFTP server.
        let (user, address) = sftp.expect("the demo prints an sftp command");
        let client = testkit::ssh::Client::trusting_any_host_key(address);
        let file = client.dir().join("hello.txt");
        std::fs::write(&file, "through the demo's SFTP\n").unwrap();
        let password = testkit::ssh::Credential::Password("demo".into());
        let batch = format!(
            "put {} hello.txt\nls\nget hello.txt {}.back\n",
            file.display(),
            file.display()
        );
        let session = client.sftp(&user, &password, &batch).await;
        assert!(
            session.success && session.stdout.contains("README.txt"),
            "{session:?}"
        );
        assert_eq!(
            std::fs::read_to_string(format!("{}.back", file.display())).unwrap(),
            "through the demo's SFTP\n"
        );
        // After all that, /metrics passes `promtool check metrics`: every family has HELP.
        let admin = admin.expect("the demo prints its admin API");
        let (status, metrics) = crate::admin::http(admin, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert_promtool_clean(&metrics).await;
        for family in [
            "causeway_build_info{",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(metrics.contains(family), "{family} in {metrics}");
        }
        // SAFETY: kill(2) with our own child's pid.
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
        let status = child.wait().await.unwrap();
        assert!(status.success(), "{status:?}");
    })
    .await
}

/// `promtool check metrics` (Prometheus' own linter) has nothing to say about `metrics`.
async fn assert_promtool_clean(metrics: &str) {
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool is installed (scripts/test installs it)");
    let mut stdin = promtool.stdin.take().unwrap();
    stdin.write_all(metrics.as_bytes()).await.unwrap();
    drop(stdin);
    let out = promtool.wait_with_output().await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{metrics}"
    );
    assert!(metrics.contains("# HELP causeway_"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_an_invalid_file_changes_nothing() {
    testkit::bounded(async {
        use testkit::Client;
        let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
        let yaml = |cluster: &str| {
            format!(
                "admin: {{ enabled: false }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: {cluster} }}]\nclusters:\n  - {{ name: a, endpoints: [{{ address: \"{}\" }}] }}\n  - {{ name: b, endpoints: [{{ address: \"{}\" }}] }}\n",
                a.address, b.address
            )
        };
        let mut gw = Process::start(&yaml("a"));
        let (mut live, name) = Client::greeted(gw.address).await;
        assert_eq!(name, "a");
        let path = gw._config.as_ref().unwrap().path().to_path_buf();

        std::fs::write(&path, yaml("b")).unwrap();
        gw.signal(libc::SIGHUP);
        tokio::task::block_in_place(|| gw.wait_for("configuration reloaded"));
        assert_eq!(Client::greeted(gw.address).await.1, "b", "same port, new route");

        std::fs::write(&path, "listeners: [ {").unwrap();
        gw.signal(libc::SIGHUP);
        let line = tokio::task::block_in_place(|| gw.wait_for("reload refused"));
        assert!(line.contains("previous configuration stays"), "{line}");
        assert_eq!(Client::greeted(gw.address).await.1, "b", "still the last good config");
        live.assert_echo("the first connection never noticed").await;
    })
    .await
}

/// With `reload.watch`, replacing the file (as an editor or a ConfigMap update does: write
/// elsewhere, rename over) reloads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_configuration_reloads_when_the_file_is_replaced() {
    testkit::bounded(async {
        use testkit::Client;
        let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
        let yaml = |cluster: &str| {
            format!(
                "reload: {{ watch: true }}\nadmin: {{ enabled: false }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: {cluster} }}]\nclusters:\n  - {{ name: a, endpoints: [{{ address: \"{}\" }}] }}\n  - {{ name: b, endpoints: [{{ address: \"{}\" }}] }}\n",
                a.address, b.address
            )
        };
        let mut gw = Process::start(&yaml("a"));
        tokio::task::block_in_place(|| gw.wait_for("watching the configuration"));
        assert_eq!(Client::greeted(gw.address).await.1, "a");
        let path = gw._config.as_ref().unwrap().path().to_path_buf();
        let staged = path.with_extension("staged");
        std::fs::write(&staged, yaml("b")).unwrap();
        std::fs::rename(&staged, &path).unwrap();
        tokio::task::block_in_place(|| gw.wait_for("configuration reloaded"));
        assert_eq!(Client::greeted(gw.address).await.1, "b");
    })
    .await
}

/// Zero-downtime upgrade: a second process joins the first on the same port (SO_REUSEPORT),
/// the first drains away; a client connecting in a loop throughout is never refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_hand_over_a_port_without_refusing_a_connection() {
    testkit::bounded(async {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
        // The kernel must move a closing listener's queued requests to its sibling (see
        // docs/operations.md); scripts/test turns it on, as root.
        let migrate = "/proc/sys/net/ipv4/tcp_migrate_req";
        if std::fs::read_to_string(migrate).map(|v| v.trim() != "1").unwrap_or(true) {
            let _ = std::fs::write(migrate, "1");
        }
        assert_eq!(
            std::fs::read_to_string(migrate).map(|v| v.trim().to_string()).ok().as_deref(),
            Some("1"),
            "net.ipv4.tcp_migrate_req must be 1 for a hand-over without resets (run scripts/test as root)"
        );
        let echo = Backend::echo("e").await;
        let port = testkit::closed_port();
        let yaml = format!(
            "admin: {{ enabled: false }}\ndrain: {{ timeout: 5s, delay: 200ms }}\nlisteners:\n  - name: l\n    address: \"{port}\"\n    reuse_port: true\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            echo.address
        );
        let mut old = Process::start(&yaml);

        let (stop, ok, refused) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let prober = tokio::spawn({
            let (stop, ok, refused) = (stop.clone(), ok.clone(), refused.clone());
            async move {
                while !stop.load(Relaxed) {
                    match TcpStream::connect(port).await {
                        Ok(mut s) => {
                            let mut greeting = [0u8; 2];
                            match s.read_exact(&mut greeting).await {
                                Ok(_) => ok.fetch_add(1, Relaxed),
                                Err(_) => refused.fetch_add(1, Relaxed),
                            };
                        }
                        Err(_) => {
                            refused.fetch_add(1, Relaxed);
                        }
                    }
                }
            }
        });

        let new = Process::start(&yaml);
        old.signal(libc::SIGTERM);
        let status = tokio::task::block_in_place(|| old.wait_exit());
        assert!(status.success(), "{status:?}");
        let before = ok.load(Relaxed);
        testkit::eventually("the new process serves alone", || ok.load(Relaxed) > before + 50).await;
        stop.store(true, Relaxed);
        prober.await.unwrap();
        assert_eq!(refused.load(Relaxed), 0, "no connection attempt failed ({} succeeded)", ok.load(Relaxed));
        drop(new);
    })
    .await
}

/// A FIX client that puts a newline in its SenderCompID cannot forge a line of the
/// process log: the refusal's line shows the CompID with the newline escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newline_in_a_compid_does_not_forge_a_log_line() {
    testkit::bounded(async {
        let backend = Backend::echo("venue").await;
        let yaml = format!(
            "admin: {{ enabled: false }}\nlisteners:\n  - name: fix\n    address: 127.0.0.1:0\n    protocol: fix\n    routes: [{{ match: {{ fix: {{ target_comp_id: [VENUE1] }} }}, cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            backend.address
        );
        let mut gw = Process::start(&yaml);
        let fields = [
            (35, "A"),
            (49, "EVIL\nWARN forged line"),
            (56, "NOWHERE"),
            (34, "1"),
            (52, "20261128-12:00:00.000"),
        ];
        let mut client = TcpStream::connect(gw.address).await.unwrap();
        let logon = protocols::fix::encode("FIX.4.4", &fields);
        client.write_all(&logon).await.unwrap();
        let mut logout = Vec::new();
        let _ = client.read_to_end(&mut logout).await;
        let line = tokio::task::block_in_place(|| gw.wait_for("sender_comp_id="));
        assert!(
            line.contains(r"sender_comp_id=EVIL\nWARN forged line"),
            "{line}"
        );
    })
    .await
}

/// `--log-format json`: every line of the process log is one JSON object (for log
/// pipelines), with the event's fields beside its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_log_can_be_json() {
    testkit::bounded(async {
        let backend = Backend::echo("b").await;
        let config = temp_config(&format!(
            "admin: {{ enabled: false }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            backend.address
        ));
        let mut child = tokio::process::Command::new(BIN)
            .args(["--log-format", "json", "run", "--config"])
            .arg(config.path())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let listening = loop {
            let line = lines.next_line().await.unwrap().expect("the gateway logs");
            let event: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if event["message"] == "listening" {
                break event;
            }
        };
        assert_eq!(listening["level"], "INFO", "{listening}");
        assert_eq!(listening["listener"], "l", "{listening}");
        assert!(listening["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    })
    .await
}

/// A config without `tracing`: the standard OpenTelemetry variables alone turn it on, as
/// they do for any OpenTelemetry SDK (OTLP/HTTP by default, `/v1/traces` added to the base).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otel_environment_alone_turns_tracing_on() {
    testkit::bounded(async {
        let backend = Backend::echo("b").await;
        let otlp = testkit::otlp::OtlpReceiver::http().await;
        let config = temp_config(&format!(
            "admin: {{ enabled: false }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            backend.address
        ));
        let mut child = tokio::process::Command::new(BIN)
            .args(["--log-format", "json", "run", "--config"])
            .arg(config.path())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint())
            .env("OTEL_SERVICE_NAME", "from-the-environment")
            .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
            .env("OTEL_BSP_SCHEDULE_DELAY", "20")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let address: SocketAddr = loop {
            let line = lines.next_line().await.unwrap().expect("the gateway logs");
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            if event["message"] == "listening" {
                break event["address"].as_str().unwrap().parse().unwrap();
            }
        };
        let mut client = testkit::Client::connect(address).await;
        assert_eq!(client.line().await.as_deref(), Some("b"));
        client.assert_echo("traced by the environment").await;
        drop(client);
        let spans = otlp
            .wait_until("the connection's span", |s| s.iter().any(|s| s.name == "connection"))
            .await;
        assert_eq!(spans[0].service, "from-the-environment");
    })
    .await
}

/// A wrong `OTEL_*` value is a configuration error that names the variable.
#[test]
fn a_wrong_otel_variable_is_named() {
    let config = temp_config(
        "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{ cluster: c }]\nclusters:\n  - { name: c, endpoints: [{ address: \"127.0.0.1:1\" }] }\n",
    );
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(config.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("OTEL_TRACES_SAMPLER `sometimes`"),
        "{stderr}"
    );
}

/// Under systemd (`Type=notify`): READY=1 once serving, WATCHDOG=1 at half of WATCHDOG_USEC,
/// RELOADING=1 then READY=1 around a SIGHUP reload (`causeway reload --pid`, the unit's
/// ExecReload), STOPPING=1 when the drain begins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_speaks_systemds_notify_protocol() {
    testkit::bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let socket_path = dir.path().join("notify");
        let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
        let backend = Backend::echo("b").await;
        let config = temp_config(&format!(
            "admin: {{ enabled: false }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            backend.address
        ));
        let mut child = tokio::process::Command::new(BIN)
            .args(["run", "--config"])
            .arg(config.path())
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "200000")
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap().to_string();
        // The next message that is not a watchdog heartbeat (counted).
        let mut heartbeats = 0;
        let mut next = async || loop {
            let mut buf = [0u8; 512];
            let n = socket.recv(&mut buf).await.unwrap();
            let message = String::from_utf8_lossy(&buf[..n]).to_string();
            match message.trim_end() {
                "WATCHDOG=1" => heartbeats += 1,
                _ => return message,
            }
        };
        let said = next().await;
        assert!(said.starts_with("READY=1"), "{said:?}");
        let reload = Command::new(BIN).args(["reload", "--pid", &pid]).status().unwrap();
        assert!(reload.success());
        let said = next().await;
        assert!(said.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{said:?}");
        let said = next().await;
        assert!(said.starts_with("READY=1"), "{said:?}");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
        let said = next().await;
        assert!(said.starts_with("STOPPING=1"), "{said:?}");
        assert!(child.wait().await.unwrap().success());
        assert!(heartbeats >= 1, "the watchdog heartbeat came at 100 ms");
    })
    .await
}
