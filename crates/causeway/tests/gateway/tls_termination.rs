//! TLS terminated and originated by the gateway: certificates chosen by SNI, client
//! certificates and SPIFFE identities, rotation of identities under live connections,
//! upstream mTLS; the example configuration with the real openssl client.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use testkit::pki::{Ca, Leaf, LeafSpec};
use testkit::tls_peer::{client_config, connect, server_config};
use testkit::{Backend, TestGateway, bounded, eventually};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const ALLOWED: &str = "spiffe://causeway.test/client/allowed";
const DENIED: &str = "spiffe://causeway.test/client/denied";

/// Reads one line from a TLS (or any) stream, byte by byte, so nothing after it is lost.
async fn line(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<String> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte).await {
            Ok(1) if byte[0] == b'\n' => return Some(String::from_utf8_lossy(&out).into()),
            Ok(1) => out.push(byte[0]),
            _ => return None,
        }
    }
}

async fn assert_echo(stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin), text: &str) {
    stream
        .write_all(format!("{text}\n").as_bytes())
        .await
        .unwrap();
    stream.flush().await.unwrap();
    assert_eq!(line(stream).await.as_deref(), Some(text));
}

/// Whether a TLS client for echo.causeway.test is refused: at its handshake, or (TLS 1.3,
/// where the server's verdict on a client certificate comes after the client's handshake)
/// at its first read.
async fn refused(address: std::net::SocketAddr, config: Arc<rustls::ClientConfig>) -> bool {
    match connect(address, "echo.causeway.test", config).await {
        Err(_) => true,
        Ok(mut tls) => line(&mut tls).await.is_none(),
    }
}

fn handshakes(gw: &TestGateway, side: &str, result: &str) -> u64 {
    gw.metric(
        "causeway_tls_handshakes_total",
        &[("side", side), ("result", result)],
    ) as u64
}

/// A test PKI in a temporary directory.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
    pub(crate) ca: Ca,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: Ca::new("test CA"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca_file(&self) -> String {
        self.ca.write(self.dir.path(), "ca").display().to_string()
    }

    /// Writes `leaf` as NAME.pem / NAME-key.pem; returns the YAML of an identity named NAME.
    fn identity(&self, name: &str, leaf: &Leaf) -> String {
        let (cert, key) = leaf.write(self.dir.path(), name);
        format!(
            "  - {{ name: {name}, cert: \"{}\", key: \"{}\" }}\n",
            cert.display(),
            key.display()
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_follows_the_sni_and_tls13_only_refuses_tls12() {
    bounded(async {
        let pki = Pki::new();
        let a = pki.ca.server(&["a.causeway.test"]);
        let b = pki.ca.server(&["b.causeway.test", "*.b.causeway.test"]);
        let echo = Backend::echo("echo").await;
        let yaml = format!(
            r#"identities:
{}{}listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: web
        terminate: {{ identities: [a, b], min_version: "1.3", alpn: [h2, http/1.1] }}
        cluster: echo
clusters:
  - {{ name: echo, endpoints: [{{ address: "{}" }}] }}
"#,
            pki.identity("a", &a),
            pki.identity("b", &b),
            echo.address
        );
        let gw = TestGateway::start(&yaml);
        let address = gw.address("edge");
        for (sni, expected) in [
            ("a.causeway.test", &a),
            ("b.causeway.test", &b),
            ("x.b.causeway.test", &b),
        ] {
            let config = client_config(&pki.ca.der(), None, &["h2"]);
            let mut tls = connect(address, sni, config).await.unwrap();
            let session = tls.get_ref().1;
            assert_eq!(
                session.peer_certificates().unwrap()[0],
                expected.cert_der,
                "certificate for {sni}"
            );
            assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
            assert_eq!(
                session.protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            assert_eq!(line(&mut tls).await.as_deref(), Some("echo"));
            assert_echo(&mut tls, "through TLS").await;
        }

        // A client that speaks TLS 1.2 only is refused by a TLS 1.3-only route.
        let tls12 =
            rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
                .with_root_certificates({
                    let mut roots = rustls::RootCertStore::empty();
                    roots.add(pki.ca.der()).unwrap();
                    roots
                })
                .with_no_client_auth();
        assert!(
            connect(address, "a.causeway.test", Arc::new(tls12))
                .await
                .is_err()
        );
        eventually("the refusal is counted", || {
            handshakes(&gw, "downstream", "protocol_version") == 1
        })
        .await;
        assert_eq!(handshakes(&gw, "downstream", "ok"), 3);
        assert_eq!(gw.rejected("edge", "tls_handshake_failed"), 1.0);
        assert_eq!(echo.accepted(), 3, "nothing dialed for the refused client");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_passes_through_a_terminated_session() {
    bounded(async {
        let pki = Pki::new();
        let server = pki.ca.server(&["echo.causeway.test"]);
        let echo = Backend::echo("echo").await;
        let gw = TestGateway::start(&mtls_config(&pki, &server, "none", "", &echo));
        let config = client_config(&pki.ca.der(), None, &[]);
        let mut tls = connect(gw.address("edge"), "echo.causeway.test", config)
            .await
            .unwrap();
        let big = vec![b'x'; 300_000];
        tls.write_all(&big).await.unwrap();
        // close_notify and FIN: the backend sees the end of the stream, echoes the rest,
        // then ends its side, which reaches us as close_notify and FIN.
        tls.shutdown().await.unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), "echo\n".len() + big.len());
        assert!(got[5..].iter().all(|b| *b == b'x'));
        eventually("closed cleanly", || {
            gw.gateway.connections_snapshot().is_empty()
        })
        .await;
    })
    .await;
}

pub(crate) fn mtls_config(
    pki: &Pki,
    server: &Leaf,
    mode: &str,
    allowed: &str,
    echo: &Backend,
) -> String {
    format!(
        r#"identities:
{}  - {{ name: ca, bundle: "{}" }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: secure
        terminate:
          identities: [server]
          client_certificate: {mode}
          trust: ca
{allowed}        cluster: echo
clusters:
  - {{ name: echo, endpoints: [{{ address: "{}" }}] }}
"#,
        pki.identity("server", server),
        pki.ca_file(),
        echo.address
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identities_are_verified_and_refused_ones_get_an_alert() {
    bounded(async {
        let pki = Pki::new();
        let server = pki.ca.server(&["echo.causeway.test"]);
        let echo = Backend::echo("echo").await;
        let allowed = "          allowed_clients: { spiffe_id_prefixes: [\"spiffe://causeway.test/client/allowed\"] }\n";
        let gw = TestGateway::start(&mtls_config(&pki, &server, "required", allowed, &echo));
        let address = gw.address("edge");
        let ca = pki.ca.der();

        let good = pki.ca.spiffe(ALLOWED);
        let mut tls = connect(address, "echo.causeway.test", client_config(&ca, Some(&good), &[]))
            .await
            .unwrap();
        assert_eq!(line(&mut tls).await.as_deref(), Some("echo"));
        assert_echo(&mut tls, "allowed").await;
        // What the gateway knows of the connection: SNI, TLS session, verified identity.
        let live = &gw.gateway.connections_snapshot()[0];
        assert_eq!(live.sni.as_deref(), Some("echo.causeway.test"));
        assert_eq!(live.tls_version.as_deref(), Some("TLSv1_3"));
        let cipher = live.tls_cipher.as_deref().expect("terminated");
        assert!(cipher.starts_with("TLS13_"), "{cipher}");
        assert_eq!(live.peer_spiffe_id.as_deref(), Some(ALLOWED));
        let subject = live.peer_subject.as_deref().expect("client identity");
        assert!(subject.contains("CN=allowed"), "{subject}");

        // Refused: another SPIFFE ID, an expired certificate, a certificate of another CA,
        // no certificate. Each is a failed handshake on the client's side, with a reason.
        let other_ca = Ca::new("other CA");
        let expired = pki.ca.issue(&LeafSpec {
            common_name: "expired",
            spiffe_id: Some(ALLOWED),
            expires: Some(std::time::SystemTime::now() - Duration::from_secs(60)),
            ..Default::default()
        });
        let cases = [
            (Some(pki.ca.spiffe(DENIED)), "identity_refused"),
            (Some(expired), "certificate_expired"),
            (Some(other_ca.spiffe(ALLOWED)), "unknown_ca"),
            (None, "no_certificate"),
        ];
        for (cert, reason) in &cases {
            let config = client_config(&ca, cert.as_ref(), &[]);
            assert!(refused(address, config).await, "{reason}: refused");
            eventually(reason, || handshakes(&gw, "downstream", reason) == 1).await;
        }
        assert_eq!(echo.accepted(), 1, "refused clients never reach the backend");
        assert_eq!(gw.rejected("edge", "tls_handshake_failed"), 4.0);
    })
    .await;
}

/// SPIFFE prefixes match whole path segments (`.../allowed` is not `.../allowed-evil`, trust
/// domain `causeway.test` is not `causeway.test.evil`), and a certificate with more than one
/// URI SAN is refused, whichever of them is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spiffe_prefixes_stop_at_a_path_segment_and_two_uri_sans_are_refused() {
    bounded(async {
        let pki = Pki::new();
        let server = pki.ca.server(&["echo.causeway.test"]);
        let echo = Backend::echo("echo").await;
        let allowed = format!(
            "          allowed_clients: {{ spiffe_id_prefixes: [\"{ALLOWED}\", \"spiffe://partner.test\"] }}\n"
        );
        let gw = TestGateway::start(&mtls_config(&pki, &server, "required", &allowed, &echo));
        let address = gw.address("edge");
        let ca = pki.ca.der();
        for id in [
            ALLOWED.to_string(),
            format!("{ALLOWED}/worker"),
            "spiffe://partner.test/app".into(),
        ] {
            let config = client_config(&ca, Some(&pki.ca.spiffe(&id)), &[]);
            let mut tls = connect(address, "echo.causeway.test", config)
                .await
                .unwrap();
            assert_eq!(line(&mut tls).await.as_deref(), Some("echo"), "{id}");
        }
        let two_uris = pki.ca.issue(&LeafSpec {
            common_name: "two",
            spiffe_id: Some(ALLOWED),
            extra_uris: &["spiffe://causeway.test/client/other"],
            ..Default::default()
        });
        let refused_ones = [
            pki.ca.spiffe(&format!("{ALLOWED}-evil")),
            pki.ca.spiffe("spiffe://partner.test.evil/app"),
            two_uris,
        ];
        for (n, cert) in refused_ones.iter().enumerate() {
            let config = client_config(&ca, Some(cert), &[]);
            assert!(refused(address, config).await, "case {n}: refused");
        }
        eventually("counted", || {
            handshakes(&gw, "downstream", "identity_refused") == 3
        })
        .await;
        assert_eq!(echo.accepted(), 3, "refused clients never reach the backend");
    })
    .await;
}

/// An allow-list of clients with an optional certificate would let a client that sends none
/// pass it: refused at validation, where it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_clients_with_an_optional_certificate_is_a_config_error() {
    let pki = Pki::new();
    let server = pki.ca.server(&["echo.causeway.test"]);
    let echo = Backend::echo("echo").await;
    let allowed = format!("          allowed_clients: {{ spiffe_ids: [\"{ALLOWED}\"] }}\n");
    let yaml = mtls_config(&pki, &server, "optional", &allowed, &echo);
    let e = config::parse(&yaml, "bad.yaml").unwrap_err().to_string();
    assert!(
        e.starts_with("bad.yaml:13:28:") && e.contains("set client_certificate: required"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_client_certificate_is_verified_when_sent() {
    bounded(async {
        let pki = Pki::new();
        let server = pki.ca.server(&["echo.causeway.test"]);
        let echo = Backend::echo("echo").await;
        let gw = TestGateway::start(&mtls_config(&pki, &server, "optional", "", &echo));
        let address = gw.address("edge");
        let ca = pki.ca.der();
        for cert in [None, Some(pki.ca.spiffe(ALLOWED))] {
            let config = client_config(&ca, cert.as_ref(), &[]);
            let mut tls = connect(address, "echo.causeway.test", config)
                .await
                .unwrap();
            assert_eq!(line(&mut tls).await.as_deref(), Some("echo"));
            let live = gw.gateway.connections_snapshot();
            let peer = live.iter().find_map(|l| l.peer_spiffe_id.clone());
            assert_eq!(peer, cert.map(|_| ALLOWED.to_string()));
            drop(tls);
            eventually("closed", || gw.gateway.connections_snapshot().is_empty()).await;
        }
        let stranger = Ca::new("other").spiffe(ALLOWED);
        let config = client_config(&ca, Some(&stranger), &[]);
        assert!(
            refused(address, config).await,
            "a certificate sent is verified"
        );
        eventually("counted", || {
            handshakes(&gw, "downstream", "unknown_ca") == 1
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_and_identities_are_in_metrics_and_the_access_log() {
    bounded(async {
        let pki = Pki::new();
        let server = pki.ca.server(&["echo.causeway.test"]);
        let echo = Backend::echo("echo").await;
        let log = pki.path("access.log");
        let allowed = "          allowed_clients: { trust_domains: [causeway.test] }\n";
        let yaml = format!(
            "access_log: {{ path: \"{}\" }}\n{}",
            log.display(),
            mtls_config(&pki, &server, "required", allowed, &echo)
        );
        let gw = TestGateway::start(&yaml);
        let address = gw.address("edge");
        let ca = pki.ca.der();
        let good = pki.ca.spiffe(ALLOWED);
        let mut tls = connect(address, "echo.causeway.test", client_config(&ca, Some(&good), &["h2"]))
            .await
            .unwrap();
        assert_eq!(line(&mut tls).await.as_deref(), Some("echo"));
        tls.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
        let stranger = Ca::new("other").spiffe(ALLOWED);
        let refused = connect(address, "echo.causeway.test", client_config(&ca, Some(&stranger), &[])).await;
        if let Ok(mut t) = refused {
            assert_eq!(line(&mut t).await, None);
        }

        let read = || -> Vec<serde_json::Value> {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        eventually("two access log lines", || read().len() == 2).await;
        let lines = read();
        let ok = lines.iter().find(|l| l["reason"] == "closed").expect("the allowed session");
        assert_eq!(ok["sni"], "echo.causeway.test");
        assert_eq!(ok["tls_version"], "TLSv1_3");
        assert!(ok["tls_cipher"].as_str().unwrap().starts_with("TLS13_"));
        assert_eq!(ok["peer_spiffe_id"], ALLOWED);
        assert!(ok["alpn"].is_null(), "the route offers no ALPN: none negotiated");
        let refused = lines.iter().find(|l| l["reason"] != "closed").unwrap();
        assert_eq!(refused["reason"], "downstream_tls_unknown_ca");
        assert_eq!(refused["route"], "secure");

        let text = gw.metrics_text();
        let sample = |needle: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(sample("causeway_tls_handshakes_total{side=\"downstream\",result=\"ok\"}"), 1.0);
        assert_eq!(sample("causeway_tls_handshakes_total{side=\"downstream\",result=\"unknown_ca\"}"), 1.0);
        let left = sample("causeway_tls_certificate_expiry_seconds{identity=\"server\"}");
        assert!(left > 3600.0 && left <= 86400.0, "{left}");
        // The same as a Unix time, for alerts on `… - time()`.
        let at = sample("causeway_tls_certificate_expiry_timestamp_seconds{identity=\"server\"}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        assert!((at - (now.as_secs_f64() + left)).abs() < 5.0, "{at} vs now + {left}");
        // Its handshake took a moment, in the histogram.
        let handshakes = "causeway_tls_handshake_duration_seconds_count{side=\"downstream\"}";
        assert_eq!(sample(handshakes), 1.0);
        assert_eq!(sample("causeway_tls_identity_rotations_total{identity=\"server\"}"), 0.0);
        assert_eq!(
            sample("causeway_listener_connections_rejected_total{listener=\"edge\",reason=\"tls_handshake_failed\"}"),
            1.0
        );
    })
    .await;
}

/// Replaces a file the way certificate tools do: write aside, rename over.
fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_files_reach_new_handshakes_and_leave_live_connections_alone() {
    bounded(async {
        let pki = Pki::new();
        let first = pki.ca.server(&["echo.causeway.test"]);
        let echo = Backend::echo("echo").await;
        let gw = TestGateway::start(&mtls_config(&pki, &first, "required", "", &echo));
        let address = gw.address("edge");
        let client = pki.ca.spiffe(ALLOWED);
        let config = client_config(&pki.ca.der(), Some(&client), &[]);

        let mut live = connect(address, "echo.causeway.test", config.clone())
            .await
            .unwrap();
        assert_eq!(
            live.get_ref().1.peer_certificates().unwrap()[0],
            first.cert_der
        );
        assert_eq!(line(&mut live).await.as_deref(), Some("echo"));

        let second = pki.ca.server(&["echo.causeway.test"]);
        replace(&pki.path("server.pem"), &second.cert_pem);
        replace(&pki.path("server-key.pem"), &second.key_pem);
        let identity = gw
            .gateway
            .identities()
            .into_iter()
            .find(|i| &*i.name == "server")
            .unwrap();
        let mut changes = identity.changes();
        changes
            .wait_for(|m| {
                m.as_ref()
                    .and_then(|m| m.certified.as_ref())
                    .map(|c| c.cert[0].clone())
                    == Some(second.cert_der.clone())
            })
            .await
            .unwrap();
        let server = [("identity", "server")];
        assert_eq!(
            gw.metric("causeway_tls_identity_rotations_total", &server),
            1.0
        );

        assert_echo(&mut live, "still here after the rotation").await;
        // (A new client: one that resumes its session sees the certificate of that session.)
        let config = client_config(&pki.ca.der(), Some(&client), &[]);
        let mut fresh = connect(address, "echo.causeway.test", config)
            .await
            .unwrap();
        assert_eq!(
            fresh.get_ref().1.peer_certificates().unwrap()[0],
            second.cert_der
        );
        assert_eq!(line(&mut fresh).await.as_deref(), Some("echo"));

        // A broken rewrite (a key that is not the certificate's) keeps the last good pair.
        let third = pki.ca.server(&["echo.causeway.test"]);
        replace(&pki.path("server.pem"), &third.cert_pem);
        eventually("the failed load is counted", || {
            gw.metric("causeway_tls_identity_load_failures_total", &server) == 1.0
        })
        .await;
        let mut after = connect(
            address,
            "echo.causeway.test",
            client_config(&pki.ca.der(), Some(&client), &[]),
        )
        .await
        .unwrap();
        assert_eq!(
            after.get_ref().1.peer_certificates().unwrap()[0],
            second.cert_der
        );
        assert_eq!(line(&mut after).await.as_deref(), Some("echo"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mtls_presents_our_spiffe_id_and_checks_the_servers() {
    bounded(async {
        let pki = Pki::new();
        let backend_cert = pki.ca.issue(&LeafSpec {
            common_name: "backend",
            dns_names: &["backend.internal"],
            spiffe_id: Some("spiffe://causeway.test/backend"),
            ..Default::default()
        });
        // The backend requires a client certificate from the CA and greets with its ID.
        let backend =
            Backend::tls_echo("backend", server_config(&backend_cert, Some(&pki.ca.der()))).await;
        let gateway_cert = pki.ca.spiffe("spiffe://causeway.test/gateway");
        let yaml = format!(
            r#"identities:
{}  - {{ name: ca, bundle: "{}" }}
listeners:
  - name: by-spiffe
    address: 127.0.0.1:0
    routes: [{{ cluster: by-spiffe }}]
  - name: by-name
    address: 127.0.0.1:0
    routes: [{{ cluster: by-name }}]
  - name: wrong-id
    address: 127.0.0.1:0
    routes: [{{ cluster: wrong-id }}]
  - name: no-client-cert
    address: 127.0.0.1:0
    routes: [{{ cluster: no-client-cert }}]
  - name: re-encrypt
    address: 127.0.0.1:0
    routes: [{{ terminate: {{ identities: [front] }}, cluster: forward-sni }}]
clusters:
  - name: by-spiffe
    endpoints: [{{ address: "{backend}" }}]
    tls: {{ trust: ca, identity: gateway, verify_spiffe_ids: [spiffe://causeway.test/backend] }}
  - name: by-name
    endpoints: [{{ address: "{backend}" }}]
    tls: {{ trust: ca, identity: gateway, server_name: backend.internal }}
  - name: wrong-id
    endpoints: [{{ address: "{backend}" }}]
    tls: {{ trust: ca, identity: gateway, verify_spiffe_ids: [spiffe://causeway.test/other] }}
  - name: no-client-cert
    endpoints: [{{ address: "{backend}" }}]
    tls: {{ trust: ca, server_name: backend.internal }}
  - name: forward-sni
    endpoints: [{{ address: "{backend}" }}]
    tls: {{ trust: ca, identity: gateway, forward_sni: true }}
"#,
            pki.identity("gateway", &gateway_cert)
                + &pki.identity("front", &pki.ca.server(&["backend.internal"])),
            pki.ca_file(),
            backend = backend.address,
        );
        let gw = TestGateway::start(&yaml);
        for listener in ["by-spiffe", "by-name"] {
            let (mut client, greeting) = testkit::Client::greeted(gw.address(listener)).await;
            assert_eq!(
                greeting, "backend spiffe://causeway.test/gateway",
                "{listener}"
            );
            client.assert_echo("plaintext in, TLS out").await;
        }
        assert_eq!(handshakes(&gw, "upstream", "ok"), 2);

        // Terminated, then originated again with the client's SNI (the backend's
        // certificate must be valid for it).
        let config = client_config(&pki.ca.der(), None, &[]);
        let mut tls = connect(gw.address("re-encrypt"), "backend.internal", config)
            .await
            .unwrap();
        assert_eq!(
            line(&mut tls).await.as_deref(),
            Some("backend spiffe://causeway.test/gateway")
        );
        assert_eq!(handshakes(&gw, "upstream", "ok"), 3);

        assert!(closed_at_once(gw.address("wrong-id")).await);
        assert_eq!(handshakes(&gw, "upstream", "identity_refused"), 1);
        // The backend refuses a gateway without a client certificate; with TLS 1.3 the
        // refusal arrives after the handshake, so the client just sees its connection end.
        assert!(closed_at_once(gw.address("no-client-cert")).await);
    })
    .await;
}

/// Whether a connection to `address` ends without a byte (closed, reset, even while
/// connecting: the gateway may reset it before the client's connect() returns).
async fn closed_at_once(address: std::net::SocketAddr) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
        return true;
    };
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte).await, Ok(0) | Err(_))
}

/// `openssl s_client` against the gateway: stdin and stdout piped.
struct Openssl {
    child: tokio::process::Child,
    stdout: BufReader<tokio::process::ChildStdout>,
}

impl Openssl {
    fn start(
        address: std::net::SocketAddr,
        sni: &str,
        certs: &Path,
        client: Option<&str>,
    ) -> Openssl {
        let mut command = tokio::process::Command::new("openssl");
        command
            .args(["s_client", "-quiet", "-connect", &address.to_string()])
            .args(["-servername", sni])
            .arg("-CAfile")
            .arg(certs.join("ca.pem"));
        if let Some(name) = client {
            command
                .arg("-cert")
                .arg(certs.join(format!("{name}.pem")))
                .arg("-key")
                .arg(certs.join(format!("{name}-key.pem")));
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("openssl is installed (scripts/test installs it)");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Openssl { child, stdout }
    }

    async fn send(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// The next line the server sent; `None` when the session ended.
    async fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end().to_string()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_example_runs_as_documented() {
    bounded(async {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let certs = root.join("examples/certs");
        let echo = Backend::echo("echo").await;
        let pass_cert = Leaf::from_files(&certs.join("pass.pem"), &certs.join("pass-key.pem"));
        let pass = Backend::tls_echo("pass", server_config(&pass_cert, None)).await;
        let mq = Backend::tls_echo("mq", server_config(&pass_cert, None)).await;
        let yaml = std::fs::read_to_string(root.join("examples/tls.yaml"))
            .unwrap()
            .replace("examples/certs/", &format!("{}/", certs.display()))
            .replace("127.0.0.1:10443", "127.0.0.1:0")
            .replace("127.0.0.1:10001", &echo.address.to_string())
            .replace("127.0.0.1:10003", &pass.address.to_string())
            .replace("127.0.0.1:10004", &mq.address.to_string());
        let gw = TestGateway::start(&yaml);
        let address = gw.address("edge");

        let mut allowed = Openssl::start(
            address,
            "echo.causeway.test",
            &certs,
            Some("client-allowed"),
        );
        assert_eq!(allowed.line().await.as_deref(), Some("echo"));
        allowed.send("hello through causeway").await;
        assert_eq!(
            allowed.line().await.as_deref(),
            Some("hello through causeway")
        );

        for client in [Some("client-denied"), None] {
            let mut refused = Openssl::start(address, "echo.causeway.test", &certs, client);
            refused.send("anyone there?").await;
            assert_eq!(refused.line().await, None, "{client:?} is refused");
        }
        assert_eq!(echo.accepted(), 1);

        // Passed through: the TLS session is the backend's own (openssl verifies its
        // certificate against the same CA).
        let mut through = Openssl::start(address, "pass.causeway.test", &certs, None);
        assert_eq!(through.line().await.as_deref(), Some("pass -"));
        through.send("end to end").await;
        assert_eq!(through.line().await.as_deref(), Some("end to end"));
        let mut channel = Openssl::start(address, "to2e-qmgr1.chl.mq.ibm.com", &certs, None);
        assert_eq!(channel.line().await.as_deref(), Some("mq -"));

        let mut unknown = Openssl::start(address, "other.causeway.test", &certs, None);
        assert_eq!(unknown.line().await, None, "no route for other names");
        assert_eq!(gw.rejected("edge", "no_route"), 1.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_api_rotation_reaches_new_handshakes_and_leaves_live_ones_alone() {
    use testkit::spire::{FakeSpire, Svid};
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("SPIRE CA");
        let svid = |leaf: &Leaf| Svid {
            spiffe_id: "spiffe://causeway.test/gateway".into(),
            chain_der: vec![leaf.cert_der.to_vec()],
            key_pkcs8_der: leaf.key_der.clone(),
            bundle_der: vec![ca.der().to_vec()],
        };
        let spec = LeafSpec {
            common_name: "gateway",
            dns_names: &["gateway.causeway.test"],
            spiffe_id: Some("spiffe://causeway.test/gateway"),
            ..Default::default()
        };
        let first = ca.issue(&spec);
        let agent = FakeSpire::start(dir.path()).await;
        agent.rotate(svid(&first));
        let echo = Backend::echo("echo").await;
        let gw = TestGateway::start(&format!(
            r#"identities:
  - name: mesh
    spire: {{ socket: "unix://{}" }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - terminate: {{ identities: [mesh], client_certificate: required, trust: mesh }}
        cluster: echo
clusters:
  - {{ name: echo, endpoints: [{{ address: "{}" }}] }}
"#,
            agent.socket.display(),
            echo.address
        ));
        assert!(
            gw.gateway
                .identities_ready(Duration::from_secs(10))
                .await
                .is_empty(),
            "the first SVID arrives"
        );
        let client = ca.spiffe("spiffe://causeway.test/client");
        let config = || client_config(&ca.der(), Some(&client), &[]);
        let address = gw.address("edge");
        let mut live = connect(address, "gateway.causeway.test", config())
            .await
            .unwrap();
        assert_eq!(
            live.get_ref().1.peer_certificates().unwrap()[0],
            first.cert_der
        );
        assert_eq!(line(&mut live).await.as_deref(), Some("echo"));

        let second = ca.issue(&spec);
        agent.rotate(svid(&second));
        let identity = gw.gateway.identities().pop().unwrap();
        identity
            .changes()
            .wait_for(|m| {
                m.as_ref()
                    .and_then(|m| m.certified.as_ref())
                    .is_some_and(|c| c.cert[0] == second.cert_der)
            })
            .await
            .unwrap();
        assert_eq!(
            gw.metric(
                "causeway_tls_identity_rotations_total",
                &[("identity", "mesh")]
            ),
            1.0
        );
        assert_echo(&mut live, "the live session is untouched").await;
        let mut fresh = connect(address, "gateway.causeway.test", config())
            .await
            .unwrap();
        assert_eq!(
            fresh.get_ref().1.peer_certificates().unwrap()[0],
            second.cert_der
        );
        assert_eq!(line(&mut fresh).await.as_deref(), Some("echo"));
    })
    .await;
}
