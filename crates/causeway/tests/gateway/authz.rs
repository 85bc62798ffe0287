//! Authorization before dialing: an ext_authz server that allows, denies, fails, hangs and
//! routes; built-in rules; the decision cache; re-authorization of live connections; the
//! request as Envoy's network filter fills it.

use testkit::authorizer::{TestAuthorizer, Verdict, source_of};
use testkit::{Backend, Client, TestGateway, bounded, eventually};

fn string(s: &str) -> envoy_types::pb::google::protobuf::Value {
    authz::metadata::string(s)
}

/// Whether a connection to `address` is closed without a byte from a backend.
async fn refused(address: std::net::SocketAddr) -> bool {
    let mut client = Client::connect(address).await;
    client.is_closed().await
}

fn config(
    authorizer: &TestAuthorizer,
    failure_mode: &str,
    main: &Backend,
    alt: &Backend,
) -> String {
    format!(
        r#"authorizers:
  - {{ name: iam, address: "{}", timeout: 300ms, failure_mode: {failure_mode} }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: checked
        authorization:
          ext_authz: iam
          dynamic_targets: {{ cidrs: [127.0.0.1/32], ports: ["{}"] }}
        cluster: main
clusters:
  - {{ name: main, endpoints: [{{ address: "{}" }}] }}
  - {{ name: alt, endpoints: [{{ address: "{}" }}] }}
"#,
        authorizer.address,
        alt.address.port(),
        main.address,
        alt.address
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_authorizer_is_honoured_before_dialing() {
    bounded(async {
        let main = Backend::echo("main").await;
        let alt = Backend::echo("alt").await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let gw = TestGateway::start(&config(&authorizer, "deny", &main, &alt));
        let edge = gw.address("edge");

        // Allowed: the request describes the connection as Envoy's network filter would.
        let (mut client, name) = Client::greeted(edge).await;
        assert_eq!(name, "main");
        client.assert_echo("allowed").await;
        let me = client.stream.get_ref().local_addr().unwrap();
        let request = &authorizer.requests()[0];
        assert_eq!(source_of(request), Some(me.to_string()));
        let attributes = request.attributes.as_ref().unwrap();
        assert_eq!(attributes.context_extensions["listener"], "edge");
        assert_eq!(attributes.context_extensions["route"], "checked");
        let metadata = &attributes
            .metadata_context
            .as_ref()
            .unwrap()
            .filter_metadata["causeway"];
        assert!(metadata.fields.contains_key("route"));

        // Denied, failing, hanging (failure mode deny): nothing is dialed.
        for verdict in [
            Verdict::Deny("not you".into()),
            Verdict::Error,
            Verdict::Hang,
        ] {
            authorizer.set(verdict.clone());
            assert!(refused(edge).await, "{verdict:?}");
        }
        assert_eq!(
            main.accepted(),
            1,
            "denied connections never reach the upstream"
        );
        assert_eq!(gw.rejected("edge", "authz_denied"), 3.0);

        // Routed by the answer: to another cluster, or to an allowed address.
        authorizer.set(Verdict::Route(vec![("cluster".into(), string("alt"))]));
        let (_c, name) = Client::greeted(edge).await;
        assert_eq!(name, "alt");
        authorizer.set(Verdict::Route(vec![(
            "address".into(),
            string(&alt.address.to_string()),
        )]));
        let (_c, name) = Client::greeted(edge).await;
        assert_eq!(name, "alt");
        // Not in the allow-list, or a cluster that does not exist: refused.
        for fields in [
            vec![("address".into(), string(&main.address.to_string()))],
            vec![("cluster".into(), string("nowhere"))],
        ] {
            authorizer.set(Verdict::Route(fields));
            assert!(refused(edge).await);
        }
        assert_eq!(main.accepted(), 1);

        let checks = |result| {
            gw.metric(
                "causeway_authz_checks_total",
                &[("authorizer", "iam"), ("result", result)],
            )
        };
        assert_eq!(checks("ok"), 5.0);
        assert_eq!(checks("denied"), 1.0);
        assert_eq!(checks("error"), 1.0);
        assert_eq!(checks("timeout"), 1.0);
        assert_eq!(
            gw.metric(
                "causeway_authz_check_duration_seconds_count",
                &[("authorizer", "iam")]
            ),
            8.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_mode_allow_lets_connections_through_when_the_service_is_down() {
    bounded(async {
        let main = Backend::echo("main").await;
        let alt = Backend::echo("alt").await;
        let authorizer = TestAuthorizer::start(Verdict::Error).await;
        let gw = TestGateway::start(&config(&authorizer, "allow", &main, &alt));
        let (mut client, name) = Client::greeted(gw.address("edge")).await;
        assert_eq!(name, "main");
        client.assert_echo("fail open").await;
        authorizer.set(Verdict::Deny("explicit".into()));
        assert!(
            refused(gw.address("edge")).await,
            "an explicit deny still denies"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_rules_decide_first_and_the_cache_saves_checks() {
    bounded(async {
        let main = Backend::echo("main").await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let gw = TestGateway::start(&format!(
            r#"authorizers:
  - name: iam
    address: "{}"
    cache: {{ ttl: 1m, key: [source_ip, route] }}
listeners:
  - name: denied
    address: 127.0.0.1:0
    routes:
      - authorization:
          rules: [{{ action: deny, source_cidrs: [127.0.0.0/8] }}]
          ext_authz: iam
        cluster: main
  - name: allowed
    address: 127.0.0.1:0
    routes:
      - authorization:
          rules: [{{ action: allow, source_cidrs: [127.0.0.1/32] }}]
          ext_authz: iam
        cluster: main
  - name: rules-only
    address: 127.0.0.1:0
    routes:
      - authorization:
          rules: [{{ action: allow, source_cidrs: [192.0.2.0/24] }}]
          default: deny
        cluster: main
  - name: cached
    address: 127.0.0.1:0
    routes:
      - authorization: {{ ext_authz: iam }}
        cluster: main
clusters:
  - {{ name: main, endpoints: [{{ address: "{}" }}] }}
"#,
            authorizer.address, main.address
        ));
        assert!(refused(gw.address("denied")).await);
        assert!(refused(gw.address("rules-only")).await, "default deny");
        let (_c, name) = Client::greeted(gw.address("allowed")).await;
        assert_eq!(name, "main");
        assert!(authorizer.requests().is_empty(), "rules decided alone");

        for _ in 0..3 {
            let (_c, name) = Client::greeted(gw.address("cached")).await;
            assert_eq!(name, "main");
        }
        assert_eq!(
            authorizer.requests().len(),
            1,
            "one check for three connections"
        );
        assert_eq!(
            gw.metric("causeway_authz_cache_hits_total", &[("authorizer", "iam")]),
            2.0
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthorization_closes_a_live_connection_once_denied() {
    bounded(async {
        let main = Backend::echo("main").await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let log = tempfile::NamedTempFile::new().unwrap();
        let gw = TestGateway::start(&format!(
            r#"access_log: {{ path: "{}" }}
authorizers:
  - {{ name: iam, address: "{}" }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - authorization: {{ ext_authz: iam, reauthorize_every: 100ms }}
        cluster: main
clusters:
  - {{ name: main, endpoints: [{{ address: "{}" }}] }}
"#,
            log.path().display(),
            authorizer.address,
            main.address
        ));
        let (mut client, _) = Client::greeted(gw.address("edge")).await;
        // Re-checks that allow, and one that fails, leave the connection alone.
        authorizer.wait_for_requests(3).await;
        client.assert_echo("still allowed").await;
        authorizer.set(Verdict::Error);
        let n = authorizer.requests().len();
        authorizer.wait_for_requests(n + 1).await;
        client.assert_echo("a failed re-check is not a deny").await;
        authorizer.set(Verdict::Deny("revoked".into()));
        assert!(client.is_closed().await, "closed once denied");
        eventually("logged", || {
            std::fs::read_to_string(log.path())
                .unwrap_or_default()
                .contains("\"reason\":\"reauthorization_denied\"")
        })
        .await;
        let text = std::fs::read_to_string(log.path()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(
            line["authz"], "ext_authz_allow",
            "the access log carries the decision"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_identity_and_sni_reach_the_authorizer() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = testkit::pki::Ca::new("CA");
        let (cert, key) = ca
            .server(&["echo.causeway.test"])
            .write(dir.path(), "server");
        let ca_file = ca.write(dir.path(), "ca");
        let main = Backend::echo("main").await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let gw = TestGateway::start(&format!(
            r#"identities:
  - {{ name: server, cert: "{}", key: "{}" }}
  - {{ name: ca, bundle: "{}" }}
authorizers:
  - {{ name: iam, address: "{}", include_peer_certificate: true }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - terminate: {{ identities: [server], client_certificate: required, trust: ca }}
        authorization:
          rules: [{{ action: deny, spiffe_ids: ["spiffe://causeway.test/banned"] }}]
          ext_authz: iam
        cluster: main
clusters:
  - {{ name: main, endpoints: [{{ address: "{}" }}] }}
"#,
            cert.display(),
            key.display(),
            ca_file.display(),
            authorizer.address,
            main.address
        ));
        let client_cert = ca.spiffe("spiffe://causeway.test/client/a");
        let config = testkit::tls_peer::client_config(&ca.der(), Some(&client_cert), &[]);
        let mut tls = testkit::tls_peer::connect(gw.address("edge"), "echo.causeway.test", config)
            .await
            .unwrap();
        use tokio::io::AsyncReadExt;
        let mut greeting = [0u8; 5];
        tls.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"main\n");
        let request = &authorizer.requests()[0];
        let attributes = request.attributes.as_ref().unwrap();
        let source = attributes.source.as_ref().unwrap();
        assert_eq!(source.principal, "spiffe://causeway.test/client/a");
        assert!(
            source
                .certificate
                .starts_with("-----BEGIN%20CERTIFICATE-----%0A")
        );
        assert_eq!(
            attributes.tls_session.as_ref().unwrap().sni,
            "echo.causeway.test"
        );
        assert_eq!(
            attributes.destination.as_ref().unwrap().service,
            "echo.causeway.test"
        );
        assert_eq!(
            attributes.context_extensions["peer_spiffe_id"],
            "spiffe://causeway.test/client/a"
        );

        // A banned identity is refused by the rule; the authorizer is not asked.
        let banned = ca.spiffe("spiffe://causeway.test/banned");
        let config = testkit::tls_peer::client_config(&ca.der(), Some(&banned), &[]);
        let mut tls = testkit::tls_peer::connect(gw.address("edge"), "echo.causeway.test", config)
            .await
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(matches!(tls.read(&mut byte).await, Ok(0) | Err(_)));
        assert_eq!(authorizer.requests().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authz_example_runs_as_documented() {
    bounded(async {
        let main = Backend::proxy_reporter_at("127.0.0.1:0".parse().unwrap(), "main").await;
        let alt = Backend::proxy_reporter_at("127.0.0.1:0".parse().unwrap(), "alt").await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let yaml = std::fs::read_to_string(root.join("examples/authz.yaml"))
            .unwrap()
            .replace("127.0.0.1:10100", "127.0.0.1:0")
            .replace("127.0.0.1:10190", &authorizer.address.to_string())
            .replace("127.0.0.1:10001", &main.address.to_string())
            .replace("127.0.0.1:10002", &alt.address.to_string())
            .replace("10001-10004", &format!("{0}-{0}", alt.address.port()));
        let gw = TestGateway::start(&yaml);
        let edge = gw.address("edge");

        // curl plays the load balancer, as the example says.
        let curl = |input: &'static str| async move {
            let mut child = tokio::process::Command::new("curl")
                .args(["-sN", "--haproxy-protocol", &format!("telnet://{edge}")])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("curl is installed (scripts/test installs it)");
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.as_bytes()).await.unwrap();
            let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
            let first = lines.next_line().await.unwrap();
            let second = lines.next_line().await.unwrap();
            (first, second)
        };
        let (greeting, echo) = curl("typed\n").await;
        let greeting = greeting.expect("greeted");
        assert!(greeting.starts_with("main: 127.0.0.1:"), "{greeting}");
        assert!(greeting.ends_with(&format!(" {edge} -")), "{greeting}");
        assert_eq!(echo.as_deref(), Some("typed"));

        authorizer.set(Verdict::Route(vec![("cluster".into(), string("alt"))]));
        let (greeting, _) = curl("x\n").await;
        assert!(greeting.unwrap().starts_with("alt: "));
        authorizer.set(Verdict::Route(vec![(
            "address".into(),
            string(&alt.address.to_string()),
        )]));
        let (greeting, _) = curl("x\n").await;
        assert!(greeting.unwrap().starts_with("alt: "));

        authorizer.set(Verdict::Deny("no".into()));
        let (greeting, _) = curl("x\n").await;
        assert_eq!(greeting, None, "denied: closed at once");
        assert_eq!(main.accepted() + alt.accepted(), 3);
        // Without a PROXY header (not through the balancer): refused.
        let mut direct = Client::connect(edge).await;
        use tokio::io::AsyncWriteExt;
        direct.stream.get_mut().write_all(b"hello\n").await.unwrap();
        assert!(direct.is_closed().await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlvs_from_the_answer_reach_the_upstream_in_its_proxy_header() {
    bounded(async {
        let backend = Backend::proxy_reporter().await;
        let authorizer = TestAuthorizer::start(Verdict::Route(vec![(
            "tlvs".into(),
            authz::metadata::structure([
                ("0xE5".to_string(), string("tenant-42")),
                ("230".to_string(), string("gold")),
            ]),
        )]))
        .await;
        let gw = TestGateway::start(&format!(
            r#"authorizers:
  - {{ name: iam, address: "{}" }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - authorization: {{ ext_authz: iam }}
        cluster: backend
clusters:
  - name: backend
    endpoints: [{{ address: "{}" }}]
    proxy_protocol: {{ version: 2 }}
"#,
            authorizer.address, backend.address
        ));
        let mut client = Client::connect(gw.address("edge")).await;
        let line = client.line().await.unwrap();
        let tlvs = line.rsplit(' ').next().unwrap();
        let mut tlvs: Vec<&str> = tlvs.split(',').collect();
        tlvs.sort();
        assert_eq!(tlvs, ["0xe5=tenant-42", "0xe6=gold"], "{line}");
    })
    .await;
}

/// A reload that changes an authorizer replaces it; its counts go on from where they were
/// (counts restarting at 0 would publish nothing until they passed the old totals: the
/// soak found `causeway_authz_checks_total` standing still for minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorizer_a_reload_changes_counts_on() {
    bounded(async {
        let main = Backend::echo("main").await;
        let alt = Backend::echo("alt").await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let yaml = config(&authorizer, "deny", &main, &alt);
        let gw = TestGateway::start(&yaml);
        let ok = || {
            let labels = [("authorizer", "iam"), ("result", "ok")];
            gw.metric("causeway_authz_checks_total", &labels)
        };
        for _ in 0..3 {
            assert_eq!(Client::greeted(gw.address("edge")).await.1, "main");
        }
        assert_eq!(ok(), 3.0);
        gw.reload(&yaml.replace("timeout: 300ms", "timeout: 400ms"));
        assert_eq!(Client::greeted(gw.address("edge")).await.1, "main");
        assert_eq!(ok(), 4.0, "counted on by the authorizer the reload made");
    })
    .await;
}
