//! Hot reload: new connections follow the new configuration; live connections and
//! unchanged listening sockets are left alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use testkit::{Backend, Client, TestGateway, bounded, closed_port};

/// `main` routes to `cluster`; `extra` (an unrelated listener) exists when `extra` is set.
fn config(
    main: std::net::SocketAddr,
    cluster: &str,
    extra: bool,
    a: &Backend,
    b: &Backend,
) -> String {
    let extra = if extra {
        "  - name: extra\n    address: 127.0.0.1:0\n    routes: [{ cluster: a }]\n"
    } else {
        ""
    };
    format!(
        r#"
listeners:
  - name: main
    address: "{main}"
    routes: [{{ cluster: {cluster} }}]
{extra}clusters:
  - {{ name: a, endpoints: [{{ address: "{}" }}] }}
  - {{ name: b, endpoints: [{{ address: "{}" }}] }}
"#,
        a.address, b.address
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_500_live_connections() {
    bounded(async {
        let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
        let main = closed_port();
        let gw = Arc::new(TestGateway::start(&config(main, "a", true, &a, &b)));

        let mut live = Vec::new();
        for _ in 0..500 {
            live.push(Client::greeted(main).await);
        }

        // A client connecting in a loop through every reload: none may be refused.
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU64::new(0));
        let prober = tokio::spawn({
            let (stop, attempts) = (stop.clone(), attempts.clone());
            async move {
                while !stop.load(Relaxed) {
                    let (mut client, _) = Client::greeted(main).await;
                    client.assert_echo("probe").await;
                    attempts.fetch_add(1, Relaxed);
                }
            }
        });

        for i in 0..20 {
            let (cluster, extra) = if i % 2 == 0 {
                ("b", false)
            } else {
                ("a", true)
            };
            let summary = gw.reload(&config(main, cluster, extra, &a, &b));
            assert_eq!(summary.listeners_updated, ["main"], "main keeps its socket");
            assert_eq!(gw.gateway.listener_address("main"), Some(main));
            assert_eq!(gw.gateway.listener_address("extra").is_some(), extra);
            let (_, reached) = Client::greeted(main).await;
            assert_eq!(
                reached, cluster,
                "new connections follow the new route (reload {i})"
            );
            for (client, _) in live.iter_mut() {
                client.assert_echo("still here").await;
            }
        }
        stop.store(true, Relaxed);
        prober
            .await
            .expect("no probe connection was refused or broken");
        assert!(attempts.load(Relaxed) > 0);
        let (on_a, on_b) = live.iter().fold(
            (0, 0),
            |(x, y), (_, n)| if n == "a" { (x + 1, y) } else { (x, y + 1) },
        );
        assert_eq!(
            (on_a, on_b),
            (500, 0),
            "live connections kept their upstream"
        );
        assert_eq!(
            gw.metric("causeway_reloads_total", &[("result", "ok")]),
            20.0
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_listener_stops_accepting_and_its_connections_go_on() {
    bounded(async {
        let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
        let main = closed_port();
        let gw = TestGateway::start(&config(main, "a", true, &a, &b));
        let extra = gw.address("extra");
        let (mut on_extra, _) = Client::greeted(extra).await;

        let summary = gw.reload(&config(main, "a", false, &a, &b));
        assert_eq!(summary.listeners_removed, ["extra"]);
        testkit::eventually("the removed listener's socket is closed", || {
            std::net::TcpStream::connect(extra).is_err()
        })
        .await;
        on_extra.assert_echo("its live connection goes on").await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_cannot_bind_changes_nothing() {
    bounded(async {
        let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
        let main = closed_port();
        let gw = TestGateway::start(&config(main, "a", false, &a, &b));
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let yaml = config(main, "b", false, &a, &b).replace(
            "clusters:",
            &format!(
                "  - name: clash\n    address: \"{}\"\n    routes: [{{ cluster: b }}]\nclusters:",
                taken.local_addr().unwrap()
            ),
        );
        let new = config::parse(&yaml, "t").unwrap();
        let error = gw.gateway.reload(&new).unwrap_err();
        assert!(
            matches!(&error, proxy::StartError::Bind { listener, .. } if listener == "clash"),
            "{error}"
        );
        assert_eq!(
            gw.metric("causeway_reloads_total", &[("result", "failed")]),
            1.0
        );
        assert_eq!(
            Client::greeted(main).await.1,
            "a",
            "the old route still serves"
        );
        assert!(gw.gateway.listener_address("clash").is_none());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_cluster_keeps_its_health_state() {
    bounded(async {
        let mut active = Backend::echo("active").await;
        let standby = Backend::echo("standby").await;
        let (active_address, standby_address) = (active.address, standby.address);
        let yaml = |route: &str| {
            format!(
                r#"
listeners:
  - name: l
    address: 127.0.0.1:0
    routes: [{{ name: {route}, cluster: venue }}]
clusters:
  - name: venue
    health_check: {{ interval: 50ms, unhealthy_threshold: 1, healthy_threshold: 1 }}
    endpoints:
      - {{ address: "{}", priority: 0 }}
      - {{ address: "{}", priority: 1 }}
"#,
                active_address, standby_address
            )
        };
        let gw = TestGateway::start(&yaml("first"));
        let before = gw.cluster("venue");
        active.stop().await;
        gw.wait_health("venue", active.address, false).await;

        let summary = gw.reload(&yaml("second"));
        assert!(summary.clusters_replaced.is_empty(), "{summary:?}");
        assert!(
            Arc::ptr_eq(&before, &gw.cluster("venue")),
            "the same cluster, health and all"
        );
        assert_eq!(
            gw.endpoint_metric("causeway_endpoint_healthy", "venue", active.address),
            0.0,
            "still unhealthy"
        );
        assert_eq!(Client::greeted(gw.address("l")).await.1, "standby");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_of_a_removed_listener_are_closed_after_the_drain_window() {
    bounded(async {
        let echo = Backend::echo("e").await;
        let yaml = |with_extra: bool| {
            let extra = if with_extra {
                "  - name: extra\n    address: 127.0.0.1:0\n    routes: [{ cluster: c }]\n"
            } else {
                ""
            };
            format!(
                "drain: {{ timeout: 500ms }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\n{extra}clusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
                echo.address
            )
        };
        let gw = TestGateway::start(&yaml(true));
        let (mut on_extra, _) = Client::greeted(gw.address("extra")).await;
        let (mut on_main, _) = Client::greeted(gw.address("main")).await;
        let removed_at = tokio::time::Instant::now();
        gw.reload(&yaml(false));
        on_extra.assert_echo("served during the drain window").await;
        assert!(on_extra.is_closed().await);
        assert!(removed_at.elapsed() >= std::time::Duration::from_millis(450));
        on_main.assert_echo("other listeners' connections are untouched").await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_cluster_connections_stay_or_close_as_configured() {
    bounded(async {
        let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
        let yaml = |policy: &str, cluster: &str, with_a: bool| {
            let a_cluster = if with_a {
                format!("  - {{ name: a, endpoints: [{{ address: \"{}\" }}] }}\n", a.address)
            } else {
                String::new()
            };
            format!(
                "drain: {{ timeout: 300ms }}\nreload: {{ removed_cluster_connections: {policy} }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: {cluster} }}]\nclusters:\n{a_cluster}  - {{ name: b, endpoints: [{{ address: \"{}\" }}] }}\n",
                b.address
            )
        };
        for (policy, closes) in [("keep", false), ("close", true)] {
            let gw = TestGateway::start(&yaml(policy, "a", true));
            let (mut on_a, _) = Client::greeted(gw.address("l")).await;
            let summary = gw.reload(&yaml(policy, "b", false));
            assert_eq!(summary.clusters_removed, ["a"]);
            if closes {
                assert!(on_a.is_closed().await, "closed after the drain window");
            } else {
                tokio::time::sleep(std::time::Duration::from_millis(400)).await;
                on_a.assert_echo("kept past the drain window").await;
            }
            gw.shutdown().await;
        }
    })
    .await
}

/// A reload that changes a cluster replaces it; an endpoint it keeps counts on from where it
/// was (counts restarting at 0 would publish nothing until they passed the old totals), and
/// its connections from before the reload are still counted as active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_of_a_changed_cluster_counts_on() {
    bounded(async {
        let echo = Backend::echo("echo").await;
        let yaml = format!(
            "listeners:\n  - {{ name: l, address: 127.0.0.1:0, routes: [{{ cluster: c }}] }}\nclusters:\n  - {{ name: c, connect_timeout: 1s, endpoints: [{{ address: \"{}\" }}] }}\n",
            echo.address
        );
        let gw = TestGateway::start(&yaml);
        let count = |name| gw.endpoint_metric(name, "c", echo.address);
        let mut before = Vec::new();
        for _ in 0..3 {
            before.push(Client::greeted(gw.address("l")).await.0);
        }
        assert_eq!(count("causeway_endpoint_connections_total"), 3.0);
        gw.reload(&yaml.replace("connect_timeout: 1s", "connect_timeout: 2s"));
        let (_after, _) = Client::greeted(gw.address("l")).await;
        assert_eq!(count("causeway_endpoint_connections_total"), 4.0, "counted on");
        assert_eq!(count("causeway_endpoint_connections_active"), 4.0, "old and new");
        drop(before);
        testkit::eventually("the connections from before the reload end", || {
            count("causeway_endpoint_connections_active") == 1.0
        })
        .await;
    })
    .await
}
