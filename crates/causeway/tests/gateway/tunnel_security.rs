//! The trust boundaries of the CONNECT terminator (docs/tunnels.md): a tunnel reaches only
//! the destinations its route lists — never another route's cluster by name.
//!
//! The terminator listens on plaintext; each test client sends its own CONNECT request.

use testkit::{Backend, Client, TestGateway, bounded};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Sends `CONNECT authority HTTP/1.1` on a new connection to `terminator`: the answer's
/// status (`None` when the connection ended without one) and the connection, positioned
/// after the answer's head.
async fn http1_connect(
    terminator: std::net::SocketAddr,
    authority: &str,
    headers: &str,
) -> (Option<u16>, Client) {
    let mut client = Client::connect(terminator).await;
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{headers}\r\n");
    let stream = client.stream.get_mut();
    if stream.write_all(request.as_bytes()).await.is_err() {
        return (None, client);
    }
    let mut head = String::new();
    let status = match client.stream.read_line(&mut head).await {
        Ok(n) if n > 0 => head.split_whitespace().nth(1).and_then(|s| s.parse().ok()),
        _ => None,
    };
    loop {
        let mut line = String::new();
        match client.stream.read_line(&mut line).await {
            Ok(n) if n > 0 && line.trim_end() != "" => {}
            _ => break,
        }
    }
    (status, client)
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
