//! The authorizer reached over TLS (and mTLS): the check request carries passwords, so it
//! never crosses the network in the clear when `tls` is set. The test authorizer sits behind
//! a small TLS-terminating forwarder that requires a client certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use testkit::authorizer::{TestAuthorizer, Verdict};
use testkit::pki::Ca;
use testkit::{Backend, Client, TestGateway, bounded};
use tokio::net::{TcpListener, TcpStream};

/// Accepts TLS (ALPN h2, a client certificate of `client_ca` required) and forwards the
/// bytes to `to`.
async fn tls_forwarder(ca: &Ca, client_ca: &Ca, to: SocketAddr) -> SocketAddr {
    let leaf = ca.server(&["authz.causeway.test"]);
    let mut config = (*testkit::tls_peer::server_config(&leaf, Some(&client_ca.der()))).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                let Some(mut tls) = testkit::tls_peer::accept(stream, config).await else {
                    return;
                };
                if let Ok(mut upstream) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                }
            });
        }
    });
    address
}

fn gateway(
    dir: &Path,
    forwarder: SocketAddr,
    trusted: &Ca,
    client: &Ca,
    main: &Backend,
) -> TestGateway {
    let ca = trusted.write(dir, "authz-ca");
    let (cert, key) = client
        .spiffe("spiffe://causeway.test/gateway")
        .write(dir, "gateway");
    TestGateway::start(&format!(
        r#"authorizers:
  - name: iam
    address: "{forwarder}"
    failure_mode: deny
    tls: {{ ca: "{}", certificate: "{}", key: "{}", server_name: authz.causeway.test }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - authorization: {{ ext_authz: iam }}
        cluster: main
clusters:
  - {{ name: main, endpoints: [{{ address: "{}" }}] }}
"#,
        ca.display(),
        cert.display(),
        key.display(),
        main.address
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_is_reached_over_mutual_tls() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (server_ca, client_ca) = (Ca::new("authz CA"), Ca::new("gateway CA"));
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let forwarder = tls_forwarder(&server_ca, &client_ca, authorizer.address).await;
        let main = Backend::echo("main").await;
        let gw = gateway(dir.path(), forwarder, &server_ca, &client_ca, &main);
        let (_client, name) = Client::greeted(gw.address("edge")).await;
        assert_eq!(name, "main");
        assert_eq!(authorizer.requests().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorizer_with_an_untrusted_certificate_is_a_failure() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (server_ca, client_ca) = (Ca::new("authz CA"), Ca::new("gateway CA"));
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let forwarder = tls_forwarder(&server_ca, &client_ca, authorizer.address).await;
        let main = Backend::echo("main").await;
        let wrong_ca = Ca::new("another CA");
        let gw = gateway(dir.path(), forwarder, &wrong_ca, &client_ca, &main);
        let mut client = Client::connect(gw.address("edge")).await;
        assert!(client.is_closed().await, "failure_mode: deny");
        assert!(
            authorizer.requests().is_empty(),
            "nothing reached the service"
        );
        let labels = [("authorizer", "iam"), ("result", "error")];
        assert_eq!(gw.metric("causeway_authz_checks_total", &labels), 1.0);
        assert_eq!(main.accepted(), 0);
    })
    .await;
}

#[test]
fn authorizer_tls_settings_are_checked() {
    let yaml = r#"authorizers:
  - name: iam
    address: 127.0.0.1:9001
    tls: { ca: ca.pem, certificate: me.pem }
listeners:
  - name: l
    address: 127.0.0.1:10000
    routes:
      - authorization: { ext_authz: iam }
        cluster: c
clusters:
  - { name: c, endpoints: [{ address: 127.0.0.1:10001 }] }
"#;
    let e = config::parse(yaml, "bad.yaml").unwrap_err().to_string();
    assert!(
        e.starts_with("bad.yaml:4:10:") && e.contains("go together"),
        "{e}"
    );
}
