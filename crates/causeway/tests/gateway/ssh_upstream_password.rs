//! The gateway logging in to a real OpenSSH sshd with a password (`password_file`) instead
//! of a key: the login works, the file is read as documented (first line), and a wrong
//! password ends the client's session with a clear message and a counted failure.

use testkit::ssh::{Client, PASSWORD_LOGIN, Sshd, example_keys};
use testkit::{TestGateway, bounded};

/// alice logs in to the gateway with her key; the gateway logs in upstream as carol with
/// the password in `password_file`.
fn gateway(upstream: std::net::SocketAddr, password_file: &std::path::Path) -> TestGateway {
    let k = |name: &str| example_keys().join(name).display().to_string();
    TestGateway::start(&format!(
        r#"listeners:
  - name: sftp
    address: 127.0.0.1:0
    protocol: ssh
    ssh:
      host_keys: ["{host}"]
      users: [{{ name: alice, authorized_keys: "{alice}" }}]
    routes:
      - match: {{ ssh: {{ user: [alice] }} }}
        cluster: backend
        ssh: {{ password_file: "{password}", upstream_user: {user} }}
clusters:
  - name: backend
    endpoints: [{{ address: "{upstream}" }}]
    connect_attempts: 1
    ssh: {{ host_keys: ["{backend}"] }}
"#,
        host = k("gateway_host_ed25519"),
        alice = k("alice.pub"),
        backend = k("backend_host_ed25519.pub"),
        password = password_file.display(),
        user = PASSWORD_LOGIN.0,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_logs_the_gateway_in_to_a_real_sshd() {
    bounded(async {
        let sshd = Sshd::with_passwords().await;
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, format!("{}\nnot this line\n", PASSWORD_LOGIN.1)).unwrap();
        let local = dir.path().join("report.csv");
        std::fs::write(&local, "isin,qty\nXS0000000001,100\n").unwrap();
        let gw = gateway(sshd.address, &password);
        let client = Client::new(gw.address("sftp"));
        let batch = format!("put {} report.csv\nls\n", local.display());
        let run = client.sftp("alice", &client.key("alice"), &batch).await;
        assert!(run.success, "{run:?}");
        let landed = sshd.root.join(PASSWORD_LOGIN.0).join("report.csv");
        assert_eq!(
            std::fs::read(&landed).unwrap(),
            std::fs::read(&local).unwrap(),
            "the file lands in carol's directory: the gateway logged in as carol"
        );

        std::fs::write(&password, "not-carols-password\n").unwrap();
        let gw = gateway(sshd.address, &password);
        let client = Client::new(gw.address("sftp"));
        let run = client.sftp("alice", &client.key("alice"), "ls\n").await;
        assert!(!run.success, "{run:?}");
        assert!(run.stderr.contains("upstream"), "a clear message: {run:?}");
        let refused = [("listener", "sftp"), ("reason", "auth_refused")];
        assert_eq!(
            gw.metric("causeway_ssh_upstream_failures_total", &refused),
            1.0,
            "{:?}",
            gw.series("causeway_ssh_upstream_failures_total", &[])
        );
    })
    .await;
}
