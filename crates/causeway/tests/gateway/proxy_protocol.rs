//! PROXY protocol in (from trusted balancers) and out (to upstreams), with HAProxy on
//! either side; untrusted, missing, malformed and slow headers.

use protocols::proxy::{encode_v1, encode_v2};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use testkit::authorizer::{TestAuthorizer, Verdict, source_of};
use testkit::{Backend, Client, TestGateway, bounded, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// HAProxy with `config` (a `listen` section and what it needs), killed when dropped.
pub struct Haproxy {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy and waits (connect attempts, at most 10 s) until `listening` accepts.
    pub async fn start(sections: &str, listening: SocketAddr) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(
            &path,
            format!(
                "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n{sections}"
            ),
        )
        .unwrap();
        let binary = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("HAProxy is installed (scripts/test installs it)");
        let child = tokio::process::Command::new(binary)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        testkit::accepting(listening, Duration::from_secs(10), "HAProxy").await;
        Haproxy {
            _child: child,
            _dir: dir,
        }
    }
}

fn free_port() -> SocketAddr {
    testkit::closed_port()
}

/// A gateway listener that requires PROXY from 127.0.0.1 and sends v2 to `backend`.
fn gateway(backend: &Backend, mode: &str, trusted: &str, out: &str) -> TestGateway {
    TestGateway::start(&format!(
        r#"listeners:
  - name: edge
    address: 127.0.0.1:0
    proxy_protocol: {{ mode: {mode}, trusted_sources: [{trusted}], timeout: 300ms }}
    routes: [{{ cluster: backend }}]
clusters:
  - name: backend
    endpoints: [{{ address: "{}" }}]
    {out}
"#,
        backend.address
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_in_front_the_backend_and_authorizer_see_the_original_client() {
    bounded(async {
        let backend = Backend::proxy_reporter().await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let gw = TestGateway::start(&format!(
            r#"authorizers:
  - {{ name: iam, address: "{}" }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    proxy_protocol: {{ mode: required, trusted_sources: [127.0.0.1/32] }}
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
        for send in ["send-proxy-v2", "send-proxy"] {
            let front = free_port();
            let _haproxy = Haproxy::start(
                &format!(
                    "listen front\n  bind {front}\n  server gw {} {send}\n",
                    gw.address("edge")
                ),
                front,
            )
            .await;
            let mut client = Client::connect(front).await;
            let me = client.stream.get_ref().local_addr().unwrap();
            let line = client.line().await.expect("the backend's report");
            let mut parts = line.split(' ');
            assert_eq!(
                parts.next(),
                Some(me.to_string().as_str()),
                "{send}: {line}"
            );
            assert_eq!(
                parts.next(),
                Some(front.to_string().as_str()),
                "{send}: {line}"
            );
            client.assert_echo("through HAProxy and Causeway").await;
            // (HAProxy's start-up probes are checked too: find this client's request.)
            let requests = authorizer.requests();
            let mine = requests
                .iter()
                .find(|r| source_of(r) == Some(me.to_string()))
                .expect("the authorizer saw the original client");
            let extensions = &mine.attributes.as_ref().unwrap().context_extensions;
            assert!(extensions["proxy_balancer"].starts_with("127.0.0.1:"));
        }
        assert_eq!(gw.rejected("edge", "proxy_protocol"), 0.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_behind_accepts_our_header() {
    bounded(async {
        let backend = Backend::proxy_reporter().await;
        let behind = free_port();
        let _haproxy = Haproxy::start(
            &format!(
                "listen behind\n  bind {behind} accept-proxy\n  server b {} send-proxy-v2\n",
                backend.address
            ),
            behind,
        )
        .await;
        let gw = TestGateway::start(&format!(
            r#"listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ cluster: haproxy }}]
clusters:
  - name: haproxy
    endpoints: [{{ address: "{behind}" }}]
    proxy_protocol: {{ version: 2 }}
"#
        ));
        let mut client = Client::connect(gw.address("edge")).await;
        let me = client.stream.get_ref().local_addr().unwrap();
        let line = client.line().await.expect("report");
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some(me.to_string().as_str()), "{line}");
        assert_eq!(
            parts.next(),
            Some(gw.address("edge").to_string().as_str()),
            "{line}"
        );
        client.assert_echo("HAProxy understood our header").await;
    })
    .await;
}

async fn send_and_expect_close(address: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut byte = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
        .await
        .expect("closed in time");
    assert!(matches!(closed, Ok(0) | Err(_)), "refused: {bytes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_missing_malformed_and_slow_headers_are_refused() {
    bounded(async {
        let backend = Backend::echo("echo").await;
        let header = encode_v1(
            "192.0.2.1:5000".parse().unwrap(),
            "192.0.2.2:10100".parse().unwrap(),
        );

        // A header from a source that is not trusted, in optional mode.
        let gw = gateway(&backend, "optional", "10.0.0.0/8", "");
        send_and_expect_close(gw.address("edge"), &header).await;
        // Without a header, an untrusted source passes (optional), whether it speaks first
        // or waits for the server (then after the header timeout).
        let mut stream = TcpStream::connect(gw.address("edge")).await.unwrap();
        stream.write_all(b"client first\n").await.unwrap();
        let mut got = vec![0u8; "echo\nclient first\n".len()];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"echo\nclient first\n");
        let (mut client, name) = Client::greeted(gw.address("edge")).await;
        assert_eq!(name, "echo");
        client.assert_echo("server first").await;
        assert_eq!(gw.rejected("edge", "proxy_protocol"), 1.0);

        // Required: untrusted sources are refused outright.
        let gw = gateway(&backend, "required", "10.0.0.0/8", "");
        send_and_expect_close(gw.address("edge"), &header).await;

        // Required from a trusted source: missing, malformed, too slow.
        let gw = gateway(&backend, "required", "127.0.0.0/8", "");
        send_and_expect_close(gw.address("edge"), b"hello, no header\n").await;
        send_and_expect_close(gw.address("edge"), b"PROXY TCP4 1.2.3.4 nope 1 2\r\n").await;
        send_and_expect_close(gw.address("edge"), b"PROXY TCP4 192.0.2.1").await;
        eventually("three refusals", || {
            gw.rejected("edge", "proxy_protocol") == 3.0
        })
        .await;
        assert_eq!(backend.accepted(), 2, "only the plain clients got through");

        // And a good header: the rest of the stream is the client's own.
        let mut stream = TcpStream::connect(gw.address("edge")).await.unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"ping\n");
        stream.write_all(&bytes).await.unwrap();
        let mut got = vec![0u8; "echo\nping\n".len()];
        stream.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"echo\nping\n");
        let live = gw.gateway.connections_snapshot();
        assert_eq!(live[0].source, "192.0.2.1:5000");
        assert_eq!(live[0].destination, "192.0.2.2:10100");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlvs_are_passed_through_added_and_sent_as_v1_or_v2() {
    bounded(async {
        let backend = Backend::proxy_reporter().await;
        let gw = gateway(
            &backend,
            "required",
            "127.0.0.1/32",
            r#"proxy_protocol: { version: 2, tlvs: [{ type: 0xE1, value: gateway-7 }], pass_tlvs: [0xE0] }"#,
        );
        let header = encode_v2(
            "[2001:db8::5]:40000".parse().unwrap(),
            "[2001:db8::1]:10100".parse().unwrap(),
            &[(0xE0, b"from-lb"), (0xE2, b"not-passed")],
        )
        .unwrap();
        let mut stream = TcpStream::connect(gw.address("edge")).await.unwrap();
        stream.write_all(&header).await.unwrap();
        let mut client = Client {
            stream: tokio::io::BufReader::new(stream),
        };
        assert_eq!(
            client.line().await.as_deref(),
            Some("[2001:db8::5]:40000 [2001:db8::1]:10100 0xe1=gateway-7,0xe0=from-lb")
        );

        let v1 = gateway(&backend, "optional", "127.0.0.1/32", "proxy_protocol: { version: 1 }");
        let mut client = Client::connect(v1.address("edge")).await;
        let me = client.stream.get_ref().local_addr().unwrap();
        let line = client.line().await.unwrap();
        assert_eq!(line, format!("{me} {} -", v1.address("edge")));
    })
    .await;
}

/// A balancer's header whose passed-through TLVs, with the cluster's own, would not fit the
/// 64 KiB of the v2 header sent upstream: the connection is refused with a reason, nothing
/// is dialed (before, the task panicked after connecting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tlvs_that_would_overflow_the_upstream_header_refuse_the_connection() {
    bounded(async {
        let backend = Backend::proxy_reporter().await;
        let log = tempfile::NamedTempFile::new().unwrap();
        let out = r#"proxy_protocol: { version: 2, tlvs: [{ type: 0xE1, value: gateway-7 }], pass_tlvs: [0xE0] }"#;
        let yaml = format!(
            "access_log: {{ path: \"{}\" }}\n{}",
            log.path().display(),
            r#"listeners:
  - name: edge
    address: 127.0.0.1:0
    proxy_protocol: { mode: required, trusted_sources: [127.0.0.1/32], timeout: 300ms }
    routes: [{ cluster: backend }]
clusters:
  - name: backend
    endpoints: [{ address: "BACKEND" }]
    OUT
"#
            .replace("BACKEND", &backend.address.to_string())
            .replace("OUT", out)
        );
        let gw = TestGateway::start(&yaml);
        // The largest header a balancer can send: two TLVs the cluster passes on.
        let half = vec![b'x'; (65535 - 12) / 2 - 3];
        let header = encode_v2(
            "192.0.2.1:5000".parse().unwrap(),
            "192.0.2.2:10100".parse().unwrap(),
            &[(0xE0, &half), (0xE0, &half)],
        )
        .unwrap();
        let mut stream = TcpStream::connect(gw.address("edge")).await.unwrap();
        stream.write_all(&header).await.unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "closed, nothing sent back");
        let reason = || {
            let text = std::fs::read_to_string(log.path()).unwrap_or_default();
            let line = text.lines().next();
            line.map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"].clone())
        };
        eventually("the access-log line", || reason().is_some()).await;
        assert_eq!(reason().unwrap(), "proxy_header_too_large");
        assert_eq!(backend.accepted(), 0, "nothing was dialed");
    })
    .await;
}
