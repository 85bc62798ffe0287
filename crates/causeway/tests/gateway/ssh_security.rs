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
