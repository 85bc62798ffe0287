//! Limits: gateway-wide, per client address, and accept rate; each refusal counted.

use testkit::{Backend, Client, TestGateway, bounded};
use tokio::net::TcpSocket;

fn yaml(backend: &Backend, top: &str, listener: &str) -> String {
    format!(
        "{top}\nlisteners:\n  - name: a\n    address: 127.0.0.1:0\n    {listener}\n    routes: [{{ cluster: c }}]\n  - name: b\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
        backend.address
    )
}

/// A client connecting from a chosen loopback address.
async fn from(source: &str, to: std::net::SocketAddr) -> Client {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(to).await.unwrap();
    Client {
        stream: tokio::io::BufReader::new(stream),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_wide_limit_spans_listeners() {
    bounded(async {
        let echo = Backend::echo("e").await;
        let gw = TestGateway::start(&yaml(&echo, "max_connections: 2", ""));
        let (_one, _) = Client::greeted(gw.address("a")).await;
        let (_two, _) = Client::greeted(gw.address("b")).await;
        assert!(Client::connect(gw.address("b")).await.is_closed().await);
        assert_eq!(gw.rejected("b", "global_connection_limit"), 1.0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_source_limit_counts_each_client_address() {
    bounded(async {
        let echo = Backend::echo("e").await;
        let gw = TestGateway::start(&yaml(&echo, "", "max_connections_per_source: 2"));
        let a = gw.address("a");
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = from("127.0.0.1", a).await;
            assert_eq!(c.line().await.as_deref(), Some("e"));
            held.push(c);
        }
        assert!(
            from("127.0.0.1", a).await.is_closed().await,
            "a third from 127.0.0.1"
        );
        let mut other = from("127.0.0.2", a).await;
        assert_eq!(
            other.line().await.as_deref(),
            Some("e"),
            "another address has its own count"
        );
        assert_eq!(gw.rejected("a", "source_connection_limit"), 1.0);

        drop(held.pop());
        testkit::eventually("the slot is released", || {
            gw.metric("causeway_listener_connections_active", &[("listener", "a")]) == 2.0
        })
        .await;
        let mut again = from("127.0.0.1", a).await;
        assert_eq!(again.line().await.as_deref(), Some("e"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accept_rate_allows_a_burst_then_refuses() {
    bounded(async {
        let echo = Backend::echo("e").await;
        let gw = TestGateway::start(&yaml(&echo, "", "accept_rate: { per_second: 1, burst: 3 }"));
        let a = gw.address("a");
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(Client::greeted(a).await.0);
        }
        assert!(
            Client::connect(a).await.is_closed().await,
            "the fourth at once is over the rate"
        );
        assert_eq!(gw.rejected("a", "accept_rate"), 1.0);
        let text = gw.metrics_text();
        assert!(
            text.contains("causeway_listener_connections_rejected_total{listener=\"a\",reason=\"accept_rate\"} 1"),
            "{text}"
        );
        assert_eq!(
            Client::greeted(gw.address("b")).await.1,
            "e",
            "other listeners are not limited"
        );
    })
    .await
}

/// A client behind a trusted balancer, as its PROXY header names it.
async fn behind_balancer(client: &str, to: std::net::SocketAddr) -> Client {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(to).await.unwrap();
    let header = protocols::proxy::encode_v2(client.parse().unwrap(), to, &[]).unwrap();
    stream.write_all(&header).await.unwrap();
    Client {
        stream: tokio::io::BufReader::new(stream),
    }
}

/// Behind a balancer every connection comes from the balancer's address: the per-source
/// limit counts the client its PROXY header names (IPv6 by /64, the prefix one subscriber
/// holds), not the balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_source_limit_counts_the_client_behind_a_balancer() {
    bounded(async {
        let echo = Backend::echo("e").await;
        let listener = "max_connections_per_source: 1\n    proxy_protocol: { mode: required, trusted_sources: [127.0.0.1/32] }";
        let gw = TestGateway::start(&yaml(&echo, "", listener));
        let a = gw.address("a");
        let mut held = Vec::new();
        for client in ["192.0.2.1:1000", "192.0.2.2:1000", "[2001:db8::1]:1000", "[2001:db8:0:1::1]:1000"] {
            let mut c = behind_balancer(client, a).await;
            assert_eq!(c.line().await.as_deref(), Some("e"), "{client} has its own count");
            held.push(c);
        }
        for client in ["192.0.2.1:2000", "[2001:db8::ffff]:1000"] {
            let mut c = behind_balancer(client, a).await;
            assert!(c.is_closed().await, "{client}: over its limit");
        }
        assert_eq!(gw.rejected("a", "source_connection_limit"), 2.0);
    })
    .await
}

/// Nothing is unbounded by default: a route closes what has been idle for an hour (`0s`
/// asks for no timeout), a listener takes 10 000 connections, the gateway as many as half
/// its file descriptors carry — shown in /config and /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_finite_by_default() {
    bounded(async {
        let echo = Backend::echo("e").await;
        let yaml = yaml(&echo, "", "").replacen(
            "routes: [{ cluster: c }]",
            "routes: [{ cluster: c, idle_timeout: 0s }]",
            1,
        );
        let gw = TestGateway::start(&yaml);
        let config = serde_json::to_value(gw.gateway.config()).unwrap();
        let listener = |i: usize| &config["listeners"][i];
        assert_eq!(
            listener(0)["routes"][0]["idle_timeout"],
            serde_json::Value::Null,
            "0s: none"
        );
        assert_eq!(listener(1)["routes"][0]["idle_timeout"], "1h");
        assert_eq!(listener(1)["connection_limit"], 10000);
        let mut fds = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) writes the struct we own.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut fds) }, 0);
        let expected = ((fds.rlim_cur - 128) / 2) as f64;
        assert_eq!(gw.metric("causeway_connections_limit", &[]), expected);
    })
    .await
}
