//! The trust boundaries of the CONNECT terminator (docs/tunnels.md): a tunnel reaches only
//! the destinations its route lists — never another route's cluster by name; an HTTP/2
//! connection holds a bounded number of tunnels and header bytes, and only while it is used
//! and alive.
//!
//! The terminator listens on plaintext; each test client sends its own CONNECT request.

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use testkit::authorizer::{TestAuthorizer, Verdict};
use testkit::pki::Ca;
use testkit::{Backend, Client, TestGateway, bounded, eventually};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// Sends `CONNECT authority HTTP/1.1` on a new connection to `terminator`: the answer's
/// status (`None` when the connection ended without one) and the connection, positioned
/// after the answer's head.
pub(crate) async fn http1_connect(
    terminator: SocketAddr,
    authority: &str,
    headers: &str,
) -> (Option<u16>, Client) {
    let client = Client::connect(terminator).await;
    let (status, stream) = connect_over(client.stream, authority, headers).await;
    (status, Client { stream })
}

/// [`http1_connect`] over an open connection (TLS, say).
pub(crate) async fn connect_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: BufReader<S>,
    authority: &str,
    headers: &str,
) -> (Option<u16>, BufReader<S>) {
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{headers}\r\n");
    if stream
        .get_mut()
        .write_all(request.as_bytes())
        .await
        .is_err()
    {
        return (None, stream);
    }
    let mut head = String::new();
    let status = match stream.read_line(&mut head).await {
        Ok(n) if n > 0 => head.split_whitespace().nth(1).and_then(|s| s.parse().ok()),
        _ => None,
    };
    loop {
        let mut line = String::new();
        match stream.read_line(&mut line).await {
            Ok(n) if n > 0 && line.trim_end() != "" => {}
            _ => break,
        }
    }
    (status, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_reaches_only_the_clusters_its_route_lists() {
    bounded(async {
        // An MQ route's cluster on the same gateway, and a cluster the connect route lists.
        let mq = Backend::echo("mq").await;
        let listed = Backend::echo("listed").await;
        let gw = TestGateway::start(&format!(
            r#"listeners:
  - name: mq
    address: 127.0.0.1:0
    protocol: mq
    routes: [{{ cluster: mq }}]
  - name: connect
    address: 127.0.0.1:0
    routes:
      - connect: {{ clusters: [listed] }}
        cluster: inside
clusters:
  - {{ name: mq, endpoints: [{{ address: "{}" }}] }}
  - {{ name: listed, endpoints: [{{ address: "{}" }}] }}
  - {{ name: inside, endpoints: [{{ address: "127.0.0.1:1" }}] }}
"#,
            mq.address, listed.address
        ));
        let connect = gw.address("connect");
        // Another route's cluster, on its endpoint's port or any other: refused, not dialed.
        for authority in [format!("mq:{}", mq.address.port()), "mq:9999".into()] {
            let (status, _) = http1_connect(connect, &authority, "").await;
            assert_eq!(status, Some(403), "CONNECT {authority}");
        }
        // A listed cluster, on a port none of its endpoints listens on: refused.
        let (status, _) = http1_connect(connect, "listed:9999", "").await;
        assert_eq!(status, Some(403), "CONNECT listed:9999");
        assert_eq!(listed.accepted(), 0, "nothing dialed for listed:9999");
        // A listed cluster on its endpoint's port: reached.
        let authority = format!("listed:{}", listed.address.port());
        let (status, mut client) = http1_connect(connect, &authority, "").await;
        assert_eq!(status, Some(200), "CONNECT {authority}");
        assert_eq!(client.line().await.as_deref(), Some("listed"));
        client.assert_echo("through the listed cluster").await;
        assert_eq!(mq.accepted(), 0, "the MQ backend saw no connection");
    })
    .await;
}

/// A plaintext terminator: listener `connect`, one connect route to 127.0.0.1 on
/// `target`'s port with `connect_extra` among its `connect` settings (`, key: value`) and
/// `route_extra` among the route's (indented lines); `top` at the top level.
fn terminator(
    target: SocketAddr,
    connect_extra: &str,
    route_extra: &str,
    top: &str,
) -> TestGateway {
    TestGateway::start(&format!(
        r#"{top}listeners:
  - name: connect
    address: 127.0.0.1:0
    routes:
      - connect: {{ allowed_cidrs: [127.0.0.1/32], allowed_ports: ["{}"]{connect_extra} }}
{route_extra}        cluster: inside
clusters:
  - {{ name: inside, endpoints: [{{ address: "127.0.0.1:1" }}] }}
"#,
        target.port()
    ))
}

/// A raw HTTP/2 client: frames written and read by hand, so it can do what a well-behaved
/// client never does (open more streams than allowed, never answer a PING).
mod raw_h2 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;

    /// Connected, preface and (empty) SETTINGS sent.
    pub async fn connect(address: std::net::SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        stream.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
        stream
    }

    pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        frame.extend([kind, flags]);
        frame.extend(stream.to_be_bytes());
        frame.extend(payload);
        frame
    }

    /// HEADERS (END_HEADERS) opening a CONNECT to `authority` on `stream`: HPACK literals
    /// without indexing, names from the static table (2 `:method`, 1 `:authority`).
    pub fn connect_request(stream: u32, authority: &str) -> Vec<u8> {
        let mut block = vec![0x02, 7];
        block.extend(b"CONNECT");
        block.extend([0x01, authority.len() as u8]);
        block.extend(authority.as_bytes());
        frame(HEADERS, 0x4, stream, &block)
    }

    /// The next frame: type, stream, payload; `None` at the end of the connection.
    pub async fn read_frame(stream: &mut TcpStream) -> Option<(u8, u32, Vec<u8>)> {
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await.ok()?;
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        stream.read_exact(&mut payload).await.ok()?;
        Some((head[3], id, payload))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_101st_concurrent_http2_tunnel_is_refused() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        let gw = terminator(echo.address, ", max_concurrent_streams: 100", "", "");
        let mut stream = raw_h2::connect(gw.address("connect")).await;
        let authority = echo.address.to_string();
        // 101 tunnels at once on one connection with a limit of 100.
        let mut requests = Vec::new();
        for i in 0..101u32 {
            requests.extend(raw_h2::connect_request(1 + 2 * i, &authority));
        }
        stream.write_all(&requests).await.unwrap();
        let last = 1 + 2 * 100;
        let answer = loop {
            match raw_h2::read_frame(&mut stream).await {
                Some((kind, id, payload)) if id == last => break Some((kind, payload)),
                Some(_) => {}
                None => break None,
            }
        };
        let refused_stream = 7u32.to_be_bytes().to_vec();
        assert_eq!(
            answer,
            Some((raw_h2::RST_STREAM, refused_stream)),
            "the 101st stream is reset with REFUSED_STREAM"
        );
        eventually("the first 100 tunnels opened", || echo.accepted() == 100).await;
    })
    .await;
}

/// An HTTP/2 client on a new connection to `address`, its connection driven in the
/// background; the handle ends when the connection does.
async fn h2_client(
    address: SocketAddr,
) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (sender, connection) = h2::client::handshake(tcp).await.unwrap();
    let driven = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, driven)
}

fn connect_request(authority: &str) -> http::Request<()> {
    http::Request::connect(authority).body(()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_kib_request_head_is_refused_over_http2_and_http1() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        let gw = terminator(echo.address, "", "", "");
        let big = "a".repeat(256 * 1024);
        // HTTP/2: a header list over the limit (16 KiB by default).
        let (sender, _driven) = h2_client(gw.address("connect")).await;
        let mut request = connect_request(&echo.address.to_string());
        request.headers_mut().insert("x-big", big.parse().unwrap());
        let mut sender = sender.ready().await.unwrap();
        let (response, _send) = sender.send_request(request, false).unwrap();
        let status = response.await.map(|r| r.status().as_u16());
        assert!(
            matches!(status, Ok(431) | Err(_)),
            "HTTP/2: {status:?} instead of a refusal"
        );
        // HTTP/1.1: a head over the limit.
        let header = format!("x-big: {big}\r\n");
        let (status, _) =
            http1_connect(gw.address("connect"), &echo.address.to_string(), &header).await;
        assert_eq!(status, Some(431), "HTTP/1.1");
        assert_eq!(echo.accepted(), 0, "nothing dialed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_reset_while_it_is_authorized_is_never_dialed() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        // An authorizer that never answers; after 1 s the route lets tunnels through.
        let authorizer = TestAuthorizer::start(Verdict::Hang).await;
        let top = format!(
            "authorizers:\n  - {{ name: iam, address: \"{}\", timeout: 1s, failure_mode: allow }}\n",
            authorizer.address
        );
        let route = "        authorization: { ext_authz: iam }\n";
        let gw = terminator(echo.address, "", route, &top);
        let (sender, _driven) = h2_client(gw.address("connect")).await;
        let authority = echo.address.to_string();
        let mut sender = sender.ready().await.unwrap();
        let (_, mut abandoned) = sender.send_request(connect_request(&authority), false).unwrap();
        authorizer.wait_for_requests(1).await;
        abandoned.send_reset(h2::Reason::CANCEL);
        // A second tunnel, asked for after the reset, opens once its check times out —
        // after the first one's would have.
        let mut sender = sender.ready().await.unwrap();
        let (response, _kept) = sender.send_request(connect_request(&authority), false).unwrap();
        assert_eq!(response.await.unwrap().status(), 200, "the second tunnel");
        eventually("the second tunnel dialed", || echo.accepted() >= 1).await;
        assert_eq!(echo.accepted(), 1, "the reset tunnel was not dialed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_without_tunnels_is_closed_when_idle() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        let gw = terminator(echo.address, ", connection_idle_timeout: 1s", "", "");
        let (_sender, driven) = h2_client(gw.address("connect")).await;
        let closed = tokio::time::timeout(Duration::from_secs(5), driven).await;
        assert!(closed.is_ok(), "the idle connection was not closed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_never_answers_a_ping_is_closed() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        let gw = terminator(
            echo.address,
            ", keepalive: 1s, connection_idle_timeout: 1h",
            "",
            "",
        );
        // The raw client never answers: the terminator PINGs, waits 1 s, closes.
        let mut stream = raw_h2::connect(gw.address("connect")).await;
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while raw_h2::read_frame(&mut stream).await.is_some() {}
        })
        .await;
        assert!(ended.is_ok(), "the connection was not closed");
    })
    .await;
}

/// A terminator requiring client certificates (from `ca`), believing `x-causeway-client`
/// only from `spiffe://causeway.test/edge`; `top` at the top of its configuration.
pub(crate) fn mtls_terminator(
    ca: &Ca,
    dir: &std::path::Path,
    target: SocketAddr,
    top: &str,
) -> TestGateway {
    let ca_file = ca.write(dir, "ca");
    let (cert, key) = ca
        .server(&["terminator.causeway.test"])
        .write(dir, "terminator");
    TestGateway::start(&format!(
        r#"{top}identities:
  - {{ name: terminator, cert: "{}", key: "{}" }}
  - {{ name: ca, bundle: "{}" }}
listeners:
  - name: connect
    address: 127.0.0.1:0
    routes:
      - terminate: {{ identities: [terminator], client_certificate: required, trust: ca }}
        connect:
          allowed_cidrs: [127.0.0.1/32]
          allowed_ports: ["{}"]
          client_address_header: {{ name: x-causeway-client, trusted_peers: [spiffe://causeway.test/edge] }}
        cluster: inside
clusters:
  - {{ name: inside, endpoints: [{{ address: "127.0.0.1:1" }}] }}
"#,
        cert.display(),
        key.display(),
        ca_file.display(),
        target.port()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_address_header_is_believed_only_from_a_trusted_peer() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("tunnel CA");
        let gw = mtls_terminator(&ca, dir.path(), echo.address, "");
        let claimed = "203.0.113.9:4242";
        let header = format!("x-causeway-client: {claimed}\r\n");
        let mut open = Vec::new();
        for (peer, believed) in [
            ("spiffe://causeway.test/other", false),
            ("spiffe://causeway.test/edge", true),
        ] {
            let config = testkit::tls_peer::client_config(&ca.der(), Some(&ca.spiffe(peer)), &[]);
            let tls = testkit::tls_peer::connect(
                gw.address("connect"),
                "terminator.causeway.test",
                config,
            )
            .await
            .unwrap();
            let me = tls.get_ref().0.local_addr().unwrap().to_string();
            let (status, tunnel) =
                connect_over(BufReader::new(tls), &echo.address.to_string(), &header).await;
            assert_eq!(status, Some(200), "{peer}");
            open.push(tunnel);
            // The tunnel's client, as /connections shows it: the header's only when believed.
            let expected = if believed { claimed.to_string() } else { me };
            eventually(
                &format!("{peer}: the tunnel's client is {expected}"),
                || {
                    let live = gw.gateway.connections_snapshot();
                    live.iter()
                        .any(|c| c.endpoint.is_some() && c.source == expected)
                },
            )
            .await;
        }
        let sources: Vec<_> = (gw.gateway.connections_snapshot().into_iter())
            .filter(|c| c.endpoint.is_some())
            .map(|c| c.source)
            .collect();
        assert_eq!(
            sources.iter().filter(|s| *s == claimed).count(),
            1,
            "{sources:?}"
        );
    })
    .await;
}

#[test]
fn connect_clusters_must_be_defined() {
    let yaml = r#"listeners:
  - name: l
    address: 127.0.0.1:10000
    routes:
      - connect: { clusters: [c, nowhere] }
        cluster: c
clusters:
  - { name: c, endpoints: [{ address: 127.0.0.1:10001 }] }
"#;
    let e = config::parse(yaml, "bad.yaml")
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.yaml:5:34: connect.clusters names cluster `nowhere`, which is not defined"),
        "{e}"
    );
}

#[test]
fn a_client_address_header_needs_client_certificates_and_trusted_peers() {
    let yaml = r#"listeners:
  - name: l
    address: 127.0.0.1:10000
    routes:
      - connect: { allowed_cidrs: [10.0.0.0/8], allowed_ports: ["1414"], client_address_header: { name: x-client } }
        cluster: c
clusters:
  - { name: c, endpoints: [{ address: 127.0.0.1:10001 }] }
"#;
    let e = config::parse(yaml, "bad.yaml")
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.yaml:5:"), "{e}");
    assert!(
        e.contains("client_address_header needs trusted_peers"),
        "{e}"
    );
    assert!(
        e.contains("client_address_header needs client certificates"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_dialed_only_where_it_resolves_to_an_allowed_address() {
    bounded(async {
        let echo = Backend::echo("echo").await;
        let port = echo.address.port();
        let localhost = format!("localhost:{port}");
        // `localhost` is an allowed name, but no CIDR lists loopback (none at all, one
        // elsewhere, or everything — which does not list loopback explicitly).
        for cidrs in ["", ", allowed_cidrs: [10.0.0.0/8]", ", allowed_cidrs: [0.0.0.0/0, \"::/0\"]"] {
            let gw = TestGateway::start(&format!(
                r#"listeners:
  - name: connect
    address: 127.0.0.1:0
    routes:
      - connect: {{ allowed_names: [localhost], allowed_ports: ["{port}"]{cidrs} }}
        cluster: inside
clusters:
  - {{ name: inside, endpoints: [{{ address: "127.0.0.1:1" }}] }}
"#
            ));
            let (status, _) = http1_connect(gw.address("connect"), &localhost, "").await;
            assert_eq!(status, Some(403), "CONNECT {localhost} with `{cidrs}`");
            let literal = format!("127.0.0.1:{port}");
            let (status, _) = http1_connect(gw.address("connect"), &literal, "").await;
            assert_eq!(status, Some(403), "CONNECT {literal} with `{cidrs}`");
        }
        assert_eq!(echo.accepted(), 0, "nothing dialed");
        // With loopback listed, the name is dialed (at the address that was checked).
        let gw = TestGateway::start(&format!(
            r#"listeners:
  - name: connect
    address: 127.0.0.1:0
    routes:
      - connect: {{ allowed_names: [localhost], allowed_cidrs: [127.0.0.0/8], allowed_ports: ["{port}"] }}
        cluster: inside
clusters:
  - {{ name: inside, endpoints: [{{ address: "127.0.0.1:1" }}] }}
"#
        ));
        let (status, mut client) = http1_connect(gw.address("connect"), &localhost, "").await;
        assert_eq!(status, Some(200), "CONNECT {localhost} with loopback listed");
        assert_eq!(client.line().await.as_deref(), Some("echo"));
        // Userinfo, a port that is not one, a host no name has: a bad request, not a
        // destination (protocols::connect::target, fuzzed against the http crate).
        for target in [
            format!("user@127.0.0.1:{port}"),
            "localhost:0".to_string(),
            format!("local!host:{port}"),
            format!("[127.0.0.1]:{port}"),
        ] {
            let (status, _) = http1_connect(gw.address("connect"), &target, "").await;
            assert_eq!(status, Some(400), "CONNECT {target}");
        }
        assert_eq!(echo.accepted(), 1, "only the allowed tunnel was dialed");
    })
    .await;
}

/// A "proxy" that accepts connections, reads whatever comes, and never answers.
async fn black_hole() -> Backend {
    Backend::start(|mut stream| async move {
        let mut buf = [0u8; 4096];
        while matches!(tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await, Ok(n) if n > 0) {
        }
    })
    .await
}

/// The access log's lines (JSON) at `path`.
fn log_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    (std::fs::read_to_string(path).unwrap_or_default().lines())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_gives_up_on_a_proxy_that_never_answers() {
    bounded(async {
        let hole = black_hole().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        for protocol in ["http2", "http1"] {
            let edge = TestGateway::start(&format!(
                r#"access_log: {{ path: "{}" }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ cluster: tunnel }}]
clusters:
  - name: tunnel
    endpoints: [{{ address: "{}" }}]
    tunnel: {{ protocol: {protocol}, authority: "127.0.0.1:9", answer_timeout: 1s }}
"#,
                log.display(),
                hole.address
            ));
            let started = tokio::time::Instant::now();
            let mut client = Client::connect(edge.address("edge")).await;
            let closed = tokio::time::timeout(Duration::from_secs(5), client.is_closed()).await;
            assert_eq!(closed, Ok(true), "{protocol}: the client is closed");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{protocol}: closed after {:?}",
                started.elapsed()
            );
            eventually(&format!("{protocol}: the close reason is logged"), || {
                log_lines(&log)
                    .iter()
                    .any(|l| l["reason"] == "upstream_tunnel_timeout")
            })
            .await;
            std::fs::remove_file(&log).unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_is_not_held_up_behind_a_proxy_that_hangs() {
    bounded(async {
        let echo = Backend::echo("echo").await;
        let hole = black_hole().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("tunnel CA");
        let ca_file = ca.write(dir.path(), "ca");
        let (cert, key) = ca
            .server(&["terminator.causeway.test"])
            .write(dir.path(), "terminator");
        let terminator = TestGateway::start(&format!(
            r#"identities:
  - {{ name: terminator, cert: "{}", key: "{}" }}
listeners:
  - name: connect
    address: 127.0.0.1:0
    routes:
      - terminate: {{ identities: [terminator], alpn: [h2] }}
        connect: {{ allowed_cidrs: [127.0.0.1/32], allowed_ports: ["{}"] }}
        cluster: inside
clusters:
  - {{ name: inside, endpoints: [{{ address: "127.0.0.1:1" }}] }}
"#,
            cert.display(),
            key.display(),
            echo.address.port()
        ));
        // Round robin: the first tunnel's connection goes to the proxy that hangs (in its
        // TLS handshake), the second's to the terminator.
        let edge = TestGateway::start(&format!(
            r#"identities:
  - {{ name: ca, bundle: "{}" }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ cluster: tunnel }}]
clusters:
  - name: tunnel
    endpoints: [{{ address: "{}" }}, {{ address: "{}" }}]
    tls: {{ trust: ca, server_name: terminator.causeway.test, alpn: [h2] }}
    tunnel: {{ protocol: http2, authority: "{}", answer_timeout: 3s, max_connections: 2 }}
"#,
            ca_file.display(),
            hole.address,
            terminator.address("connect"),
            echo.address
        ));
        let mut first = Client::connect(edge.address("edge")).await;
        eventually(
            "the first tunnel's connection is at the hanging proxy",
            || hole.accepted() == 1,
        )
        .await;
        let started = tokio::time::Instant::now();
        let second = tokio::time::timeout(
            Duration::from_secs(2),
            Client::greeted(edge.address("edge")),
        )
        .await;
        let (mut second, greeting) = second.expect("the second tunnel waited behind the first");
        assert_eq!(greeting, "echo");
        assert!(started.elapsed() < Duration::from_secs(2));
        second.assert_echo("not held up").await;
        assert!(first.is_closed().await, "the first tunnel gave up");
    })
    .await;
}
