//! Revocation of client certificates: a session resumed after the trust bundle rotated is a
//! full handshake (and refused), a certificate in `crl_files` is refused, and a CRL that
//! changes reaches the next handshake.

use std::path::Path;
use std::sync::Arc;
use testkit::pki::{Ca, Leaf};
use testkit::tls_peer::{client_config, connect, openssl_session};
use testkit::{Backend, TestGateway, bounded, eventually};
use tokio::io::AsyncReadExt;

const CLIENT: &str = "spiffe://causeway.test/client/a";

/// An mTLS listener `edge` trusting the identity `ca` (`ca.pem`, and `crl_files` if given).
fn gateway(dir: &Path, server: &Leaf, crl: Option<&Path>, echo: &Backend) -> TestGateway {
    let (cert, key) = server.write(dir, "server");
    let crl = crl.map_or(String::new(), |c| {
        format!(", crl_files: [\"{}\"]", c.display())
    });
    TestGateway::start(&format!(
        r#"identities:
  - {{ name: server, cert: "{}", key: "{}" }}
  - {{ name: ca, bundle: "{}"{crl} }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - terminate: {{ identities: [server], client_certificate: required, trust: ca }}
        cluster: echo
clusters:
  - {{ name: echo, endpoints: [{{ address: "{}" }}] }}
"#,
        cert.display(),
        key.display(),
        dir.join("ca.pem").display(),
        echo.address
    ))
}

/// Replaces a file the way certificate tools do: write aside, rename over.
fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// Whether a client with `leaf` gets the backend's greeting.
async fn greeted(address: std::net::SocketAddr, ca: &Ca, leaf: &Leaf) -> bool {
    let config: Arc<_> = client_config(&ca.der(), Some(leaf), &[]);
    let Ok(mut tls) = connect(address, "echo.causeway.test", config).await else {
        return false;
    };
    let mut greeting = [0u8; 5];
    tls.read_exact(&mut greeting).await.is_ok() && &greeting == b"echo\n"
}

fn rotations(gw: &TestGateway, identity: &str) -> f64 {
    let labels = [("identity", identity)];
    gw.metric("causeway_tls_identity_rotations_total", &labels)
}

/// `openssl s_client` with `dir/client.pem`, saving or resuming `dir/session.pem`.
async fn s_client(address: std::net::SocketAddr, dir: &Path, resume: bool) -> (bool, String) {
    let session = openssl_session(address, dir, true, resume).await;
    (session.greeted, session.said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumed_after_the_bundle_rotated_is_verified_again() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("client-ca.pem"), ca.pem()).unwrap();
        ca.spiffe(CLIENT).write(dir.path(), "client");
        let echo = Backend::echo("echo").await;
        let server = ca.server(&["echo.causeway.test"]);
        let gw = gateway(dir.path(), &server, None, &echo);
        let address = gw.address("edge");

        let (greeted, said) = s_client(address, dir.path(), false).await;
        assert!(greeted, "{said}");
        // The client's CA is no longer trusted.
        replace(&dir.path().join("ca.pem"), &Ca::new("another CA").pem());
        eventually("bundle rotated", || rotations(&gw, "ca") == 1.0).await;

        let (greeted, said) = s_client(address, dir.path(), true).await;
        assert!(!greeted, "a resumed session is not let in:\n{said}");
        assert!(!said.contains("Reused"), "{said}");
        assert_eq!(echo.accepted(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_certificate_is_refused_and_a_new_crl_is_read() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("CA");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let revoked = ca.spiffe(CLIENT);
        let good = ca.spiffe("spiffe://causeway.test/client/b");
        let crl = dir.path().join("ca.crl");
        std::fs::write(&crl, ca.crl(&[&revoked])).unwrap();
        let echo = Backend::echo("echo").await;
        let server = ca.server(&["echo.causeway.test"]);
        let gw = gateway(dir.path(), &server, Some(&crl), &echo);
        let address = gw.address("edge");

        assert!(greeted(address, &ca, &good).await, "not revoked");
        assert!(!greeted(address, &ca, &revoked).await, "revoked");
        eventually("counted", || {
            let labels = [("side", "downstream"), ("result", "certificate_revoked")];
            gw.metric("causeway_tls_handshakes_total", &labels) == 1.0
        })
        .await;

        // A new CRL revokes the other one too: read when it changes.
        replace(&crl, &ca.crl(&[&revoked, &good]));
        eventually("CRL re-read", || rotations(&gw, "ca") == 1.0).await;
        assert!(!greeted(address, &ca, &good).await, "revoked since");
        assert_eq!(echo.accepted(), 1);
    })
    .await;
}

#[test]
fn crl_files_need_a_bundle() {
    let yaml = r#"identities:
  - { name: ca, crl_files: [ca.crl] }
listeners:
  - name: l
    address: 127.0.0.1:10000
    routes:
      - cluster: c
clusters:
  - { name: c, endpoints: [{ address: 127.0.0.1:10001 }] }
"#;
    let e = config::parse(yaml, "bad.yaml").unwrap_err().to_string();
    assert!(
        e.starts_with("bad.yaml:2:29:") && e.contains("give a bundle too"),
        "{e}"
    );
}
