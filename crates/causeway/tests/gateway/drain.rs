//! Draining: the gateway says it is going away at once, keeps accepting for the delay,
//! and closes what is left spread over the end of the window, not all at once.

use std::sync::Arc;
use std::time::Duration;
use testkit::{Backend, Client, TestGateway, bounded};
use tokio::time::Instant;

fn config(backend: &Backend, drain: &str) -> String {
    format!(
        "drain: {{ {drain} }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
        backend.address
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_200_connections_spread_over_the_end_of_the_window() {
    bounded(async {
        let echo = Backend::echo("e").await;
        let gw = Arc::new(TestGateway::start(&config(
            &echo,
            "timeout: 4s, spread: 2s",
        )));
        let address = gw.address("l");
        let mut clients = Vec::new();
        for _ in 0..200 {
            clients.push(Client::greeted(address).await.0);
        }

        let started = Instant::now();
        let shutdown = tokio::spawn({
            let gw = gw.clone();
            async move { gw.gateway.shutdown().await }
        });
        tokio::task::yield_now().await;
        testkit::eventually("draining is reported at once", || gw.gateway.is_draining()).await;
        assert!(started.elapsed() < Duration::from_millis(500));

        let mut waits = Vec::new();
        for mut client in clients {
            waits.push(tokio::spawn(async move {
                assert!(client.is_closed().await);
                started.elapsed()
            }));
        }
        let mut closed_at = Vec::new();
        for w in waits {
            closed_at.push(w.await.unwrap());
        }
        closed_at.sort();
        let (first, last) = (closed_at[0], closed_at[199]);
        assert!(
            first >= Duration::from_millis(1900),
            "nothing closed before the spread: {first:?}"
        );
        assert!(
            last - first >= Duration::from_millis(1500),
            "closes spread over {:?}",
            last - first
        );
        assert!(
            last <= Duration::from_millis(4500),
            "all closed by the deadline: {last:?}"
        );
        let report = shutdown.await.unwrap();
        assert!(!report.drained);
        assert_eq!(report.closed, 200);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_accepting_during_the_delay_then_stops() {
    bounded(async {
        let echo = Backend::echo("e").await;
        let gw = Arc::new(TestGateway::start(&config(
            &echo,
            "timeout: 5s, delay: 600ms",
        )));
        let address = gw.address("l");
        let started = Instant::now();
        let shutdown = tokio::spawn({
            let gw = gw.clone();
            async move { gw.gateway.shutdown().await }
        });
        testkit::eventually("draining is reported", || gw.gateway.is_draining()).await;
        let (mut during, _) = Client::greeted(address).await;
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "connected during the delay"
        );
        testkit::eventually("accepting stops after the delay", || {
            std::net::TcpStream::connect(address).is_err()
        })
        .await;
        assert!(started.elapsed() >= Duration::from_millis(600));
        during
            .assert_echo("a connection made during the delay is served")
            .await;
        drop(during);
        let report = shutdown.await.unwrap();
        assert!(report.drained, "it ended by itself before the deadline");
    })
    .await
}
