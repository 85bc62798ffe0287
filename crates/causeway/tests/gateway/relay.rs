use std::time::Duration;
use testkit::{Backend, Client, TestGateway, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn single_route(backend: &Backend, route_extra: &str) -> String {
    format!(
        r#"
listeners:
  - name: l
    address: 127.0.0.1:0
    routes:
      - cluster: c
        {route_extra}
clusters:
  - {{ name: c, endpoints: [{{ address: "{}" }}] }}
"#,
        backend.address
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_half_close_still_receives_the_rest() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        let gw = TestGateway::start(&single_route(&echo, ""));
        let mut stream = TcpStream::connect(gw.address("l")).await.unwrap();
        stream.write_all(b"sent before the FIN").await.unwrap();
        stream.shutdown().await.unwrap(); // our FIN
        let mut received = Vec::new();
        stream.read_to_end(&mut received).await.unwrap();
        assert_eq!(
            received, b"sent before the FIN",
            "echo arrives after our FIN, then theirs"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_half_close_lets_the_client_keep_sending() {
    bounded(async {
        // The server says its piece, sends its FIN, then reports everything it receives.
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let server = Backend::start(move |mut stream| {
            let tx = tx.clone();
            async move {
                stream.write_all(b"banner").await.unwrap();
                stream.shutdown().await.unwrap();
                let mut got = Vec::new();
                stream.read_to_end(&mut got).await.unwrap();
                tx.send(got).unwrap();
            }
        })
        .await;
        let gw = TestGateway::start(&single_route(&server, ""));
        let mut stream = TcpStream::connect(gw.address("l")).await.unwrap();
        let mut banner = Vec::new();
        stream.read_to_end(&mut banner).await.unwrap();
        assert_eq!(banner, b"banner", "server's FIN reached us after its bytes");
        stream.write_all(b"client keeps talking").await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), b"client keeps talking");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_reset_closes_the_downstream() {
    bounded(async {
        let server = Backend::start(|mut stream| async move {
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).await.unwrap();
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(stream); // RST
        })
        .await;
        let gw = TestGateway::start(&single_route(&server, ""));
        let mut stream = TcpStream::connect(gw.address("l")).await.unwrap();
        stream.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 16];
        let outcome = stream.read(&mut buf).await;
        assert!(
            matches!(&outcome, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "the reset is passed on as a reset: {outcome:?}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_only_idle_connections() {
    bounded(async {
        let echo = Backend::silent_echo().await;
        // A timeout ten ticks long: a loaded machine may stretch a tick, not ten.
        let gw = TestGateway::start(&single_route(&echo, "idle_timeout: 1s"));
        let mut client = Client::connect(gw.address("l")).await;
        // Traffic every 100 ms for 1.5 s keeps it alive past the timeout...
        for i in 0..15 {
            client.assert_echo(&format!("tick {i}")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // ...and silence closes it.
        let started = tokio::time::Instant::now();
        assert!(client.is_closed().await);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(500),
            "closed after {waited:?}"
        );
    })
    .await
}

/// A silent peer does not hold its sockets forever: by default a connection idle for an
/// hour (virtual time) is closed; one that talks within the hour is not.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_hour_idle_closes_a_connection_by_default() {
    let echo = Backend::silent_echo().await;
    let gw = TestGateway::start(&single_route(&echo, ""));
    let mut client = Client::connect(gw.address("l")).await;
    client.assert_echo("before").await;
    tokio::time::sleep(Duration::from_secs(3500)).await;
    client.assert_echo("within the hour").await;
    tokio::time::sleep(Duration::from_secs(3601)).await;
    assert!(client.is_closed().await, "closed after an idle hour");
}

/// `idle_timeout: 0s` asks for no idle timeout: three idle hours, and it still echoes.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_idle_timeout_of_zero_is_none() {
    let echo = Backend::silent_echo().await;
    let gw = TestGateway::start(&single_route(&echo, "idle_timeout: 0s"));
    let mut client = Client::connect(gw.address("l")).await;
    client.assert_echo("before").await;
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    client.assert_echo("after three idle hours").await;
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn max_duration_closes_even_a_busy_connection() {
    let echo = Backend::silent_echo().await;
    let gw = TestGateway::start(&single_route(&echo, "max_duration: 1h"));
    let mut client = Client::connect(gw.address("l")).await;
    client.assert_echo("young").await;
    tokio::time::sleep(Duration::from_secs(1800)).await;
    client.assert_echo("half an hour").await;
    tokio::time::sleep(Duration::from_secs(1801)).await;
    assert!(client.is_closed().await);
}
