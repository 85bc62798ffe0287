//! Faults that need a network of their own: each test runs again in a child process inside
//! a fresh network namespace (`testkit::isolated`), where nftables rules black-hole a port
//! or cut a peer off, and the resolver at 127.0.0.1:53 is the test's. The machine's own
//! firewall and resolver are never touched. docs/robustness.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;
use testkit::authorizer::{TestAuthorizer, Verdict};
use testkit::isolated::{in_netns, nft};
use testkit::{Backend, Client, TestGateway, bounded};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;

/// A port where a socket listens but every SYN sent to it is dropped: a black hole, as a
/// firewall between the gateway and an upstream makes one. The socket keeps the port.
fn black_hole() -> (SocketAddr, std::net::TcpListener) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    nft(&format!(
        "table inet blackhole {{\n chain out {{\n type filter hook output priority 0;\n tcp dport {} tcp flags syn drop\n }}\n}}\n",
        address.port()
    ));
    (address, listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_upstream_fails_at_the_connect_timeout_and_the_next_endpoint_serves() {
    if !in_netns(
        "faults_network::a_black_holed_upstream_fails_at_the_connect_timeout_and_the_next_endpoint_serves",
    ) {
        return;
    }
    bounded(async {
        let (hole, _kept) = black_hole();
        let alive = Backend::echo("alive").await;
        let yaml = format!(
            "listeners:\n  - {{ name: only, address: 127.0.0.1:0, routes: [{{ cluster: hole }}] }}\n  - {{ name: both, address: 127.0.0.1:0, routes: [{{ cluster: standby }}] }}\nclusters:\n  - {{ name: hole, connect_timeout: 300ms, endpoints: [{{ address: \"{hole}\" }}] }}\n  - name: standby\n    connect_timeout: 300ms\n    endpoints: [{{ address: \"{hole}\", priority: 0 }}, {{ address: \"{}\", priority: 1 }}]\n",
            alive.address
        );
        let gw = TestGateway::start(&yaml);

        let started = tokio::time::Instant::now();
        let mut client = Client::connect(gw.address("only")).await;
        assert!(client.is_closed().await, "nothing to relay to");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
            "closed at the connect timeout, not before nor long after: {waited:?}"
        );
        let failures = gw.endpoint_metric("causeway_endpoint_connect_failures_total", "hole", hole);
        assert_eq!(failures, 1.0);

        let (mut client, name) = Client::greeted(gw.address("both")).await;
        assert_eq!(name, "alive", "the next endpoint, after the timeout");
        client.assert_echo("through the standby").await;
    })
    .await
}

/// The client's host vanishes without a FIN or a reset (power loss, a firewall that forgot
/// the flow): the gateway's TCP keepalive finds out, and the upstream's connection is closed
/// instead of held for the idle timeout (an hour by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_is_found_out_by_keepalive_and_its_upstream_closed() {
    if !in_netns(
        "faults_network::a_client_that_vanishes_is_found_out_by_keepalive_and_its_upstream_closed",
    ) {
        return;
    }
    bounded(async {
        let (ended, upstream_ended) = oneshot::channel();
        let ended = std::sync::Mutex::new(Some(ended));
        let upstream = Backend::start(move |mut stream| {
            let ended = ended.lock().unwrap().take();
            async move {
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
                let _ = ended.unwrap().send(tokio::time::Instant::now());
            }
        })
        .await;
        let yaml = format!(
            "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    tcp_keepalive: {{ enabled: true, time: 1s, interval: 1s, retries: 2 }}\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            upstream.address
        );
        let gw = TestGateway::start(&yaml);
        let client = tokio::net::TcpStream::connect(gw.address("l")).await.unwrap();
        let port = client.local_addr().unwrap().port();
        testkit::eventually("the upstream is connected", || {
            gw.metric("causeway_listener_connections_active", &[("listener", "l")]) == 1.0
        })
        .await;

        // From now on nothing reaches the client's port, nor leaves it.
        nft(&format!(
            "table inet vanished {{\n chain out {{\n type filter hook output priority 0;\n tcp dport {port} drop\n tcp sport {port} drop\n }}\n}}\n"
        ));
        let cut = tokio::time::Instant::now();
        let closed_at = upstream_ended.await.unwrap();
        let after = closed_at - cut;
        // Idle 1 s, then 2 unanswered probes 1 s apart.
        assert!(
            after >= Duration::from_secs(2) && after < Duration::from_secs(10),
            "the upstream closed {after:?} after the client vanished"
        );
        testkit::eventually("the connection is over", || {
            gw.metric("causeway_listener_connections_active", &[("listener", "l")]) == 0.0
        })
        .await;
        drop(client);
    })
    .await
}

/// `n` clients at once; how many were closed without a byte.
async fn many_refused(address: SocketAddr, n: usize) -> usize {
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..n {
        clients.spawn(async move { Client::connect(address).await.is_closed().await });
    }
    clients
        .join_all()
        .await
        .into_iter()
        .filter(|closed| *closed)
        .count()
}

/// This process's threads now.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Threads:")).unwrap();
    line[8..].trim().parse().unwrap()
}

/// The resolver at 127.0.0.1:53: answers A queries for `causeway.test` names as told; every
/// other query NXDOMAIN.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Resolver {
    NoSuchName,
    Silent,
    Answers([u8; 4]),
}

async fn resolver(mode: tokio::sync::watch::Receiver<Resolver>, queries: Arc<AtomicUsize>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:53").await.unwrap();
    let mut buf = [0u8; 512];
    loop {
        let (n, from) = socket.recv_from(&mut buf).await.unwrap();
        queries.fetch_add(1, Relaxed);
        let answer = match *mode.borrow() {
            Resolver::Silent => continue,
            Resolver::NoSuchName => dns_answer(&buf[..n], None),
            Resolver::Answers(ip) => dns_answer(&buf[..n], Some(ip)),
        };
        if let Some(answer) = answer {
            socket.send_to(&answer, from).await.unwrap();
        }
    }
}

/// The response to `query` (one question): NXDOMAIN without `ip`; else, to an A question,
/// that address, and to any other type, no records.
fn dns_answer(query: &[u8], ip: Option<[u8; 4]>) -> Option<Vec<u8>> {
    let question_end = 12 + query.get(12..)?.iter().position(|b| *b == 0)? + 1 + 4;
    let qtype = u16::from_be_bytes([*query.get(question_end - 4)?, query[question_end - 3]]);
    let mut answer = query.get(..question_end)?.to_vec();
    let records = u16::from(ip.is_some() && qtype == 1);
    answer[2] = 0x81; // a response, recursion desired
    answer[3] = if ip.is_some() { 0x80 } else { 0x83 }; // recursion available; NXDOMAIN
    answer[6..12].copy_from_slice(&[0, records as u8, 0, 0, 0, 0]);
    if let (Some(ip), 1) = (ip, records) {
        // The question's name (pointer), A, IN, TTL 0, 4 bytes.
        answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        answer.extend_from_slice(&ip);
    }
    Some(answer)
}

/// An upstream named by a host name whose lookup fails: a name that does not exist, then a
/// resolver that does not answer. Each connection is refused at once or at the connect
/// timeout (never held longer); the gateway serves again once the name resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_name_that_does_not_resolve_refuses_its_connections_until_it_does() {
    if !in_netns(
        "faults_network::an_upstream_name_that_does_not_resolve_refuses_its_connections_until_it_does",
    ) {
        return;
    }
    bounded(async {
        let (set, mode) = tokio::sync::watch::channel(Resolver::NoSuchName);
        tokio::spawn(resolver(mode, Arc::default()));
        let backend = Backend::echo("named").await;
        let name = format!("venue.causeway.test:{}", backend.address.port());
        // `l` waits for a lookup longer than the resolver takes to give up (1 s); `burst`
        // gives up sooner, as a busy gateway's clients would.
        let yaml = format!(
            "listeners:\n  - {{ name: l, address: 127.0.0.1:0, routes: [{{ cluster: c }}] }}\n  - {{ name: burst, address: 127.0.0.1:0, routes: [{{ cluster: b }}] }}\nclusters:\n  - {{ name: c, connect_timeout: 3s, endpoints: [{{ address: \"{name}\" }}] }}\n  - {{ name: b, connect_timeout: 500ms, endpoints: [{{ address: \"{name}\" }}] }}\n"
        );
        let gw = TestGateway::start(&yaml);

        for (mode, longest) in [
            (Resolver::NoSuchName, Duration::from_secs(1)),
            (Resolver::Silent, Duration::from_millis(2500)),
        ] {
            set.send_replace(mode);
            let started = tokio::time::Instant::now();
            let mut client = Client::connect(gw.address("l")).await;
            assert!(client.is_closed().await, "{mode:?}: refused");
            let waited = started.elapsed();
            assert!(waited < longest, "{mode:?}: refused after {waited:?}");
        }
        let failures = gw.metric_sum("causeway_endpoint_connect_failures_total", &[("cluster", "c")]);
        assert_eq!(failures, 2.0, "both counted against the endpoint");

        // A burst while the resolver is silent: each lookup holds a thread until the
        // resolver gives up (1 s here, 5 s and more by default), 256 at most for endpoints;
        // the clients beyond wait for a place until their connect timeout.
        let threads_before = threads();
        let burst = many_refused(gw.address("burst"), 300).await;
        assert_eq!(burst, 300, "every one refused");
        let added = threads().saturating_sub(threads_before);
        assert!(added <= 256 + 16, "{added} threads more for 300 silent lookups");
        let endpoint = |result| [("purpose", "endpoint"), ("result", result)];
        let no_place = gw.metric("causeway_dns_lookups_total", &endpoint("no_place"));
        assert!(no_place > 0.0, "clients gave up waiting for a place");
        testkit::eventually("the silent lookups give up", || {
            gw.metric("causeway_dns_lookups_running", &[("purpose", "endpoint")]) == 0.0
        })
        .await;
        let failed = gw.metric("causeway_dns_lookups_total", &endpoint("failed"));
        assert!(failed >= 256.0, "each lookup counted when it ended: {failed}");

        set.send_replace(Resolver::Answers([127, 0, 0, 1]));
        let (mut client, greeting) = Client::greeted(gw.address("l")).await;
        assert_eq!(greeting, "named", "resolved at the next connection");
        client.assert_echo("the name resolves again").await;
    })
    .await
}

/// A tunnel's destination name is looked up only once the tunnel is authorized: a client
/// the authorizer refuses has the gateway send the resolver nothing (each lookup may hold a
/// thread for the resolver's timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_the_authorizer_refuses_has_its_name_looked_up_nowhere() {
    if !in_netns("faults_network::a_tunnel_the_authorizer_refuses_has_its_name_looked_up_nowhere") {
        return;
    }
    bounded(async {
        let (_set, mode) = tokio::sync::watch::channel(Resolver::Answers([127, 0, 0, 1]));
        let queries = Arc::new(AtomicUsize::new(0));
        tokio::spawn(resolver(mode, queries.clone()));
        let inside = Backend::echo("inside").await;
        let port = inside.address.port();
        let authorizer = TestAuthorizer::start(Verdict::Deny("not you".into())).await;
        let gw = TestGateway::start(&format!(
            r#"authorizers:
  - {{ name: iam, address: "{}", timeout: 1s }}
listeners:
  - name: connect
    address: 127.0.0.1:0
    routes:
      - connect: {{ allowed_names: [venue.causeway.test], allowed_cidrs: [127.0.0.0/8], allowed_ports: ["{port}"] }}
        authorization: {{ ext_authz: iam }}
        cluster: inside
clusters:
  - {{ name: inside, endpoints: [{{ address: "127.0.0.1:1" }}] }}
"#,
            authorizer.address
        ));
        let target = format!("venue.causeway.test:{port}");
        let connect = || crate::tunnel_security::http1_connect(gw.address("connect"), &target, "");
        assert_eq!(connect().await.0, Some(403), "refused by the authorizer");
        assert_eq!(queries.load(Relaxed), 0, "and nothing looked up");

        authorizer.set(Verdict::Allow);
        let (status, mut client) = connect().await;
        assert_eq!(status, Some(200), "authorized");
        assert_eq!(client.line().await.as_deref(), Some("inside"));
        assert!(queries.load(Relaxed) > 0, "looked up once authorized");
    })
    .await
}
