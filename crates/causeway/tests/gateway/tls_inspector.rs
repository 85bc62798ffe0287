//! The TLS inspector: routing on SNI and ALPN without terminating TLS, the bytes passed on
//! untouched; non-TLS clients; clients that stall.

use protocols::tls::{build_client_hello, client_hello};
use std::time::Duration;
use testkit::{Backend, Client, TestGateway, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A backend that reports every connection's bytes (until the client's FIN).
async fn recorder() -> (Backend, mpsc::UnboundedReceiver<Vec<u8>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backend = Backend::start(move |mut stream| {
        let tx = tx.clone();
        async move {
            let mut got = Vec::new();
            let _ = stream.read_to_end(&mut got).await;
            let _ = tx.send(got);
        }
    })
    .await;
    (backend, rx)
}

fn config(echo: &Backend, pass: &Backend, mq: &Backend, plain: &Backend, extra: &str) -> String {
    format!(
        r#"
listeners:
  - name: edge
    address: 127.0.0.1:0
    inspect: {{ tls: true, timeout: 300ms }}
    routes:
      - {{ name: h2, match: {{ sni: [echo.causeway.test], alpn: [h2] }}, cluster: echo }}
      - {{ name: pass, match: {{ sni: [pass.causeway.test] }}, cluster: pass }}
      - {{ name: mq, match: {{ sni: ["*.chl.mq.ibm.com"] }}, cluster: mq }}
{extra}clusters:
  - {{ name: echo, endpoints: [{{ address: "{}" }}] }}
  - {{ name: pass, endpoints: [{{ address: "{}" }}] }}
  - {{ name: mq, endpoints: [{{ address: "{}" }}] }}
  - {{ name: plain, endpoints: [{{ address: "{}" }}] }}
"#,
        echo.address, pass.address, mq.address, plain.address
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_on_sni_and_passes_every_byte_through() {
    bounded(async {
        let (echo, _) = recorder().await;
        let (pass, mut pass_got) = recorder().await;
        let (mq, mut mq_got) = recorder().await;
        let (plain, _) = recorder().await;
        let gw = TestGateway::start(&config(&echo, &pass, &mq, &plain, ""));

        // A 20 KB ClientHello (several records, many segments), written in small pieces,
        // followed by more bytes: all arrive at the backend exactly.
        let mut sent = build_client_hello(Some("pass.causeway.test"), &["h2"], 20_000, 16384);
        sent.extend_from_slice(b"\x17\x03\x03\x00\x0bapplication");
        let mut client = TcpStream::connect(gw.address("edge")).await.unwrap();
        client.set_nodelay(true).unwrap();
        for piece in sent.chunks(700) {
            client.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        client.shutdown().await.unwrap();
        assert_eq!(
            pass_got.recv().await.unwrap(),
            sent,
            "byte-exact passthrough"
        );

        // Wildcard SNI: an MQ channel name (IBM's encoding of APP1.TLS).
        let hello = build_client_hello(Some("app12e-tls.chl.mq.ibm.com"), &[], 0, 16384);
        let mut client = TcpStream::connect(gw.address("edge")).await.unwrap();
        client.write_all(&hello).await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(mq_got.recv().await.unwrap(), hello);
        assert_eq!(echo.accepted() + plain.accepted(), 0);
    })
    .await
}

/// A backend that reports the bytes of each connection as soon as they hold a complete
/// ClientHello, then hangs up (it speaks no TLS).
async fn hello_recorder() -> (Backend, mpsc::UnboundedReceiver<Vec<u8>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let backend = Backend::start(move |mut stream| {
        let tx = tx.clone();
        async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if !matches!(
                    client_hello(&got),
                    Err(protocols::tls::Error::Incomplete { .. })
                ) {
                    break;
                }
            }
            let _ = tx.send(got);
        }
    })
    .await;
    (backend, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_is_routed_by_its_server_name() {
    bounded(async {
        let (echo, _) = recorder().await;
        let (pass, _) = recorder().await;
        let (mq, mut mq_got) = hello_recorder().await;
        let (plain, _) = recorder().await;
        let gw = TestGateway::start(&config(&echo, &pass, &mq, &plain, ""));
        let address = gw.address("edge").to_string();
        let _s_client = tokio::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &address,
                "-servername",
                "to2e-qmgr1.chl.mq.ibm.com",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("openssl is installed (scripts/test installs it)");
        let got = mq_got.recv().await.unwrap();
        let hello = client_hello(&got).expect("openssl's ClientHello arrived untouched");
        assert_eq!(hello.sni.as_deref(), Some("to2e-qmgr1.chl.mq.ibm.com"));
        assert_eq!(pass.accepted() + echo.accepted() + plain.accepted(), 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_and_non_tls_clients() {
    bounded(async {
        let (echo, mut echo_got) = recorder().await;
        let (pass, _) = recorder().await;
        let (mq, _) = recorder().await;
        let plain = Backend::echo("plain").await;
        let with_plain = "      - { name: plaintext, match: { tls: false }, cluster: plain }\n";
        let gw = TestGateway::start(&config(&echo, &pass, &mq, &plain, with_plain));

        let hello = build_client_hello(Some("echo.causeway.test"), &["http/1.1", "h2"], 0, 16384);
        let mut client = TcpStream::connect(gw.address("edge")).await.unwrap();
        client.write_all(&hello).await.unwrap();
        client.shutdown().await.unwrap();
        assert_eq!(echo_got.recv().await.unwrap(), hello, "sni + alpn route");

        // Same name without h2: no route (the sni-only route is for another name).
        let no_h2 = build_client_hello(Some("echo.causeway.test"), &["http/1.1"], 0, 16384);
        let mut client = Client::connect(gw.address("edge")).await;
        client.stream.get_mut().write_all(&no_h2).await.unwrap();
        assert!(client.is_closed().await);
        assert_eq!(gw.rejected("edge", "no_route"), 1.0);

        // Plaintext (an MQ TSH header, say) goes to the `tls: false` route, bytes intact.
        let mut client = Client::connect(gw.address("edge")).await;
        client
            .stream
            .get_mut()
            .write_all(b"TSH hello\n")
            .await
            .unwrap();
        assert_eq!(client.line().await.as_deref(), Some("plain"));
        assert_eq!(client.line().await.as_deref(), Some("TSH hello"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_mid_hello_is_cut_at_the_deadline() {
    bounded(async {
        let (echo, _) = recorder().await;
        let (pass, _) = recorder().await;
        let (mq, _) = recorder().await;
        let (plain, _) = recorder().await;
        let gw = TestGateway::start(&config(&echo, &pass, &mq, &plain, ""));
        let hello = build_client_hello(Some("pass.causeway.test"), &[], 0, 16384);
        let mut client = Client::connect(gw.address("edge")).await;
        let started = tokio::time::Instant::now();
        client
            .stream
            .get_mut()
            .write_all(&hello[..hello.len() / 2])
            .await
            .unwrap();
        assert!(client.is_closed().await);
        assert!(
            started.elapsed() >= Duration::from_millis(290),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(gw.rejected("edge", "inspection_failed"), 1.0);
        assert_eq!(pass.accepted(), 0, "nothing was dialed");
    })
    .await
}

/// A server name in absolute form (`name.`, any case) routes like `name`, as rustls sees it
/// when the gateway terminates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_dot_in_the_server_name_routes_like_the_name() {
    bounded(async {
        let (echo, _) = recorder().await;
        let (pass, mut pass_got) = recorder().await;
        let (mq, _) = recorder().await;
        let (plain, _) = recorder().await;
        let extra = "      - { name: rest, cluster: plain }\n";
        let gw = TestGateway::start(&config(&echo, &pass, &mq, &plain, extra));
        let hello = build_client_hello(Some("Pass.Causeway.Test."), &[], 0, 16384);
        let mut client = TcpStream::connect(gw.address("edge")).await.unwrap();
        client.write_all(&hello).await.unwrap();
        client.shutdown().await.unwrap();
        let routed = || pass.accepted() + plain.accepted() == 1;
        testkit::eventually("routed", routed).await;
        assert_eq!(plain.accepted(), 0, "not the default route");
        assert_eq!(pass_got.recv().await.unwrap(), hello, "the bytes untouched");
    })
    .await;
}

/// A ClientHello dripped one byte at a time is routed all the same; one spread over more
/// records than any client needs is refused as malformed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripped_hello_routes_and_one_in_too_many_records_is_refused() {
    bounded(async {
        let (echo, _) = recorder().await;
        let (pass, mut pass_got) = recorder().await;
        let (mq, _) = recorder().await;
        let (plain, _) = recorder().await;
        let extra = "    inspect: { tls: true, timeout: 10s }\n";
        let yaml = config(&echo, &pass, &mq, &plain, "")
            .replace("    inspect: { tls: true, timeout: 300ms }\n", extra);
        let gw = TestGateway::start(&yaml);
        let hello = build_client_hello(Some("pass.causeway.test"), &[], 1000, 300);
        let mut client = TcpStream::connect(gw.address("edge")).await.unwrap();
        client.set_nodelay(true).unwrap();
        for byte in &hello {
            client.write_all(&[*byte]).await.unwrap();
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        client.shutdown().await.unwrap();
        assert_eq!(pass_got.recv().await.unwrap(), hello);

        let fragmented = build_client_hello(Some("pass.causeway.test"), &[], 1000, 10);
        let mut client = Client::connect(gw.address("edge")).await;
        client
            .stream
            .get_mut()
            .write_all(&fragmented)
            .await
            .unwrap();
        assert!(client.is_closed().await);
        assert_eq!(gw.rejected("edge", "inspection_failed"), 1.0);
        assert_eq!(pass.accepted(), 1, "nothing more was dialed");
    })
    .await
}
