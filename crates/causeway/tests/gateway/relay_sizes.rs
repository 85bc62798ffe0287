//! Every relay path carries every size byte-exact, half-close included: plain TCP (copying
//! and splicing), a TLS
//! session the gateway terminates, and an HTTP/2 CONNECT tunnel (edge and terminator), for
//! 1 B to 64 MiB — sizes on each side of the relay's buffer boundaries — with a reader that
//! takes everything at once and one that lags (the receiver cannot take it all: the rest
//! waits in the direction's own buffer).

use crate::tls_termination::{Pki, mtls_config};
use crate::tunnel_lifecycle::{Tunnels, Via, Watched};
use std::time::Duration;
use testkit::tls_peer::{client_config, connect};
use testkit::{Backend, TestGateway, bounded};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Sizes around 4 KiB pages, 64 KiB socket chunks and the 256 KiB scratch buffer.
const SIZES: [usize; 9] = [
    1,
    100,
    4096,
    65_535,
    65_537,
    262_143,
    262_145,
    1 << 20,
    4 << 20,
];
const LARGE: usize = 64 << 20;

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

/// Sends `size` bytes and its end (FIN, or close_notify and FIN), reads the echo to its end
/// (the backend echoes, then ends its side), and checks every byte.
async fn round_trip<S>(stream: S, size: usize, lagging: bool, what: &str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let send = tokio::spawn(async move {
        let mut chunk = vec![0u8; 256 * 1024];
        let mut offset = 0;
        while offset < size {
            let n = chunk.len().min(size - offset);
            for (k, b) in chunk[..n].iter_mut().enumerate() {
                *b = pattern(offset + k);
            }
            writer.write_all(&chunk[..n]).await.unwrap();
            offset += n;
        }
        writer.shutdown().await.unwrap();
    });
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(
                *b,
                pattern(received + k),
                "{what}: byte {} differs",
                received + k
            );
        }
        received += n;
        if lagging {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    send.await.unwrap();
    assert_eq!(received, size, "{what}: every byte came back, then the end");
}

fn sizes() -> impl Iterator<Item = (usize, bool)> {
    (SIZES.into_iter().flat_map(|s| [(s, false), (s, true)])).chain([(LARGE, false)])
}

/// A plain gateway in front of `echo`, copying or splicing.
fn plain(echo: &Backend, splice: bool) -> TestGateway {
    TestGateway::start(&format!(
        "relay: {{ splice: {splice} }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
        echo.address
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_tcp_relays_every_size_byte_exact_copying_and_splicing() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        for splice in [false, true] {
            let gw = plain(&echo, splice);
            for (size, lagging) in sizes() {
                let stream = tokio::net::TcpStream::connect(gw.address("l"))
                    .await
                    .unwrap();
                let what = format!("plain splice={splice} {size} B lagging={lagging}");
                round_trip(stream, size, lagging, &what).await;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_tls_session_relays_every_size_byte_exact() {
    bounded(async {
        let pki = Pki::new();
        let server = pki.ca.server(&["echo.causeway.test"]);
        let echo = Backend::silent_echo().await;
        let gw = TestGateway::start(&mtls_config(&pki, &server, "none", "", &echo));
        let config = client_config(&pki.ca.der(), None, &[]);
        for (size, lagging) in sizes() {
            let tls = connect(gw.address("edge"), "echo.causeway.test", config.clone())
                .await
                .unwrap();
            round_trip(
                tls,
                size,
                lagging,
                &format!("tls {size} B lagging={lagging}"),
            )
            .await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_tunnel_relays_every_size_byte_exact() {
    bounded(async {
        let echo = Watched::start().await;
        let target = echo.backend.address;
        let log = tempfile::NamedTempFile::new().unwrap();
        let terminator = TestGateway::start(&crate::tunnel_lifecycle::terminator(
            target,
            log.path(),
            "",
            "",
            "",
        ));
        let tunnels = Tunnels::new(Via::Http2, terminator.address("connect"), target);
        for (size, lagging) in sizes() {
            let client = tunnels.open().await;
            let what = format!("tunnel {size} B lagging={lagging}");
            round_trip(client.stream, size, lagging, &what).await;
        }
    })
    .await
}

/// A hundred lagging bulk transfers at once: at most 64 pipes exist in the process (the
/// other transfers copy), and every byte arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_lagging_transfers_share_at_most_64_pipes() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        let gw = plain(&echo, true);
        let address = gw.address("l");
        let transfers = (0..100).map(|i| {
            tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(address).await.unwrap();
                round_trip(stream, 1 << 20, true, &format!("transfer {i}")).await;
            })
        });
        let mut most = 0.0f64;
        let all = futures_all(transfers.collect());
        tokio::pin!(all);
        loop {
            tokio::select! {
                () = &mut all => break,
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    most = most.max(gw.metric("causeway_relay_pipes", &[]));
                }
            }
        }
        assert!(most > 0.0 && most <= 64.0, "pipes at most: {most}");
    })
    .await
}

async fn futures_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        task.await.unwrap();
    }
}
