//! The ext_authz decision cache never answers one identity with another's decision: FIX
//! CompIDs and DNS-SAN certificates are part of every key, a check carrying a password is
//! never cached, an empty key is a config error, and a reload forgets every decision.

use testkit::authorizer::{TestAuthorizer, Verdict};
use testkit::fix::{Session, acceptor};
use testkit::pki::{Ca, LeafSpec};
use testkit::{Backend, TestGateway, bounded};
use tokio::io::AsyncReadExt;

/// A FIX listener whose one route asks `iam`, its decisions cached on the route alone.
fn fix_gateway(authorizer: &TestAuthorizer, venue: &Backend, extra: &str) -> String {
    format!(
        r#"authorizers:
  - name: iam
    address: "{}"
    cache: {{ ttl: 1m, key: [route] }}{extra}
listeners:
  - name: fix
    address: 127.0.0.1:0
    protocol: fix
    routes:
      - name: venue1
        authorization: {{ ext_authz: iam }}
        cluster: venue1
clusters:
  - {{ name: venue1, endpoints: [{{ address: "{}" }}] }}
"#,
        authorizer.address, venue.address
    )
}

/// Logs on as `sender` with `password`; whether the venue answered with a Logon.
async fn logged_on(gw: &TestGateway, sender: &str, password: &str) -> bool {
    let extra = [(553, sender), (554, password)];
    let mut session = Session::initiate(gw.address("fix"), sender, "VENUE1", &extra)
        .await
        .unwrap();
    matches!(session.receive().await, Ok(Some(answer)) if answer.msg_type() == "A")
}

fn cache_hits(gw: &TestGateway) -> f64 {
    gw.metric("causeway_authz_cache_hits_total", &[("authorizer", "iam")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_clients_with_different_comp_ids_are_checked_apart() {
    bounded(async {
        let (venue, _) = acceptor("VENUE1").await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let gw = TestGateway::start(&fix_gateway(&authorizer, &venue, ""));
        assert!(logged_on(&gw, "CLIENT1", "one").await);
        authorizer.set(Verdict::Deny("not CLIENT2".into()));
        assert!(
            !logged_on(&gw, "CLIENT2", "two").await,
            "CLIENT1's allow does not let CLIENT2 in"
        );
        assert_eq!(authorizer.requests().len(), 2, "one check per CompID");
        assert!(
            logged_on(&gw, "CLIENT1", "one").await,
            "CLIENT1 from the cache"
        );
        assert_eq!(authorizer.requests().len(), 2);
        assert_eq!(cache_hits(&gw), 1.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_carrying_the_fix_password_is_never_cached() {
    bounded(async {
        let (venue, _) = acceptor("VENUE1").await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let yaml = fix_gateway(&authorizer, &venue, "\n    include_fix_password: true");
        let gw = TestGateway::start(&yaml);
        assert!(logged_on(&gw, "CLIENT1", "right").await);
        // The authorizer checks the password: a wrong one is never let in on the right
        // one's cached allow.
        authorizer.set(Verdict::Deny("wrong password".into()));
        assert!(!logged_on(&gw, "CLIENT1", "wrong").await);
        assert!(!logged_on(&gw, "CLIENT1", "right").await, "asked again");
        assert_eq!(authorizer.requests().len(), 3);
        assert_eq!(cache_hits(&gw), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_dns_name_certificates_are_checked_apart() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("CA");
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
  - {{ name: iam, address: "{}", cache: {{ ttl: 1m, key: [spiffe_id, route] }} }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - terminate: {{ identities: [server], client_certificate: required, trust: ca }}
        authorization: {{ ext_authz: iam }}
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
        let greeted = |name: &'static str| {
            let leaf = ca.issue(&LeafSpec {
                common_name: name,
                dns_names: &[name],
                ..Default::default()
            });
            let config = testkit::tls_peer::client_config(&ca.der(), Some(&leaf), &[]);
            let edge = gw.address("edge");
            async move {
                let Ok(mut tls) =
                    testkit::tls_peer::connect(edge, "echo.causeway.test", config).await
                else {
                    return false;
                };
                let mut greeting = [0u8; 5];
                tls.read_exact(&mut greeting).await.is_ok() && &greeting == b"main\n"
            }
        };
        assert!(greeted("alice.causeway.test").await);
        authorizer.set(Verdict::Deny("not mallory".into()));
        assert!(
            !greeted("mallory.causeway.test").await,
            "alice's allow is not mallory's"
        );
        assert_eq!(authorizer.requests().len(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_forgets_every_decision() {
    bounded(async {
        let (venue, _) = acceptor("VENUE1").await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let yaml = fix_gateway(&authorizer, &venue, "");
        let gw = TestGateway::start(&yaml);
        assert!(logged_on(&gw, "CLIENT1", "one").await);
        assert!(logged_on(&gw, "CLIENT1", "one").await);
        assert_eq!(authorizer.requests().len(), 1, "the second from the cache");
        authorizer.set(Verdict::Deny("revoked".into()));
        gw.reload(&yaml);
        assert!(
            !logged_on(&gw, "CLIENT1", "one").await,
            "re-checked after the reload"
        );
        assert_eq!(authorizer.requests().len(), 2);
    })
    .await;
}

#[test]
fn an_empty_cache_key_is_a_config_error() {
    let yaml = r#"authorizers:
  - name: iam
    address: 127.0.0.1:9001
    cache: { ttl: 1m, key: [] }
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
        e.starts_with("bad.yaml:4:28:") && e.contains("cache key is empty"),
        "{e}"
    );
}

/// Rules alone must say what happens to a connection no rule matched: never "allow" by
/// omission.
#[test]
fn rules_without_a_default_are_a_config_error() {
    let yaml = r#"listeners:
  - name: l
    address: 127.0.0.1:10000
    routes:
      - authorization:
          rules: [{ action: deny, source_cidrs: [192.0.2.0/24] }]
        cluster: c
clusters:
  - { name: c, endpoints: [{ address: 127.0.0.1:10001 }] }
"#;
    let e = config::parse(yaml, "bad.yaml").unwrap_err().to_string();
    assert!(
        e.starts_with("bad.yaml:6:11:") && e.contains("needs `default: deny`"),
        "{e}"
    );
    let fixed = yaml.replace(
        "        cluster: c",
        "          default: deny\n        cluster: c",
    );
    config::parse(&fixed, "good.yaml").unwrap();
}

/// With `include_fix_password` the authorizer is the password checker: when it cannot be
/// reached, `failure_mode: allow` does not let a FIX client in unchecked (as for SSH).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_password_checker_lets_no_fix_client_in() {
    bounded(async {
        let (venue, v) = acceptor("VENUE1").await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let extra = "\n    include_fix_password: true\n    failure_mode: allow";
        let dead = testkit::closed_port().to_string();
        let yaml =
            fix_gateway(&authorizer, &venue, extra).replace(&authorizer.address.to_string(), &dead);
        let gw = TestGateway::start(&yaml);
        assert!(
            !logged_on(&gw, "CLIENT1", "any").await,
            "refused with a Logout"
        );
        assert_eq!(v.logons(), 0, "the venue saw no Logon");
    })
    .await;
}
