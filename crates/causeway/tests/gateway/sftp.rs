//! SFTP through a `protocol: ssh` listener with the real OpenSSH client and server: the
//! example as documented (key and password logins, 20 MiB both ways, ls, rename, remove,
//! mkdir, the audit log), refusals that all look alike, channel policy, upstream host-key
//! pinning, an upstream that is down, concurrency, and a client that stops reading.

use std::path::Path;
use std::time::Duration;
use testkit::authorizer::{TestAuthorizer, Verdict};
use testkit::ssh::{Client, Credential, Sshd, example_keys};
use testkit::{TestGateway, bounded, eventually};

/// examples/sftp/backend.sh, as documented (on a free port): a real sshd, stopped with
/// its process group when dropped (SIGTERM, so the script removes its directory).
struct ExampleBackend {
    address: std::net::SocketAddr,
    root: std::path::PathBuf,
    child: tokio::process::Child,
}

impl ExampleBackend {
    async fn start() -> ExampleBackend {
        use tokio::io::AsyncBufReadExt;
        let address = testkit::closed_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/sftp/backend.sh");
        let mut child = tokio::process::Command::new(script)
            .env("PORT", address.port().to_string())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().unwrap_or_default();
        let root = first
            .split_once("files under ")
            .map(|(_, r)| std::path::PathBuf::from(r))
            .unwrap_or_else(|| panic!("backend.sh says where files go: {first}"));
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        testkit::accepting(address, Duration::from_secs(10), "backend.sh's sshd").await;
        ExampleBackend {
            address,
            root,
            child,
        }
    }
}

impl Drop for ExampleBackend {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child's process group.
            unsafe { libc::kill(-(pid as i32), libc::SIGTERM) };
        }
    }
}

/// examples/sftp.yaml with its ports, key paths and audit log made the test's.
fn example_config(backend: std::net::SocketAddr, audit: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join("examples/sftp.yaml"))
        .unwrap()
        .replace("127.0.0.1:10022", "127.0.0.1:0")
        .replace("127.0.0.1:10122", &backend.to_string())
        .replace("examples/keys/", &format!("{}/", example_keys().display()))
        .replace(
            "/tmp/causeway-sftp-audit.jsonl",
            &audit.display().to_string(),
        )
        .replace("admin:\n  address: 127.0.0.1:9907\n", "")
}

/// A gateway with one SSH route for alice (key) and bob (password `bob-demo-password`) to
/// `sshd`; `route` and `cluster` add settings to the route's `ssh` and to the cluster.
fn gateway(upstream: &str, route_ssh: &str, cluster_ssh: &str) -> TestGateway {
    TestGateway::start(&gateway_yaml(upstream, route_ssh, cluster_ssh))
}

pub(crate) fn gateway_yaml(upstream: &str, route_ssh: &str, cluster_ssh: &str) -> String {
    let keys = example_keys();
    let k = |name: &str| keys.join(name).display().to_string();
    format!(
        r#"listeners:
  - name: sftp
    address: 127.0.0.1:0
    protocol: ssh
    ssh:
      host_keys: ["{host}"]
      keyboard_interactive: true
      users:
        - {{ name: alice, authorized_keys: "{alice}" }}
        - {{ name: bob, password_hash: "$argon2id$v=19$m=19456,t=2,p=1$3zTn9Tfbzi1J8A0mdpYHoQ$V+1a5rP0uIoK3Mvup1NUgU35H/NwbvASuoZ3ssdfJA4" }}
    routes:
      - name: partners
        match: {{ ssh: {{ user: [alice, bob] }} }}
        cluster: backend
        ssh: {{ private_key: "{upstream_key}"{route_ssh} }}
clusters:
  - name: backend
    endpoints: [{{ address: "{upstream}" }}]
    connect_attempts: 1
    ssh: {{ {cluster_ssh} }}
"#,
        host = k("gateway_host_ed25519"),
        alice = k("alice.pub"),
        upstream_key = k("upstream_ed25519"),
    )
}

pub(crate) fn pinned() -> String {
    format!(
        "host_keys: [\"{}\"]",
        example_keys().join("backend_host_ed25519.pub").display()
    )
}

pub(crate) fn random_file(path: &Path, size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    fastrand::fill(&mut data);
    std::fs::write(path, &data).unwrap();
    data
}

pub(crate) fn audit_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sftp_example_runs_as_documented() {
    bounded(async {
        let sshd = ExampleBackend::start().await;
        let scratch = tempfile::tempdir().unwrap();
        let audit = scratch.path().join("audit.jsonl");
        let access = scratch.path().join("access.jsonl");
        let yaml = format!(
            "access_log: {{ path: \"{}\" }}\n{}",
            access.display(),
            example_config(sshd.address, &audit)
        );
        let gw = TestGateway::start(&yaml);
        let client = Client::new(gw.address("sftp"));

        // alice, by key: 20 MiB up and down byte-exact, ls, mkdir, rename, remove.
        let local = scratch.path().join("up.bin");
        let data = random_file(&local, 20 << 20);
        let back = scratch.path().join("down.bin");
        let batch = format!(
            "put {} big.bin\nls -l\nget big.bin {}\nmkdir reports\nrename big.bin reports/moved.bin\nls reports\nrm reports/moved.bin\nrmdir reports\n",
            local.display(),
            back.display()
        );
        let run = client.sftp("alice", &client.key("alice"), &batch).await;
        assert!(run.success, "alice's sftp session: {run:?}");
        assert!(run.stdout.contains("big.bin") && run.stdout.contains("reports/moved.bin"), "{run:?}");
        assert!(std::fs::read(&back).unwrap() == data, "20 MiB came back byte-exact");
        assert!(!sshd.root.join("alice/reports").exists(), "rmdir reached the server");
        assert!(run.stderr.contains("Causeway example gateway"), "the banner: {run:?}");

        // bob, by password: the file lands in bob's directory on the server.
        let small = scratch.path().join("bob.txt");
        std::fs::write(&small, b"hello from bob\n").unwrap();
        let bob = Credential::Password("bob-demo-password".into());
        let batch = format!("put {} hello.txt\nls\n", small.display());
        let run = client.sftp("bob", &bob, &batch).await;
        assert!(run.success, "bob's sftp session: {run:?}");
        assert_eq!(
            std::fs::read(sshd.root.join("bob/hello.txt")).unwrap(),
            b"hello from bob\n"
        );

        // The audit log: one line per operation, in order, with sizes.
        let lines = audit_lines(&audit);
        let ops: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l["op"].as_str().unwrap(), l["user"].as_str().unwrap()))
            .collect();
        assert_eq!(
            ops,
            [
                ("open", "alice"),
                ("close", "alice"),
                ("open", "alice"),
                ("close", "alice"),
                ("mkdir", "alice"),
                ("rename", "alice"),
                ("remove", "alice"),
                ("rmdir", "alice"),
                ("open", "bob"),
                ("close", "bob"),
            ],
            "{lines:#?}"
        );
        assert_eq!(lines[1]["bytes_written"], 20 << 20);
        assert_eq!(lines[3]["bytes_read"], 20 << 20);
        assert!(lines[0]["mode"].as_str().unwrap().contains("write"));
        assert!(lines[5]["path"].as_str().unwrap().ends_with("alice/big.bin"));
        assert!(lines[5]["to"].as_str().unwrap().ends_with("reports/moved.bin"));
        assert!(lines.iter().all(|l| l["status"] == "ok" && l["route"] == "partners"));
        assert_eq!(lines[9]["bytes_written"], 15);

        let auth = |method, result| {
            gw.metric(
                "causeway_ssh_auth_total",
                &[("listener", "sftp"), ("method", method), ("result", result)],
            )
        };
        assert_eq!(auth("publickey", "ok"), 1.0);
        assert_eq!(auth("password", "ok"), 1.0);
        let sessions = gw.series("causeway_ssh_sessions_total", &[("listener", "sftp")]);
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        let shown = serde_json::to_string(&gw.gateway.config()).unwrap();
        assert!(shown.contains("bob") && !shown.contains("argon2"), "GET /config shows no hash");
        let metrics = gw.metrics_text();
        for line in [
            r#"causeway_ssh_auth_total{listener="sftp",method="publickey",result="ok"} 1"#,
            r#"causeway_ssh_auth_total{listener="sftp",method="password",result="ok"} 1"#,
            r#"causeway_ssh_sessions_total{listener="sftp",route="partners",method="publickey"} 1"#,
            r#"causeway_ssh_channel_requests_total{listener="sftp",request="sftp",result="allowed"} 2"#,
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }

        // One access-log line per SSH connection and one per channel: who, how, where, how
        // much, why it ended.
        let read = || {
            std::fs::read_to_string(&access)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect::<Vec<_>>()
        };
        eventually("both sessions and their channels are in the access log", || {
            read().len() == 4
        })
        .await;
        let (channels, lines): (Vec<_>, Vec<_>) =
            read().into_iter().partition(|l| l.get("ssh_channel").is_some());
        for (channel, session) in channels.iter().zip(&lines) {
            assert_eq!(channel["ssh_channel"], "sftp", "{channel}");
            assert_eq!(channel["ssh_session"], session["id"], "{channel}");
            assert_eq!(channel["ssh_user"], session["ssh_user"], "{channel}");
            assert_eq!(channel["reason"], "closed", "{channel}");
            assert_eq!(channel["endpoint"], sshd.address.to_string());
        }
        assert!(channels[0]["bytes_upstream"].as_u64().unwrap() > 20 << 20);
        assert!(channels[0]["bytes_downstream"].as_u64().unwrap() > 20 << 20);
        assert_eq!(lines[0]["ssh_user"], "alice");
        assert_eq!(lines[0]["ssh_auth_method"], "publickey");
        assert!(lines[0]["ssh_key_fingerprint"].as_str().unwrap().starts_with("SHA256:"));
        assert_eq!(lines[1]["ssh_user"], "bob");
        assert_eq!(lines[1]["ssh_auth_method"], "password");
        for line in &lines {
            assert_eq!(line["route"], "partners");
            assert_eq!(line["endpoint"], sshd.address.to_string());
            assert_eq!(line["reason"], "closed");
        }
        assert!(lines[0]["bytes_upstream"].as_u64().unwrap() > 20 << 20);
        assert!(lines[0]["bytes_downstream"].as_u64().unwrap() > 20 << 20);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_cut_at_the_auth_timeout_and_host_keys_rotate_on_reload() {
    bounded(async {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let keys = example_keys();
        let yaml = |host_keys: &[&str], legacy: bool| {
            let host_keys: Vec<String> = host_keys
                .iter()
                .map(|k| format!("\"{}\"", keys.join(k).display()))
                .collect();
            format!(
                r#"listeners:
  - name: sftp
    address: 127.0.0.1:0
    protocol: ssh
    ssh:
      host_keys: [{}]
      auth_timeout: 500ms
      max_auth_attempts: 2
      legacy_algorithms: {legacy}
      users: [{{ name: alice, authorized_keys: "{}" }}]
    routes:
      - cluster: backend
        ssh: {{ private_key: "{}" }}
clusters:
  - name: backend
    endpoints: [{{ address: "127.0.0.1:1" }}]
    ssh: {{ host_key_fingerprints: ["SHA256:unused"] }}
"#,
                host_keys.join(", "),
                keys.join("alice.pub").display(),
                keys.join("upstream_ed25519").display(),
            )
        };
        let gw = TestGateway::start(&yaml(
            &["gateway_host_ed25519", "gateway_host_ecdsa"],
            false,
        ));
        let address = gw.address("sftp");

        // A client that reads the banner and never answers is cut at the auth timeout.
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut reader = tokio::io::BufReader::new(stream);
        let mut banner = String::new();
        reader.read_line(&mut banner).await.unwrap();
        assert!(banner.starts_with("SSH-2.0-Causeway"), "{banner}");
        let started = std::time::Instant::now();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), reader.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "closed, not left hanging");
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "not before the timeout"
        );

        // Host keys are read again on reload: new connections see the new key.
        let scan = |kind: &'static str| async move {
            let out = tokio::process::Command::new("ssh-keyscan")
                .args(["-T", "5", "-t", kind, "-p"])
                .arg(address.port().to_string())
                .arg("127.0.0.1")
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let key_of = |name: &str| {
            let text = std::fs::read_to_string(keys.join(name)).unwrap();
            text.split_whitespace().nth(1).unwrap().to_string()
        };
        assert!(
            scan("ed25519")
                .await
                .contains(&key_of("gateway_host_ed25519.pub"))
        );
        assert!(
            scan("ecdsa")
                .await
                .contains(&key_of("gateway_host_ecdsa.pub"))
        );

        // Only modern algorithms, unless legacy ones are asked for.
        let old_client = || async {
            let mut ssh = tokio::process::Command::new("ssh");
            ssh.args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
                .args(["-o", "UserKnownHostsFile=/dev/null", "-o"])
                .arg("KexAlgorithms=diffie-hellman-group14-sha1")
                .arg("-p")
                .arg(address.port().to_string())
                .arg("alice@127.0.0.1")
                .arg("true");
            let out = tokio::time::timeout(Duration::from_secs(20), ssh.output())
                .await
                .unwrap()
                .unwrap();
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        let refused = old_client().await;
        assert!(
            refused.contains("no matching key exchange method"),
            "{refused}"
        );

        // Two failed attempts and the client is shown out, however many it would try.
        let dir = tempfile::tempdir().unwrap();
        let (askpass, asked) = (dir.path().join("askpass"), dir.path().join("asked"));
        std::fs::write(
            &askpass,
            format!("#!/bin/sh\necho x >> {}\necho wrong\n", asked.display()),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut guesser = tokio::process::Command::new("ssh");
        guesser
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args([
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=6",
            ])
            .args(["-o", "PreferredAuthentications=password", "-p"])
            .arg(address.port().to_string())
            .arg("alice@127.0.0.1")
            .arg("true")
            .stdin(std::process::Stdio::null());
        let out = tokio::time::timeout(Duration::from_secs(30), guesser.output())
            .await
            .unwrap()
            .unwrap();
        assert!(!out.status.success());
        let guesses = std::fs::read_to_string(&asked).unwrap().lines().count();
        assert!(
            guesses <= 3,
            "cut off after max_auth_attempts, not 6 guesses: {guesses}"
        );

        gw.reload(&yaml(&["backend_host_ed25519"], true));
        let legacy = old_client().await;
        assert!(
            !legacy.contains("no matching key exchange method"),
            "{legacy}"
        );
        let after = scan("ed25519").await;
        assert!(
            after.contains(&key_of("backend_host_ed25519.pub")),
            "{after}"
        );
        assert!(!after.contains(&key_of("gateway_host_ed25519.pub")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_wrong_passwords_and_unknown_users_are_refused_alike() {
    bounded(async {
        let sshd = Sshd::start().await;
        let gw = gateway(&sshd.address.to_string(), "", &pinned());
        let client = Client::new(gw.address("sftp"));
        let wrong_key = client.key("upstream_ed25519");
        let attempts = [
            ("alice", wrong_key.clone(), "wrong key"),
            (
                "bob",
                Credential::Password("not-bobs".into()),
                "wrong password",
            ),
            ("mallory", client.key("alice"), "unknown user, a key"),
            (
                "mallory",
                Credential::Password("guess".into()),
                "unknown user, a password",
            ),
            ("bob", client.key("alice"), "bob has no keys"),
        ];
        let mut messages = Vec::new();
        for (user, credential, what) in attempts {
            let run = client.sftp(user, &credential, "ls\n").await;
            assert!(!run.success, "{what} must be refused: {run:?}");
            assert!(run.stderr.contains("Permission denied"), "{what}: {run:?}");
            messages.push(run.stderr.replace(user, "USER"));
        }
        // The same answer whatever was wrong (the methods offered follow the client's
        // own settings: compare within each kind of attempt).
        assert_eq!(messages[0], messages[2], "wrong key vs unknown user");
        assert_eq!(messages[1], messages[3], "wrong password vs unknown user");
        assert_eq!(gw.rejected("sftp", "ssh_auth_failed"), 5.0);
        let auth = |method, result| {
            gw.metric(
                "causeway_ssh_auth_total",
                &[("listener", "sftp"), ("method", method), ("result", result)],
            )
        };
        assert!(auth("publickey", "ok") == 0.0 && auth("password", "ok") == 0.0);
        assert_eq!(
            gw.metric_sum(
                "causeway_endpoint_connect_attempts_total",
                &[("cluster", "backend")]
            ),
            0.0,
            "nothing was dialed"
        );
        // The right password over keyboard-interactive gets in.
        let askpass = client.dir().join("askpass-kbd");
        std::fs::write(&askpass, "#!/bin/sh\necho bob-demo-password\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut kbd = tokio::process::Command::new("ssh");
        kbd.env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args([
                "-o",
                "PreferredAuthentications=keyboard-interactive",
                "-s",
                "-p",
            ])
            .arg(gw.address("sftp").port().to_string())
            .arg("bob@127.0.0.1")
            .arg("sftp")
            .stdin(std::process::Stdio::null());
        let kbd = tokio::time::timeout(Duration::from_secs(30), kbd.output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&kbd.stderr);
        assert!(!stderr.contains("Permission denied"), "{stderr}");
        assert_eq!(
            auth("keyboard-interactive", "ok"),
            1.0,
            "{:?}",
            gw.series("causeway_ssh_auth_total", &[("listener", "sftp")])
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_shell_are_refused_unless_the_route_allows_them() {
    bounded(async {
        let sshd = Sshd::start().await;
        let upstream = sshd.address.to_string();
        let gw = gateway(&upstream, "", &pinned());
        let client = Client::new(gw.address("sftp"));
        let alice = client.key("alice");
        let run = client.ssh("alice", &alice, "echo through").await;
        assert!(
            !run.success && !run.stdout.contains("through"),
            "exec refused: {run:?}"
        );
        let mut shell = client.command("ssh", &alice);
        shell.arg("-T").arg("alice@127.0.0.1");
        let output = tokio::time::timeout(Duration::from_secs(30), shell.output())
            .await
            .unwrap()
            .unwrap();
        assert!(!output.status.success(), "shell refused: {output:?}");
        let denied = |request| {
            gw.metric(
                "causeway_ssh_channel_requests_total",
                &[
                    ("listener", "sftp"),
                    ("request", request),
                    ("result", "denied"),
                ],
            )
        };
        assert_eq!(denied("exec"), 1.0);
        assert_eq!(denied("shell"), 1.0);

        // Allowed by the route: the real server runs the command, its exit status comes back.
        let gw = gateway(&upstream, ", allow: { exec: true }", &pinned());
        let client = Client::new(gw.address("sftp"));
        let alice = client.key("alice");
        let run = client.ssh("alice", &alice, "echo through; whoami").await;
        assert!(run.success, "{run:?}");
        assert_eq!(run.stdout, "through\nalice\n");
        let run = client.ssh("alice", &alice, "echo oops >&2; exit 3").await;
        assert!(
            !run.success && run.stderr.contains("oops"),
            "stderr and the exit status cross: {run:?}"
        );
        let sftp_still = client.sftp("alice", &alice, "ls\n").await;
        assert!(sftp_still.success, "{sftp_still:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_with_an_unknown_host_key_is_refused() {
    bounded(async {
        // The server presents the gateway's host key: not the pinned one.
        let sshd = Sshd::with_host_key("gateway_host_ed25519").await;
        let gw = gateway(&sshd.address.to_string(), "", &pinned());
        let client = Client::new(gw.address("sftp"));
        let run = client.sftp("alice", &client.key("alice"), "ls\n").await;
        assert!(!run.success, "{run:?}");
        assert!(
            run.stderr.contains("could not be verified"),
            "a clear message: {run:?}"
        );
        let failures = gw.series(
            "causeway_ssh_upstream_failures_total",
            &[("listener", "sftp")],
        );
        assert_eq!(
            gw.metric(
                "causeway_ssh_upstream_failures_total",
                &[("listener", "sftp"), ("reason", "host_key_mismatch")]
            ),
            1.0,
            "{failures:?}"
        );

        // Pinned by fingerprint (and by known_hosts) the same server is trusted.
        let print = std::process::Command::new("ssh-keygen")
            .arg("-lf")
            .arg(example_keys().join("gateway_host_ed25519.pub"))
            .output()
            .unwrap();
        let print = String::from_utf8(print.stdout).unwrap();
        let print = print.split_whitespace().nth(1).unwrap().to_string();
        let gw = gateway(
            &sshd.address.to_string(),
            "",
            &format!("host_key_fingerprints: [\"{print}\"]"),
        );
        let client = Client::new(gw.address("sftp"));
        let run = client.sftp("alice", &client.key("alice"), "ls\n").await;
        assert!(run.success, "{run:?}");
        let scratch = tempfile::tempdir().unwrap();
        let known_hosts = scratch.path().join("known_hosts");
        let key = std::fs::read_to_string(example_keys().join("gateway_host_ed25519.pub")).unwrap();
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{} {key}", sshd.address.port()),
        )
        .unwrap();
        let gw = gateway(
            &sshd.address.to_string(),
            "",
            &format!("known_hosts: \"{}\"", known_hosts.display()),
        );
        let client = Client::new(gw.address("sftp"));
        let run = client.sftp("alice", &client.key("alice"), "ls\n").await;
        assert!(run.success, "{run:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_is_down_gets_a_clear_disconnect() {
    bounded(async {
        let down = testkit::closed_port();
        let gw = gateway(&down.to_string(), "", &pinned());
        let client = Client::new(gw.address("sftp"));
        let started = std::time::Instant::now();
        let run = client.sftp("alice", &client.key("alice"), "ls\n").await;
        assert!(!run.success, "{run:?}");
        assert!(run.stderr.contains("upstream unavailable"), "{run:?}");
        assert!(started.elapsed() < Duration::from_secs(15), "no hang");
        let failures = gw.series(
            "causeway_ssh_upstream_failures_total",
            &[("listener", "sftp")],
        );
        assert_eq!(
            gw.metric(
                "causeway_ssh_upstream_failures_total",
                &[("listener", "sftp"), ("reason", "upstream_connect_failed")]
            ),
            1.0,
            "{failures:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sftp_sessions_at_once() {
    bounded(async {
        let sshd = Sshd::start().await;
        let gw = gateway(&sshd.address.to_string(), "", &pinned());
        let client = std::sync::Arc::new(Client::new(gw.address("sftp")));
        let alice = client.key("alice");
        let sessions = (0..20).map(|i| {
            let (client, alice) = (client.clone(), alice.clone());
            tokio::spawn(async move {
                let up = client.dir().join(format!("up-{i}"));
                let data = random_file(&up, 1 << 20);
                let down = client.dir().join(format!("down-{i}"));
                let batch = format!(
                    "put {} f{i}\nget f{i} {}\nrm f{i}\n",
                    up.display(),
                    down.display()
                );
                let run = client.sftp("alice", &alice, &batch).await;
                assert!(run.success, "session {i}: {run:?}");
                assert!(
                    std::fs::read(&down).unwrap() == data,
                    "session {i} byte-exact"
                );
            })
        });
        for session in sessions.collect::<Vec<_>>() {
            session.await.unwrap();
        }
        assert_eq!(
            gw.metric_sum("causeway_ssh_sessions_total", &[("listener", "sftp")]),
            20.0
        );
    })
    .await;
}

/// `causeway_endpoint_bytes_total` towards the client through the endpoint `upstream` of
/// cluster `backend` (live connections included).
pub(crate) fn downstream_bytes(gw: &TestGateway, upstream: std::net::SocketAddr) -> u64 {
    let upstream = upstream.to_string();
    gw.metric(
        "causeway_endpoint_bytes_total",
        &[
            ("cluster", "backend"),
            ("endpoint", &upstream),
            ("direction", "downstream"),
        ],
    ) as u64
}

/// Bytes waiting unread in the kernel on connections to `port` (from /proc/net/tcp: the
/// receive queues of sockets whose peer is `port`).
fn unread_towards(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = u16::from_str_radix(fields.get(2)?.split(':').nth(1)?, 16).ok()?;
            let rx = u64::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok()?;
            (remote_port == port).then_some(rx)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_back_the_upstream() {
    bounded(async {
        // The server pushes without being asked (`cat`), unlike SFTP's request/answer flow.
        let sshd = Sshd::start().await;
        let size = 64 << 20;
        let big = sshd.root.join("alice/big.bin");
        let data = random_file(&big, size);
        let gw = gateway(
            &sshd.address.to_string(),
            ", allow: { exec: true }",
            &pinned(),
        );
        let client = Client::new(gw.address("sftp"));
        let down = client.dir().join("big.bin");
        let mut command = client.command("ssh", &client.key("alice"));
        command
            .arg("alice@127.0.0.1")
            .arg(format!("cat {}", big.display()))
            .stdout(std::fs::File::create(&down).unwrap())
            .process_group(0);
        let mut child = command.spawn().unwrap();
        let pgid = child.id().unwrap() as i32;
        // The one connection's bytes towards the client, live ones included.
        let relayed = || downstream_bytes(&gw, sshd.address);
        eventually("the download is under way", || relayed() > 4 << 20).await;
        // The client stops reading.
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-pgid, libc::SIGSTOP) };
        // The gateway passes on only what the client's window allows, then stops taking
        // from the upstream: what the server keeps sending waits in the kernel, unread.
        let mut last = relayed();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = relayed();
            if now == last {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the relay never stopped"
            );
            last = now;
        }
        assert!(
            last < 32 << 20,
            "only windows and queues are in flight, not the file: {last} of {size}"
        );
        let waiting = unread_towards(sshd.address.port());
        assert!(
            waiting > 0,
            "the upstream's bytes wait in the kernel, not in the gateway"
        );
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGCONT) };
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
        assert!(
            std::fs::read(&down).unwrap() == data,
            "then the rest, byte-exact"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_authenticates_users_the_gateway_does_not_know_and_routes_them() {
    bounded(async {
        let sshd = Sshd::start().await;
        let authorizer = TestAuthorizer::start(Verdict::Route(vec![(
            "ssh_user".into(),
            envoy_types::pb::google::protobuf::Value {
                kind: Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(
                    "bob".into(),
                )),
            },
        )]))
        .await;
        let keys = example_keys();
        let k = |name: &str| keys.join(name).display().to_string();
        let gw = TestGateway::start(&format!(
            r#"authorizers:
  - name: iam
    address: "{}"
    failure_mode: allow
    cache: {{ ttl: 60s, key: [source_ip] }}
listeners:
  - name: sftp
    address: 127.0.0.1:0
    protocol: ssh
    ssh:
      host_keys: ["{}"]
      target_separator: "+"
    routes:
      - name: partners
        match: {{ ssh: {{ target: [backend] }} }}
        cluster: backend
        authorization:
          rules: [{{ action: allow, source_cidrs: [127.0.0.0/8] }}]
          ext_authz: iam
        ssh: {{ private_key: "{}" }}
clusters:
  - name: backend
    endpoints: [{{ address: "{}" }}]
    ssh: {{ host_keys: ["{}"] }}
"#,
            authorizer.address,
            k("gateway_host_ed25519"),
            k("upstream_ed25519"),
            sshd.address,
            k("backend_host_ed25519.pub"),
        ));
        let client = Client::new(gw.address("sftp"));
        let password = Credential::Password("partner-secret".into());
        let run = client.sftp("partner7+backend", &password, "pwd\n").await;
        assert!(run.success, "{run:?}");
        assert!(
            run.stdout.contains("/root/bob"),
            "logged in upstream as the authorizer's user: {run:?}"
        );
        let request = authorizer.requests().last().cloned().unwrap();
        let extensions = request.attributes.unwrap().context_extensions;
        assert_eq!(extensions["ssh_user"], "partner7");
        assert_eq!(extensions["ssh_target"], "backend");
        assert_eq!(extensions["ssh_auth_method"], "password");
        assert_eq!(extensions["ssh_password"], "partner-secret");
        assert_eq!(extensions["ssh_check"], "authenticate");

        // A key the gateway does not know: the authorizer decides on its fingerprint (the
        // client has proven it holds the key).
        let run = client
            .sftp("partner8+backend", &client.key("alice"), "pwd\n")
            .await;
        assert!(run.success, "{run:?}");
        let request = authorizer.requests().last().cloned().unwrap();
        let extensions = request.attributes.unwrap().context_extensions;
        assert_eq!(extensions["ssh_user"], "partner8");
        assert_eq!(extensions["ssh_auth_method"], "publickey");
        assert!(extensions["ssh_key_fingerprint"].starts_with("SHA256:"));
        assert!(!extensions.contains_key("ssh_password"));

        // No route for the target, or the authorizer says no: refused like a bad password.
        let run = client.sftp("partner7+elsewhere", &password, "pwd\n").await;
        assert!(
            !run.success && run.stderr.contains("Permission denied"),
            "{run:?}"
        );
        // The authorizer authenticates: its allow is never reused from the decision cache,
        // a rule's allow does not replace it, and its failure never lets anyone in (though
        // this route's cache, rule and failure mode would, for a connection it authorizes).
        authorizer.set(Verdict::Deny("revoked".into()));
        let refused =
            |run: &testkit::ssh::Run| !run.success && run.stderr.contains("Permission denied");
        let run = client.sftp("partner7+backend", &password, "pwd\n").await;
        assert!(refused(&run), "{run:?}");
        let run = client
            .sftp("partner8+backend", &client.key("alice"), "pwd\n")
            .await;
        assert!(refused(&run), "{run:?}");
        authorizer.set(Verdict::Error);
        let run = client.sftp("partner7+backend", &password, "pwd\n").await;
        assert!(refused(&run), "{run:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balancers_proxy_header_names_the_client_that_logs_in() {
    bounded(async {
        let sshd = Sshd::start().await;
        let keys = example_keys();
        let k = |name: &str| keys.join(name).display().to_string();
        let gw = TestGateway::start(&format!(
            r#"listeners:
  - name: sftp
    address: 127.0.0.1:0
    protocol: ssh
    proxy_protocol: {{ mode: optional, trusted_sources: [127.0.0.1/32] }}
    ssh:
      host_keys: ["{}"]
      users: [{{ name: alice, authorized_keys: "{}" }}]
    routes:
      - cluster: backend
        authorization:
          rules: [{{ action: allow, source_cidrs: [203.0.113.0/24] }}]
          default: deny
        ssh: {{ private_key: "{}" }}
clusters:
  - name: backend
    endpoints: [{{ address: "{}" }}]
    ssh: {{ host_keys: ["{}"] }}
"#,
            k("gateway_host_ed25519"),
            k("alice.pub"),
            k("upstream_ed25519"),
            sshd.address,
            k("backend_host_ed25519.pub"),
        ));
        let address = gw.address("sftp");
        let client = Client::new(address);
        let alice = client.key("alice");
        // Straight from 127.0.0.1: not an allowed source.
        let direct = client.sftp("alice", &alice, "pwd\n").await;
        assert!(
            !direct.success && direct.stderr.contains("Permission denied"),
            "{direct:?}"
        );
        // Through a "balancer" (a ProxyCommand that sends a PROXY v1 header first).
        let balancer = client.dir().join("balancer.py");
        std::fs::write(
            &balancer,
            format!(
                r#"import os, socket, threading
s = socket.create_connection(("127.0.0.1", {port}))
s.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 22\r\n")
def up():
    while True:
        data = os.read(0, 65536)
        if not data:
            s.shutdown(socket.SHUT_WR)
            return
        s.sendall(data)
threading.Thread(target=up, daemon=True).start()
while True:
    data = s.recv(65536)
    if not data:
        break
    os.write(1, data)
"#,
                port = address.port()
            ),
        )
        .unwrap();
        let mut command = client.command("sftp", &alice);
        command
            .arg("-o")
            .arg(format!("ProxyCommand=python3 {}", balancer.display()))
            .args(["-b", "-", "alice@127.0.0.1"]);
        let mut child = command.spawn().unwrap();
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"pwd\n").await.unwrap();
        drop(stdin);
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("/root/alice"), "{stdout}");
        assert_eq!(gw.rejected("sftp", "proxy_protocol"), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_drains_ssh_sessions_then_tells_the_client() {
    bounded(async {
        let sshd = Sshd::start().await;
        let yaml = gateway_yaml(
            &sshd.address.to_string(),
            ", allow: { exec: true }",
            &pinned(),
        );
        let gw = TestGateway::start(&format!("drain: {{ timeout: 500ms }}\n{yaml}"));
        let client = Client::new(gw.address("sftp"));
        let mut ssh = client.command("ssh", &client.key("alice"));
        ssh.arg("alice@127.0.0.1").arg("sleep 30");
        let session = ssh.spawn().unwrap();
        eventually("the session and its channel are up", || {
            let live = gw.gateway.connections_snapshot();
            live.len() == 2 && live.iter().all(|c| c.endpoint.is_some())
        })
        .await;
        let report = gw.shutdown().await;
        assert_eq!(report.closed, 2, "the session and its channel: {report:?}");
        let out = tokio::time::timeout(Duration::from_secs(10), session.wait_with_output())
            .await
            .expect("the client is let go")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("closed by the gateway"),
            "{stderr}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_withdrawn_when_reauthorization_says_no() {
    bounded(async {
        let sshd = Sshd::start().await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let yaml = gateway_yaml(&sshd.address.to_string(), ", allow: { exec: true }", &pinned())
            .replace(
                "        cluster: backend\n",
                "        cluster: backend\n        authorization: { ext_authz: iam, reauthorize_every: 200ms }\n",
            );
        let gw = TestGateway::start(&format!(
            "authorizers:\n  - {{ name: iam, address: \"{}\" }}\n{yaml}",
            authorizer.address
        ));
        let client = Client::new(gw.address("sftp"));
        let mut ssh = client.command("ssh", &client.key("alice"));
        ssh.arg("alice@127.0.0.1").arg("sleep 30");
        let session = ssh.spawn().unwrap();
        eventually("the session is up and connected upstream", || {
            let live = gw.gateway.connections_snapshot();
            live.first().is_some_and(|c| c.endpoint.is_some())
        })
        .await;
        authorizer.set(Verdict::Deny("access revoked".into()));
        let out = tokio::time::timeout(Duration::from_secs(10), session.wait_with_output())
            .await
            .expect("the session is withdrawn")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("closed by the gateway"), "{stderr}");
        let request = authorizer.requests().last().cloned().unwrap();
        let extensions = request.attributes.unwrap().context_extensions;
        assert_eq!(extensions["ssh_user"], "alice", "re-checks name the user");
        assert_eq!(extensions["ssh_check"], "reauthorize");
    })
    .await;
}

/// Connections from the gateway to `port` that are still established (/proc/net/tcp).
pub(crate) fn established_towards(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote = fields.get(2).and_then(|r| r.split(':').nth(1));
            remote.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
                && fields.get(3) == Some(&"01")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_session_closed_by_the_gateway_lets_go_of_its_upstream() {
    bounded(async {
        let sshd = Sshd::start().await;
        let big = sshd.root.join("alice/stall.bin");
        random_file(&big, 16 << 20);
        let gw = gateway(
            &sshd.address.to_string(),
            ", allow: { exec: true }",
            &pinned(),
        );
        let client = Client::new(gw.address("sftp"));
        let mut command = client.command("ssh", &client.key("alice"));
        command
            .arg("alice@127.0.0.1")
            .arg(format!("cat {}", big.display()))
            .stdout(std::fs::File::create(client.dir().join("out")).unwrap())
            .process_group(0);
        let mut child = command.spawn().unwrap();
        let pgid = child.id().unwrap() as i32;
        let registry = gw.gateway.registry().clone();
        // The one connection's bytes towards the client, live ones included.
        let relayed = || downstream_bytes(&gw, sshd.address);
        eventually("the download is under way", || relayed() > 1 << 20).await;
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-pgid, libc::SIGSTOP) };
        assert_eq!(established_towards(sshd.address.port()), 1);
        // The relay waits for a window that will not open; the gateway closes the session
        // anyway, and the upstream connection goes with it.
        registry.close_all(proxy::end::registry::CloseReason::Shutdown);
        eventually("the upstream connection is closed", || {
            established_towards(sshd.address.port()) == 0
        })
        .await;
        eventually("the connection is gone from /connections", || {
            gw.gateway.connections_snapshot().is_empty()
        })
        .await;
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait().await;
    })
    .await;
}

/// The route's `idle_timeout` applies to SSH sessions like to any connection: a session
/// where nothing moves is closed by the gateway (the client told, the upstream let go), and
/// the access log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_closed_at_the_routes_idle_timeout() {
    bounded(async {
        let sshd = Sshd::start().await;
        let log = tempfile::NamedTempFile::new().unwrap();
        let yaml = gateway_yaml(
            &sshd.address.to_string(),
            ", allow: { exec: true }",
            &pinned(),
        )
        .replace(
            "        cluster: backend\n",
            "        cluster: backend\n        idle_timeout: 1s\n",
        );
        let gw = TestGateway::start(&format!(
            "access_log: {{ path: \"{}\" }}\n{yaml}",
            log.path().display()
        ));
        let client = Client::new(gw.address("sftp"));
        let mut ssh = client.command("ssh", &client.key("alice"));
        ssh.arg("alice@127.0.0.1").arg("sleep 30");
        let session = ssh.spawn().unwrap();
        eventually("the session is up and connected upstream", || {
            let live = gw.gateway.connections_snapshot();
            live.first().is_some_and(|c| c.endpoint.is_some())
        })
        .await;
        let up = tokio::time::Instant::now();
        // `sleep 30` says nothing: idle from here (but for the exec request itself).
        let out = tokio::time::timeout(Duration::from_secs(3), session.wait_with_output())
            .await
            .expect("the idle session was closed within idle_timeout + 2 s")
            .unwrap();
        // (`up` is when the session was seen, a poll after it started: some slack.)
        let lasted = up.elapsed();
        assert!(
            lasted >= Duration::from_millis(500),
            "closed after {lasted:?}, before the idle timeout"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("closed by the gateway"),
            "{stderr}"
        );
        eventually("the upstream connection is closed", || {
            established_towards(sshd.address.port()) == 0
        })
        .await;
        // The session's line and its channel's, each closed at the idle timeout.
        let closed = || {
            let lines = audit_lines(log.path());
            lines
                .into_iter()
                .filter(|l| l["event"] == "close")
                .collect::<Vec<_>>()
        };
        eventually("the close lines", || closed().len() == 2).await;
        for line in closed() {
            assert_eq!(line["reason"], "idle_timeout", "{line}");
            assert_eq!(line["ssh_user"], "alice", "{line}");
        }
    })
    .await;
}
