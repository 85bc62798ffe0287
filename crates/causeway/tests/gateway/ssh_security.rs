//! The SSH front end's trust boundaries: what a client can make the gateway hold before it
//! authenticates (half-done handshakes, pre-auth sessions, password hashes), what refusals
//! reveal, which keys are accepted, and what an authenticated client can wedge.

use std::time::Duration;
use testkit::ssh::example_keys;
use testkit::{TestGateway, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An SSH listener (alice by key, bob by password) with `extra` added to its `ssh:` block,
/// routed to a backend that is never reached.
fn listener_yaml(extra: &str) -> String {
    let keys = example_keys();
    let k = |name: &str| keys.join(name).display().to_string();
    format!(
        r#"listeners:
  - name: sftp
    address: 127.0.0.1:0
    protocol: ssh
    ssh:
      host_keys: ["{host}"]
      users:
        - {{ name: alice, authorized_keys: "{alice}" }}
        - {{ name: bob, password_hash: "$argon2id$v=19$m=19456,t=2,p=1$3zTn9Tfbzi1J8A0mdpYHoQ$V+1a5rP0uIoK3Mvup1NUgU35H/NwbvASuoZ3ssdfJA4" }}
{extra}
    routes:
      - name: partners
        cluster: backend
        ssh: {{ private_key: "{upstream}" }}
clusters:
  - name: backend
    endpoints: [{{ address: "127.0.0.1:1" }}]
    ssh: {{ host_key_fingerprints: ["SHA256:unused"] }}
"#,
        host = k("gateway_host_ed25519"),
        alice = k("alice.pub"),
        upstream = k("upstream_ed25519"),
    )
}

/// Reads until the gateway closes (EOF or reset); how long that took.
async fn until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_all)
        .await
        .ok()
        .map(|_| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_after_its_version_line_is_closed_at_the_auth_timeout() {
    bounded(async {
        let gw = TestGateway::start(&listener_yaml("      auth_timeout: 1s"));
        let mut stream = tokio::net::TcpStream::connect(gw.address("sftp"))
            .await
            .unwrap();
        stream.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        let closed = until_closed(&mut stream, Duration::from_secs(4)).await;
        let took = closed.expect("closed at the auth timeout, not left open");
        assert!(took >= Duration::from_millis(800), "not before: {took:?}");
        assert!(took <= Duration::from_millis(2500), "on time: {took:?}");
    })
    .await;
}

/// A connection that sent its version line; `Some(banner)` when the gateway answered with
/// its own, `None` when it closed the connection instead.
async fn unauthenticated(gw: &TestGateway) -> (tokio::net::TcpStream, Option<String>) {
    let mut stream = tokio::net::TcpStream::connect(gw.address("sftp"))
        .await
        .unwrap();
    stream.write_all(b"SSH-2.0-x\r\n").await.unwrap();
    let mut banner = vec![0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut banner)).await;
    let banner = match read.expect("answered or closed at once") {
        Ok(n) if n > 0 => Some(String::from_utf8_lossy(&banner[..n]).into_owned()),
        _ => None,
    };
    (stream, banner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connections_are_capped_per_listener_and_per_source() {
    bounded(async {
        // Over the listener's cap.
        let gw = TestGateway::start(&listener_yaml(
            "      max_unauthenticated: 2\n      max_unauthenticated_per_source: 5",
        ));
        let (first, banner) = unauthenticated(&gw).await;
        assert!(banner.unwrap().starts_with("SSH-2.0-Causeway"));
        let (_second, banner) = unauthenticated(&gw).await;
        assert!(banner.is_some());
        assert_eq!(
            gw.metric("causeway_ssh_unauthenticated", &[("listener", "sftp")]),
            2.0
        );
        let (_third, banner) = unauthenticated(&gw).await;
        assert_eq!(banner, None, "the third is closed without a word");
        assert_eq!(gw.rejected("sftp", "ssh_unauthenticated_limit"), 1.0);
        // A place given back is taken again.
        drop(first);
        testkit::eventually("the first place is given back", || {
            gw.metric("causeway_ssh_unauthenticated", &[("listener", "sftp")]) == 1.0
        })
        .await;
        let (_fourth, banner) = unauthenticated(&gw).await;
        assert!(banner.is_some());

        // Over one source's share.
        let gw = TestGateway::start(&listener_yaml(
            "      max_unauthenticated: 10\n      max_unauthenticated_per_source: 1",
        ));
        let (_first, banner) = unauthenticated(&gw).await;
        assert!(banner.is_some());
        let (_second, banner) = unauthenticated(&gw).await;
        assert_eq!(banner, None);
        assert_eq!(gw.rejected("sftp", "ssh_unauthenticated_source_limit"), 1.0);
        assert_eq!(gw.rejected("sftp", "ssh_unauthenticated_limit"), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_password_tries_run_no_more_hashes_at_once_than_permitted() {
    bounded(async {
        let gw = TestGateway::start(&listener_yaml("      max_concurrent_password_checks: 1"));
        let client = testkit::ssh::Client::new(gw.address("sftp"));
        let wrong = testkit::ssh::Credential::Password("not-bobs-password".into());
        let try_once = || client.ssh("bob", &wrong, "true");
        let runs = tokio::join!(try_once(), try_once(), try_once());
        assert!(
            !runs.0.success && !runs.1.success && !runs.2.success,
            "all refused"
        );
        let listener = [("listener", "sftp")];
        assert_eq!(
            gw.metric("causeway_ssh_password_checks_total", &listener),
            3.0
        );
        assert_eq!(
            gw.metric("causeway_ssh_password_checks_peak", &listener),
            1.0
        );
        assert!(gw.metric("causeway_ssh_password_check_waits_total", &listener) >= 1.0);
        assert_eq!(
            gw.metric("causeway_ssh_password_checks_running", &listener),
            0.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_of_unknown_users_and_key_only_users_cost_a_hash_check_too() {
    bounded(async {
        let gw = TestGateway::start(&listener_yaml(""));
        let client = testkit::ssh::Client::new(gw.address("sftp"));
        let password = testkit::ssh::Credential::Password("guess".into());
        let checks = || {
            gw.metric(
                "causeway_ssh_password_checks_total",
                &[("listener", "sftp")],
            )
        };
        // bob has a hash: his wrong password is one check.
        assert!(!client.ssh("bob", &password, "true").await.success);
        assert_eq!(checks(), 1.0);
        // A user the gateway does not know, and alice (keys only): one check each, alike.
        assert!(!client.ssh("mallory", &password, "true").await.success);
        assert_eq!(
            checks(),
            2.0,
            "an unknown user's password is checked against a hash"
        );
        assert!(!client.ssh("alice", &password, "true").await.success);
        assert_eq!(
            checks(),
            3.0,
            "a key-only user's password is checked against a hash"
        );
        let failed = [
            ("listener", "sftp"),
            ("method", "password"),
            ("result", "failed"),
        ];
        assert_eq!(gw.metric("causeway_ssh_auth_total", &failed), 3.0);
    })
    .await;
}

/// Why the gateway does not start with this configuration (it must not).
fn start_error(yaml: &str) -> String {
    let config = config::parse(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
    match proxy::Gateway::start(&config) {
        Ok(_) => panic!("started with\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_keys_need_legacy_algorithms() {
    bounded(async {
        let keys = example_keys();
        let k = |name: &str| keys.join(name).display().to_string();
        let dir = tempfile::tempdir().unwrap();
        let with = |legacy: bool, host: &str, users: &str, upstream: &str| {
            listener_yaml(&format!("      legacy_algorithms: {legacy}"))
                .replace(&k("gateway_host_ed25519"), &k(host))
                .replace(&k("alice.pub"), users)
                .replace(&k("upstream_ed25519"), &k(upstream))
        };
        // An RSA host key.
        let yaml = with(
            false,
            "gateway_host_rsa",
            &k("alice.pub"),
            "upstream_ed25519",
        );
        let error = start_error(&yaml);
        assert!(
            error.contains("gateway_host_rsa") && error.contains("legacy_algorithms: true"),
            "{error}"
        );
        // An RSA key in a user's authorized_keys: the file and its line.
        let rsa_user = dir.path().join("alice.keys");
        let rsa_pub = std::fs::read_to_string(keys.join("gateway_host_rsa.pub")).unwrap();
        std::fs::write(&rsa_user, format!("# alice\n{rsa_pub}")).unwrap();
        let rsa_user = rsa_user.display().to_string();
        let error = start_error(&with(
            false,
            "gateway_host_ed25519",
            &rsa_user,
            "upstream_ed25519",
        ));
        assert!(
            error.contains("alice.keys: line 2") && error.contains("legacy_algorithms"),
            "{error}"
        );
        // An RSA key to log in upstream with.
        let error = start_error(&with(
            false,
            "gateway_host_ed25519",
            &k("alice.pub"),
            "gateway_host_rsa",
        ));
        assert!(
            error.contains("route `partners`") && error.contains("legacy_algorithms"),
            "{error}"
        );
        // All of them with legacy_algorithms.
        TestGateway::start(&with(
            true,
            "gateway_host_rsa",
            &rsa_user,
            "gateway_host_rsa",
        ));
    })
    .await;
}

/// A gateway whose authorizer vouches for any user; `settings` on its listener.
async fn vouching_gateway(settings: &str) -> (TestGateway, demo::authorizer::TestAuthorizer) {
    use testkit::authorizer::{TestAuthorizer, Verdict};
    let authorizer = TestAuthorizer::start(Verdict::Allow).await;
    let yaml = listener_yaml(settings).replace(
        "        cluster: backend\n",
        "        cluster: backend\n        authorization: { ext_authz: iam }\n",
    );
    let yaml = format!(
        "authorizers:\n  - name: iam\n    address: \"{}\"\n{yaml}",
        authorizer.address
    );
    (TestGateway::start(&yaml), authorizer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_client_key_is_refused_without_legacy_algorithms_even_if_the_authorizer_vouches() {
    bounded(async {
        let ok = [
            ("listener", "sftp"),
            ("method", "publickey"),
            ("result", "ok"),
        ];
        for (legacy, key, logged_in) in [
            (false, "gateway_host_rsa", false),
            (false, "alice", true),
            (true, "gateway_host_rsa", true),
        ] {
            let legacy = format!("      legacy_algorithms: {legacy}");
            let (gw, _authorizer) = vouching_gateway(&legacy).await;
            let client = testkit::ssh::Client::new(gw.address("sftp"));
            // The backend is never reached: whether the login passed is in the metrics.
            client.ssh("mallory", &client.key(key), "true").await;
            let passed = gw.metric("causeway_ssh_auth_total", &ok) == 1.0;
            assert_eq!(passed, logged_in, "{legacy}, key {key}");
        }
    })
    .await;
}

#[test]
fn ssh_routes_get_a_finite_idle_timeout_by_default() {
    let yaml = listener_yaml("");
    let config = config::parse(&yaml, "test.yaml").unwrap();
    let route = &config.listeners[0].routes[0];
    assert_eq!(route.idle_timeout, Some(Duration::from_secs(30 * 60)));
    // One that is set stays.
    let set = yaml.replace(
        "        cluster: backend\n",
        "        cluster: backend\n        idle_timeout: 5m\n",
    );
    let config = config::parse(&set, "test.yaml").unwrap();
    assert_eq!(
        config.listeners[0].routes[0].idle_timeout,
        Some(Duration::from_secs(300))
    );
}

#[test]
fn authorized_keys_with_options_stop_the_start_naming_file_and_line() {
    let keys = example_keys();
    let alice = std::fs::read_to_string(keys.join("alice.pub")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alice.keys");
    std::fs::write(&file, format!("{alice}from=\"10.0.0.0/8\" {alice}")).unwrap();
    let yaml = listener_yaml("").replace(
        &keys.join("alice.pub").display().to_string(),
        &file.display().to_string(),
    );
    let error = start_error(&yaml);
    assert!(error.contains("alice.keys: line 2"), "{error}");
    assert!(error.contains("not enforced"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_at_the_audit_log_path_stops_the_start() {
    bounded(async { symlinked_audit_log() }).await;
}

fn symlinked_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere.jsonl");
    std::fs::write(&elsewhere, "").unwrap();
    let audit = dir.path().join("audit.jsonl");
    std::os::unix::fs::symlink(&elsewhere, &audit).unwrap();
    let with_audit = |path: &std::path::Path| {
        listener_yaml("").replace(
            "ssh: { private_key: ",
            &format!("ssh: {{ audit_log: \"{}\", private_key: ", path.display()),
        )
    };
    let error = start_error(&with_audit(&audit));
    assert!(
        error.contains("audit.jsonl") && error.contains("symbolic link"),
        "{error}"
    );
    // A plain path is created private.
    let plain = dir.path().join("plain.jsonl");
    let _gw = TestGateway::start(&with_audit(&plain));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&plain).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_the_authorizer_authenticates_are_rate_limited() {
    bounded(async {
        let (gw, authorizer) = vouching_gateway("      authorizer_logins_per_second: 1").await;
        let client = testkit::ssh::Client::new(gw.address("sftp"));
        let key = client.key("alice");
        let try_once = || client.ssh("mallory", &key, "true");
        tokio::join!(try_once(), try_once(), try_once());
        let listener = [("listener", "sftp")];
        let throttled = gw.metric("causeway_ssh_authorizer_logins_throttled_total", &listener);
        assert_eq!(throttled, 2.0, "one token: the other two tries are refused");
        assert_eq!(authorizer.requests().len(), 1, "only one was asked");
    })
    .await;
}
