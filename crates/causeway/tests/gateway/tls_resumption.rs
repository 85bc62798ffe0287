//! TLS session resumption on routes that do not check client certificates: stateless
//! tickets sealed with the process's keys, so a session resumes whatever the number of
//! clients, and after a reload rebuilt the route; the cipher suite is the gateway's choice. (Routes that check client certificates
//! never resume: tls_revocation.rs.)

use std::path::Path;
use testkit::pki::Ca;
use testkit::tls_peer::openssl_session;
use testkit::{Backend, TestGateway, bounded};

/// A listener terminating TLS for `echo.causeway.test` (no client certificate) in front of
/// `echo`, the route idle for `idle` at most.
fn config(dir: &Path, echo: &Backend, idle: &str) -> String {
    format!(
        r#"identities:
  - {{ name: server, cert: "{dir}/server.pem", key: "{dir}/server-key.pem" }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - {{ name: echo, terminate: {{ identities: [server] }}, cluster: echo, idle_timeout: {idle} }}
clusters:
  - {{ name: echo, endpoints: [{{ address: "{}" }}] }}
"#,
        echo.address,
        dir = dir.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_resume_with_tickets_and_across_a_reload() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("CA");
        std::fs::write(dir.path().join("client-ca.pem"), ca.pem()).unwrap();
        ca.server(&["echo.causeway.test"])
            .write(dir.path(), "server");
        let echo = Backend::echo("echo").await;
        let gw = TestGateway::start(&config(dir.path(), &echo, "1h"));
        let address = gw.address("edge");

        let first = openssl_session(address, dir.path(), false, false).await;
        assert!(first.greeted, "{}", first.said);
        assert!(first.said.contains("New, TLSv1.3"), "{}", first.said);
        // openssl offers AES-256-GCM first; the gateway chooses AES-128-GCM (docs/tls.md).
        let cipher = "Cipher is TLS_AES_128_GCM_SHA256";
        assert!(first.said.contains(cipher), "{}", first.said);
        let resumed = openssl_session(address, dir.path(), false, true).await;
        assert!(resumed.greeted, "{}", resumed.said);
        assert!(resumed.said.contains("Reused, TLSv1.3"), "{}", resumed.said);

        // The route is rebuilt with a new TLS configuration; the ticket still opens.
        let summary = gw.reload(&config(dir.path(), &echo, "2h"));
        assert_eq!(summary.listeners_updated, ["edge"]);
        let after_reload = openssl_session(address, dir.path(), false, true).await;
        assert!(after_reload.greeted, "{}", after_reload.said);
        assert!(
            after_reload.said.contains("Reused, TLSv1.3"),
            "{}",
            after_reload.said
        );
        assert_eq!(echo.accepted(), 3);
    })
    .await;
}
