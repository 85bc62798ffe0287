use testkit::{Backend, Client, TestGateway, bounded, closed_port, eventually};

fn active_standby(active: &str, standby: &str, extra: &str) -> String {
    format!(
        r#"
listeners:
  - name: fix
    address: 127.0.0.1:0
    routes: [{{ cluster: venue }}]
clusters:
  - name: venue
    {extra}
    endpoints:
      - {{ address: "{active}", priority: 0 }}
      - {{ address: "{standby}", priority: 1 }}
"#
    )
}

const HEALTH: &str = "health_check: { interval: 50ms, timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 2 }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_moves_on_to_the_next_endpoint() {
    bounded(async {
        let alive = Backend::echo("alive").await;
        let dead = closed_port();
        let yaml = active_standby(
            &dead.to_string(),
            &alive.address.to_string(),
            "passive_ejection: { consecutive_failures: 0 }",
        );
        let gw = TestGateway::start(&yaml);
        for _ in 0..3 {
            let (mut client, name) = Client::greeted(gw.address("fix")).await;
            assert_eq!(name, "alive");
            client.assert_echo("ok").await;
        }
        assert_eq!(
            gw.endpoint_metric("causeway_endpoint_connect_failures_total", "venue", dead),
            3.0,
            "each connection tried the dead one first"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_bounded_and_passive_ejection_skips_a_failing_endpoint() {
    bounded(async {
        let alive = Backend::echo("alive").await;
        let dead = closed_port();
        let yaml = active_standby(
            &dead.to_string(),
            &alive.address.to_string(),
            "connect_attempts: 1\n    passive_ejection: { consecutive_failures: 2, duration: 1h }",
        );
        let gw = TestGateway::start(&yaml);
        // One attempt only: the dead active endpoint fails and the client is closed.
        for _ in 0..2 {
            let mut client = Client::connect(gw.address("fix")).await;
            assert!(client.is_closed().await);
        }
        // Two failures in a row ejected it: the standby now takes connections.
        // No health check here: out of service means ejected.
        assert_eq!(
            gw.endpoint_metric("causeway_endpoint_healthy", "venue", dead),
            0.0
        );
        assert_eq!(
            gw.endpoint_metric("causeway_endpoint_ejections_total", "venue", dead),
            1.0
        );
        let (mut client, name) = Client::greeted(gw.address("fix")).await;
        assert_eq!(name, "alive");
        client.assert_echo("ok").await;
        assert_eq!(
            gw.endpoint_metric("causeway_endpoint_connect_attempts_total", "venue", dead),
            2.0
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_standby_and_back_leaving_live_connections_alone() {
    bounded(async {
        let mut active = Backend::echo("active").await;
        let standby = Backend::echo("standby").await;
        let gw = TestGateway::start(&active_standby(
            &active.address.to_string(),
            &standby.address.to_string(),
            HEALTH,
        ));
        let address = gw.address("fix");
        let (mut on_active, name) = Client::greeted(address).await;
        assert_eq!(name, "active");
        on_active.assert_echo("1").await;

        active.stop().await;
        assert!(
            on_active.is_closed().await,
            "the active's connections went down with it"
        );
        gw.wait_health("venue", active.address, false).await;
        let failover = || gw.metric("causeway_cluster_failover_active", &[("cluster", "venue")]);
        assert_eq!(failover(), 1.0, "failed over to the standby");
        let (mut on_standby, name) = Client::greeted(address).await;
        assert_eq!(name, "standby");
        on_standby.assert_echo("2").await;

        active.resume().await;
        gw.wait_health("venue", active.address, true).await;
        assert_eq!(failover(), 0.0, "back on the preferred endpoint");
        let (mut back, name) = Client::greeted(address).await;
        assert_eq!(
            name, "active",
            "new connections return to the recovered active"
        );
        back.assert_echo("3").await;
        on_standby
            .assert_echo("the standby connection was left alone")
            .await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failback_close_moves_live_connections_off_the_standby() {
    bounded(async {
        let mut active = Backend::echo("active").await;
        let standby = Backend::echo("standby").await;
        let gw = TestGateway::start(&active_standby(
            &active.address.to_string(),
            &standby.address.to_string(),
            &format!("failback: close\n    {HEALTH}"),
        ));
        active.stop().await;
        gw.wait_health("venue", active.address, false).await;
        let (mut on_standby, name) = Client::greeted(gw.address("fix")).await;
        assert_eq!(name, "standby");

        active.resume().await;
        gw.wait_health("venue", active.address, true).await;
        assert!(
            on_standby.is_closed().await,
            "failback closed the standby connection"
        );
        let (_, name) = Client::greeted(gw.address("fix")).await;
        assert_eq!(name, "active");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_transitions_wait_for_their_thresholds() {
    bounded(async {
        let mut active = Backend::echo("active").await;
        let standby = Backend::echo("standby").await;
        let gw = TestGateway::start(&active_standby(
            &active.address.to_string(),
            &standby.address.to_string(),
            "health_check: { interval: 30ms, timeout: 200ms, healthy_threshold: 4, unhealthy_threshold: 3 }",
        ));
        let active_address = active.address;
        let checks = |result| gw.health_checks("venue", active_address, result);
        eventually("a first check passed", || checks("passed") >= 1.0).await;
        assert_eq!(
            gw.endpoint_metric("causeway_endpoint_healthy", "venue", active.address),
            1.0
        );

        let failures_before = checks("failed");
        active.stop().await;
        gw.wait_health("venue", active.address, false).await;
        let failed = checks("failed") - failures_before;
        assert!(failed >= 3.0, "unhealthy only after 3 failed checks, saw {failed}");

        let passed_before = checks("passed");
        active.resume().await;
        gw.wait_health("venue", active.address, true).await;
        let passed = checks("passed") - passed_before;
        assert!(passed >= 4.0, "healthy only after 4 passed checks, saw {passed}");
    })
    .await
}

/// docs/clusters.md: "A passed health check ends an ejection early." The active goes down
/// for 2 s while clients keep connecting: its connect failures eject it (5 in a row, for the
/// default 30 s), while the health checker, whose threshold is not reached in 2 s, never
/// marks it unhealthy — so there is no unhealthy→healthy transition to end the ejection.
/// Once the active is back, its first passing check must end the ejection: new connections
/// return to it within one check interval (+ 1 s), not after 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_health_check_ends_a_passive_ejection() {
    bounded(async {
        use std::time::Duration;
        use tokio::time::Instant;
        let mut active = Backend::echo("active").await;
        let standby = Backend::echo("standby").await;
        let interval = Duration::from_millis(500);
        let gw = TestGateway::start(&active_standby(
            &active.address.to_string(),
            &standby.address.to_string(),
            "health_check: { interval: 500ms, timeout: 200ms, healthy_threshold: 2, unhealthy_threshold: 10 }",
        ));
        let address = gw.address("fix");
        let active_address = active.address;
        let metric = |name: &str| gw.endpoint_metric(name, "venue", active_address);
        let (_first, name) = Client::greeted(address).await;
        assert_eq!(name, "active");

        // Down for 2 s; a client connects every 100 ms meanwhile.
        active.stop().await;
        let down = Instant::now();
        let mut pace = tokio::time::interval(Duration::from_millis(100));
        while down.elapsed() < Duration::from_secs(2) {
            pace.tick().await;
            let (_client, name) = Client::greeted(address).await;
            assert_eq!(name, "standby");
        }
        // Out of service while the health checker never changed its mind: ejected.
        assert_eq!(
            metric("causeway_endpoint_healthy"),
            0.0,
            "the connect failures ejected the active"
        );
        assert_eq!(metric("causeway_endpoint_ejections_total"), 1.0);
        assert_eq!(
            metric("causeway_endpoint_connect_failures_total"),
            5.0,
            "tried until ejected, then skipped"
        );
        assert_eq!(
            metric("causeway_endpoint_health_transitions_total"),
            0.0,
            "fewer than 10 failed checks in 2 s: the health checker still says healthy"
        );

        // Back: within one check interval + 1 s, new connections are on the active again.
        active.resume().await;
        let back = Instant::now();
        let deadline = back + interval + Duration::from_secs(1);
        loop {
            let (_client, name) = Client::greeted(address).await;
            if name == "active" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "new connections still go to the standby {:?} after the active came back \
                 (causeway_endpoint_healthy: {}; health checks passed in all: {})",
                back.elapsed(),
                metric("causeway_endpoint_healthy"),
                gw.health_checks("venue", active.address, "passed")
            );
            pace.tick().await;
        }
        assert_eq!(
            metric("causeway_endpoint_healthy"),
            1.0,
            "in service: no longer ejected"
        );
        assert_eq!(
            metric("causeway_endpoint_health_transitions_total"),
            0.0,
            "the health checker never changed its mind: the passed check alone ended it"
        );
    })
    .await
}

/// A server whose accept queue is full drops our SYN: the connect hangs until
/// `connect_timeout`, then the next endpoint is tried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_moves_on_to_the_next_endpoint() {
    bounded(async {
        let alive = Backend::echo("alive").await;
        let (blackhole, _queued) = full_accept_queue();
        let yaml = active_standby(
            &blackhole.to_string(),
            &alive.address.to_string(),
            "connect_timeout: 200ms",
        );
        let gw = TestGateway::start(&yaml);
        let started = tokio::time::Instant::now();
        let (_client, name) = Client::greeted(gw.address("fix")).await;
        assert_eq!(name, "alive");
        assert!(started.elapsed() >= std::time::Duration::from_millis(200));
        assert_eq!(
            gw.endpoint_metric(
                "causeway_endpoint_connect_failures_total",
                "venue",
                blackhole
            ),
            1.0
        );
    })
    .await
}

/// A listening socket with a backlog of 0 that never accepts, filled until a connect no
/// longer completes. Returns its address and the connections that fill it.
fn full_accept_queue() -> (
    std::net::SocketAddr,
    (socket2::Socket, Vec<socket2::Socket>),
) {
    use socket2::{Domain, Socket, Type};
    use std::time::Duration;
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap();
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    for _ in 0..64 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        if s.connect_timeout(&address.into(), Duration::from_millis(100))
            .is_err()
        {
            return (address, (listener, queued));
        }
        queued.push(s);
    }
    panic!("the accept queue never filled");
}
