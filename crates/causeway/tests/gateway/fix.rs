//! FIX sessions through a `protocol: fix` listener: routing on the Logon, refusals answered
//! with a Logout, bad first messages cut, failover between acceptors, a long session relayed
//! byte-exact. The venues are the fixsim engine (the test kit's FIX acceptor).

use std::time::Duration;
use testkit::fix::{Session, acceptor};
use testkit::{TestGateway, bounded, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// examples/fix.yaml with the venues at the given addresses, listening on port 0.
pub(crate) fn gateway(venue1: &str, standby: &str, venue2: &str, extra: &str) -> TestGateway {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let yaml = std::fs::read_to_string(root.join("examples/fix.yaml"))
        .unwrap()
        .replace("127.0.0.1:10300", "127.0.0.1:0")
        .replace("127.0.0.1:10301", venue1)
        .replace("127.0.0.1:10302", standby)
        .replace("127.0.0.1:10303", venue2)
        .replace("admin:\n  address: 127.0.0.1:9905\n", extra)
        .replace(
            "interval: 1s, timeout: 500ms",
            "interval: 50ms, timeout: 200ms",
        );
    TestGateway::start(&yaml)
}

/// Logs on as `sender` to `target`; the first answer.
pub(crate) async fn log_on(
    gw: &TestGateway,
    sender: &str,
    target: &str,
) -> (Session<TcpStream>, fixsim::Received) {
    let mut session = Session::initiate(gw.address("fix"), sender, target, &[(554, "hunter2")])
        .await
        .unwrap();
    let answer = session
        .receive()
        .await
        .expect("a valid FIX message: BodyLength, CheckSum, CompIDs and MsgSeqNum checked")
        .expect("an answer before the close");
    (session, answer)
}

/// A Logout with `text`, then the end of the connection.
async fn assert_logged_out(gw: &TestGateway, sender: &str, target: &str, text: &str) {
    let (mut session, answer) = log_on(gw, sender, target).await;
    assert_eq!(answer.msg_type(), "5", "{sender} → {target}");
    assert_eq!(answer.get(58), Some(text));
    assert_eq!(
        session.receive().await.unwrap(),
        None,
        "closed after the Logout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logons_are_routed_by_target_and_refused_with_a_logout() {
    bounded(async {
        let (venue1, v1) = acceptor("VENUE1").await;
        let (standby, vs) = acceptor("VENUE1").await;
        let (venue2, v2) = acceptor("VENUE2").await;
        let log = tempfile::NamedTempFile::new().unwrap();
        let gw = gateway(
            &venue1.address.to_string(),
            &standby.address.to_string(),
            &venue2.address.to_string(),
            &format!("access_log: {{ path: \"{}\" }}\n", log.path().display()),
        );
        let (mut s1, answer) = log_on(&gw, "CLIENT1", "VENUE1").await;
        assert_eq!(answer.msg_type(), "A");
        let (mut s2, answer) = log_on(&gw, "CLIENT2", "VENUE2").await;
        assert_eq!(answer.msg_type(), "A");
        assert_eq!((v1.logons(), vs.logons(), v2.logons()), (1, 0, 1));
        for s in [&mut s1, &mut s2] {
            s.send("1", &[(112, "ping")]).await.unwrap();
            assert_eq!(s.receive().await.unwrap().unwrap().get(112), Some("ping"));
        }
        // Refusals, told apart, nothing dialed.
        assert_logged_out(&gw, "CLIENT3", "VENUE1", "not authorized").await;
        assert_logged_out(&gw, "CLIENT1", "VENUE9", "no route for this session").await;
        assert_eq!(
            v1.logons() + vs.logons() + v2.logons(),
            2,
            "nothing dialed for the refused"
        );
        assert_eq!(gw.rejected("fix", "authz_denied"), 1.0);
        assert_eq!(gw.rejected("fix", "no_route"), 1.0);
        // The access log has the CompIDs and never the password.
        drop((s1, s2));
        eventually("logged", || {
            std::fs::read_to_string(log.path())
                .unwrap_or_default()
                .lines()
                .count()
                >= 4
        })
        .await;
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            text.contains("\"fix_sender_comp_id\":\"CLIENT3\""),
            "{text}"
        );
        assert!(text.contains("\"fix_target_comp_id\":\"VENUE2\""), "{text}");
        assert!(!text.contains("hunter2"), "the password is never logged");
        // Sessions by route, not by CompID (comp_id_metrics is off).
        let metrics = gw.metrics_text();
        for route in ["venue1", "venue2"] {
            let line =
                format!("causeway_fix_sessions_total{{listener=\"fix\",route=\"{route}\"}} 1");
            assert!(metrics.contains(&line), "{line} in\n{metrics}");
        }
        assert!(!metrics.contains("CLIENT1") && !metrics.contains("hunter2"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_unavailable_is_a_logout_too() {
    bounded(async {
        let dead = testkit::closed_port().to_string();
        let gw = gateway(&dead, &dead, &dead, "");
        assert_logged_out(&gw, "CLIENT1", "VENUE2", "upstream unavailable").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logon_in_many_pieces_and_bad_first_messages() {
    bounded(async {
        let (venue1, v1) = acceptor("VENUE1").await;
        let a = venue1.address.to_string();
        let gw = gateway(&a, &a, &a, "");
        // Byte by byte.
        let stream = TcpStream::connect(gw.address("fix")).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut session = Session::new(stream, "FIX.4.4", "CLIENT1", "VENUE1");
        let logon = protocols::fix::encode(
            "FIX.4.4",
            &[
                (35, "A"),
                (49, "CLIENT1"),
                (56, "VENUE1"),
                (34, "1"),
                (52, "20261128-12:00:00.000"),
                (98, "0"),
                (108, "30"),
            ],
        );
        for byte in &logon {
            session.send_raw(std::slice::from_ref(byte)).await.unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(session.receive().await.unwrap().unwrap().msg_type(), "A");

        // Not FIX, a wrong checksum, a message larger than max_logon_size: cut, counted.
        let mut wrong_sum = logon.clone();
        let n = wrong_sum.len();
        wrong_sum[n - 2] = if wrong_sum[n - 2] == b'9' { b'8' } else { b'9' };
        let long = "X".repeat(5000);
        let oversized = protocols::fix::encode(
            "FIX.4.4",
            &[(35, "A"), (49, "CLIENT1"), (56, "VENUE1"), (58, &long)],
        );
        for bad in [b"GET / HTTP/1.1\r\n\r\n".to_vec(), wrong_sum, oversized] {
            let mut stream = TcpStream::connect(gw.address("fix")).await.unwrap();
            let _ = stream.write_all(&bad).await;
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
                .await
                .expect("closed");
            assert!(rest.is_empty(), "nothing comes back");
        }
        assert_eq!(gw.rejected("fix", "inspection_failed"), 3.0);
        assert_eq!(v1.logons(), 1);
    })
    .await;
}

/// `49=CLIENT1 … 49=MALLORY`: the gateway would authorize CLIENT1 while a venue keeping the
/// last value logs MALLORY on. A Logon repeating a session field is cut; the venue sees
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logon_naming_two_senders_is_cut() {
    bounded(async {
        let (venue1, v1) = acceptor("VENUE1").await;
        let a = venue1.address.to_string();
        let gw = gateway(&a, &a, &a, "");
        let fields = [
            (35, "A"),
            (49, "CLIENT1"),
            (56, "VENUE1"),
            (34, "1"),
            (52, "20261128-12:00:00.000"),
            (49, "MALLORY"),
            (98, "0"),
            (108, "30"),
        ];
        let mut stream = TcpStream::connect(gw.address("fix")).await.unwrap();
        stream
            .write_all(&protocols::fix::encode("FIX.4.4", &fields))
            .await
            .unwrap();
        let mut rest = Vec::new();
        // Closed (reset: the gateway did not read it all), with nothing sent back.
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
            .await
            .expect("closed");
        assert!(rest.is_empty(), "nothing comes back");
        assert_eq!(gw.rejected("fix", "inspection_failed"), 1.0);
        assert_eq!(v1.logons(), 0, "the venue saw no Logon");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_fail_over_to_the_standby_acceptor_and_back() {
    bounded(async {
        let (mut active, va) = acceptor("VENUE1").await;
        let (standby, vs) = acceptor("VENUE1").await;
        let (venue2, _) = acceptor("VENUE2").await;
        let gw = gateway(
            &active.address.to_string(),
            &standby.address.to_string(),
            &venue2.address.to_string(),
            "",
        );
        let (_live, answer) = log_on(&gw, "CLIENT1", "VENUE1").await;
        assert_eq!(answer.msg_type(), "A");
        assert_eq!((va.logons(), vs.logons()), (1, 0));
        active.stop().await;
        let (_second, answer) = log_on(&gw, "CLIENT2", "VENUE1").await;
        assert_eq!(answer.msg_type(), "A");
        assert_eq!(
            vs.logons(),
            1,
            "the standby takes sessions while the active is down"
        );
        active.resume().await;
        eventually("the active is healthy again", || {
            gw.endpoint_metric("causeway_endpoint_healthy", "venue1", active.address) == 1.0
        })
        .await;
        let (_third, answer) = log_on(&gw, "CLIENT1", "VENUE1").await;
        assert_eq!(answer.msg_type(), "A");
        assert_eq!((va.logons(), vs.logons()), (2, 1), "back on the active");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_session_is_relayed_byte_exact() {
    bounded(async {
        let (venue, seen) = acceptor("VENUE2").await;
        let a = venue.address.to_string();
        let gw = gateway(&a, &a, &a, "");
        let (mut session, answer) = log_on(&gw, "CLIENT2", "VENUE2").await;
        assert_eq!(answer.msg_type(), "A");
        for i in 0..2000 {
            let id = format!("order-{i}-{}", "x".repeat(i % 200));
            match i % 3 {
                0 => session.send("1", &[(112, &id)]).await.unwrap(),
                1 => session.send("0", &[]).await.unwrap(),
                _ => session
                    .send("D", &[(11, &id), (55, "IBM"), (54, "1"), (38, "100")])
                    .await
                    .unwrap(),
            }
            if i % 3 != 1 {
                let answer = session.receive().await.unwrap().unwrap();
                let expected = if i % 3 == 0 { 112 } else { 11 };
                assert_eq!(answer.get(expected), Some(id.as_str()));
            }
        }
        session.send("5", &[]).await.unwrap();
        assert_eq!(session.receive().await.unwrap().unwrap().msg_type(), "5");
        assert_eq!(session.receive().await.unwrap(), None);
        eventually("the venue's session ended", || {
            !seen.transcripts.lock().unwrap().is_empty()
        })
        .await;
        let venue_side = seen.transcripts.lock().unwrap()[0].clone();
        assert_eq!(
            venue_side.received, session.transcript.sent,
            "client → venue, byte-exact"
        );
        assert_eq!(
            venue_side.sent, session.transcript.received,
            "venue → client, byte-exact"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logon_inside_tls_is_read_after_the_handshake_and_sent_on_first() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = testkit::pki::Ca::new("FIX CA");
        let (cert, key) = ca.server(&["fix.causeway.test"]).write(dir.path(), "fix");
        let (venue1, v1) = acceptor("VENUE1").await;
        let (venue2, v2) = acceptor("VENUE2").await;
        let gw = TestGateway::start(&format!(
            r#"identities:
  - {{ name: fix, cert: "{}", key: "{}" }}
listeners:
  - name: fix
    address: 127.0.0.1:0
    protocol: fix
    inspect: {{ tls: true }}
    routes:
      - match: {{ fix: {{ target_comp_id: [VENUE1] }} }}
        terminate: {{ identities: [fix] }}
        cluster: venue1
      - match: {{ fix: {{ target_comp_id: [VENUE2] }} }}
        terminate: {{ identities: [fix] }}
        cluster: venue2
clusters:
  - {{ name: venue1, endpoints: [{{ address: "{}" }}] }}
  - {{ name: venue2, endpoints: [{{ address: "{}" }}] }}
"#,
            cert.display(),
            key.display(),
            venue1.address,
            venue2.address
        ));
        let config = testkit::tls_peer::client_config(&ca.der(), None, &[]);
        for (target, expected) in [("VENUE2", (0, 1)), ("VENUE1", (1, 1))] {
            let tls =
                testkit::tls_peer::connect(gw.address("fix"), "fix.causeway.test", config.clone())
                    .await
                    .unwrap();
            let mut session = Session::new(tls, "FIX.4.4", "CLIENT1", target);
            session.send("A", &[(98, "0"), (108, "30")]).await.unwrap();
            assert_eq!(session.receive().await.unwrap().unwrap().msg_type(), "A");
            session.send("1", &[(112, "inside TLS")]).await.unwrap();
            let answer = session.receive().await.unwrap().unwrap();
            assert_eq!(answer.get(112), Some("inside TLS"));
            assert_eq!((v1.logons(), v2.logons()), expected, "{target}");
        }
        // Inside TLS too, a refusal is a Logout.
        let tls = testkit::tls_peer::connect(gw.address("fix"), "fix.causeway.test", config)
            .await
            .unwrap();
        let mut session = Session::new(tls, "FIX.4.4", "CLIENT1", "VENUE9");
        session.send("A", &[(98, "0")]).await.unwrap();
        let answer = session.receive().await.unwrap().unwrap();
        assert_eq!(
            (answer.msg_type(), answer.get(58)),
            ("5", Some("no route for this session"))
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_health_check_logs_on_so_a_hung_acceptor_is_unhealthy() {
    bounded(async {
        // Accepts connections, never answers: a hung engine a TCP check calls healthy.
        let hung = testkit::Backend::start(|mut stream| async move {
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        })
        .await;
        let (standby, venue) = acceptor("VENUE1").await;
        let gw = TestGateway::start(&format!(
            r#"listeners:
  - {{ name: fix, address: 127.0.0.1:0, protocol: fix, routes: [{{ cluster: venue1 }}] }}
clusters:
  - name: venue1
    health_check:
      interval: 50ms
      timeout: 200ms
      healthy_threshold: 1
      unhealthy_threshold: 1
      fix: {{ sender_comp_id: HEALTHCHECK, target_comp_id: VENUE1 }}
    endpoints:
      - {{ address: "{}", priority: 0 }}
      - {{ address: "{}", priority: 1 }}
"#,
            hung.address, standby.address
        ));
        // Endpoints start healthy and nothing connects (no passive ejection yet): out of
        // service means a failed check turned it unhealthy.
        eventually("the hung acceptor is found out", || {
            gw.endpoint_metric("causeway_endpoint_healthy", "venue1", hung.address) == 0.0
                && gw.endpoint_metric(
                    "causeway_endpoint_health_transitions_total",
                    "venue1",
                    hung.address,
                ) >= 1.0
        })
        .await;
        eventually("the standby answers the check's Logon", || {
            gw.health_checks("venue1", standby.address, "passed") > 0.0 && venue.logons() > 0
        })
        .await;
        let (_session, answer) = log_on(&gw, "CLIENT1", "VENUE1").await;
        assert_eq!(answer.msg_type(), "A", "sent to the standby, which answers");
        // The check logged out after each Logon: the venue saw whole sessions.
        eventually("the check's sessions ended with a Logout", || {
            venue
                .transcripts
                .lock()
                .unwrap()
                .iter()
                .any(|t| t.received.windows(5).any(|w| w == b"\x0135=5"))
        })
        .await;
    })
    .await;
}

/// A refused FIX client keeps its place in the listener's count while it is told why: with
/// `connection_limit: 1`, a second client during the first one's Logout is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_holds_its_place_through_the_logout() {
    bounded(async {
        let (venue1, _v1) = acceptor("VENUE1").await;
        let gw = TestGateway::start(&format!(
            "listeners:\n  - name: fix\n    address: 127.0.0.1:0\n    protocol: fix\n    connection_limit: 1\n    routes: [{{ match: {{ fix: {{ target_comp_id: [VENUE1] }} }}, cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            venue1.address
        ));
        // Logs on to a venue with no route, reads the Logout, does not close.
        let (mut first, answer) = log_on(&gw, "CLIENT1", "NOWHERE").await;
        assert_eq!(answer.msg_type(), "5");
        let mut second = TcpStream::connect(gw.address("fix")).await.unwrap();
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), second.read_to_end(&mut rest))
            .await
            .expect("the second client is closed");
        assert_eq!(gw.rejected("fix", "connection_limit"), 1.0);
        assert_eq!(first.receive().await.unwrap(), None, "closed after the Logout");
    })
    .await;
}
