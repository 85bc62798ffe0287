use testkit::{Backend, Client, TestGateway, bounded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_destination_port_with_a_shared_route_table() {
    bounded(async {
        let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
        // Both listeners share one route table (a YAML anchor); the port decides.
        let first = testkit::closed_port();
        let yaml = format!(
            r#"
listeners:
  - name: first
    address: "{first}"
    routes: &routes
      - match: {{ destination_ports: [{port}] }}
        cluster: a
      - cluster: b
  - name: second
    address: 127.0.0.1:0
    routes: *routes
clusters:
  - {{ name: a, endpoints: [{{ address: "{a}" }}] }}
  - {{ name: b, endpoints: [{{ address: "{b}" }}] }}
"#,
            port = first.port(),
            a = a.address,
            b = b.address
        );
        let gw = TestGateway::start(&yaml);
        assert_eq!(Client::greeted(gw.address("first")).await.1, "a");
        assert_eq!(Client::greeted(gw.address("second")).await.1, "b");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_source_cidr_and_falls_back_to_the_default_route() {
    bounded(async {
        let (a, b, c) = (
            Backend::echo("a").await,
            Backend::echo("b").await,
            Backend::echo("c").await,
        );
        let yaml = format!(
            r#"
listeners:
  - name: ours
    address: 127.0.0.1:0
    routes:
      - name: partners
        match: {{ source_cidrs: [10.0.0.0/8, "2001:db8::/32"] }}
        cluster: a
      - name: loopback
        match: {{ source_cidrs: [127.0.0.0/8] }}
        cluster: b
      - name: default
        cluster: c
  - name: other
    address: 127.0.0.1:0
    routes:
      - match: {{ source_cidrs: [10.0.0.0/8] }}
        cluster: a
      - cluster: c
clusters:
  - {{ name: a, endpoints: [{{ address: "{}" }}] }}
  - {{ name: b, endpoints: [{{ address: "{}" }}] }}
  - {{ name: c, endpoints: [{{ address: "{}" }}] }}
"#,
            a.address, b.address, c.address
        );
        let gw = TestGateway::start(&yaml);
        let (mut client, name) = Client::greeted(gw.address("ours")).await;
        assert_eq!(name, "b", "127.0.0.1 matches the loopback route");
        client.assert_echo("hello").await;
        assert_eq!(
            Client::greeted(gw.address("other")).await.1,
            "c",
            "default route"
        );
        assert_eq!(a.accepted(), 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_matching_route_closes_the_connection_and_counts_it() {
    bounded(async {
        let a = Backend::echo("a").await;
        let yaml = format!(
            r#"
listeners:
  - name: strict
    address: 127.0.0.1:0
    routes:
      - match: {{ source_cidrs: [192.0.2.0/24] }}
        cluster: a
clusters:
  - {{ name: a, endpoints: [{{ address: "{}" }}] }}
"#,
            a.address
        );
        let gw = TestGateway::start(&yaml);
        let mut client = Client::connect(gw.address("strict")).await;
        assert!(client.is_closed().await);
        assert_eq!(gw.rejected("strict", "no_route"), 1.0);
        assert_eq!(a.accepted(), 0, "nothing was dialed");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_ipv6_loopback() {
    bounded(async {
        let a = Backend::echo("a").await;
        let yaml = format!(
            r#"
listeners:
  - name: v6
    address: "[::1]:0"
    routes: [{{ cluster: a }}]
clusters:
  - {{ name: a, endpoints: [{{ address: "{}" }}] }}
"#,
            a.address
        );
        let gw = TestGateway::start(&yaml);
        assert!(gw.address("v6").is_ipv6());
        let (mut client, name) = Client::greeted(gw.address("v6")).await;
        assert_eq!(name, "a");
        client.assert_echo("over ipv6").await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_accepts_and_closes_the_extra_connection() {
    bounded(async {
        let a = Backend::echo("a").await;
        let yaml = format!(
            r#"
listeners:
  - name: capped
    address: 127.0.0.1:0
    connection_limit: 2
    routes: [{{ cluster: a }}]
clusters:
  - {{ name: a, endpoints: [{{ address: "{}" }}] }}
"#,
            a.address
        );
        let gw = TestGateway::start(&yaml);
        let address = gw.address("capped");
        let (mut one, _) = Client::greeted(address).await;
        let (mut two, _) = Client::greeted(address).await;
        let mut three = Client::connect(address).await;
        assert!(
            three.is_closed().await,
            "third connection is over the limit"
        );
        assert_eq!(gw.rejected("capped", "connection_limit"), 1.0);
        one.assert_echo("still here").await;
        two.assert_echo("me too").await;

        drop(one);
        testkit::eventually("the closed connection is released", || {
            gw.metric(
                "causeway_listener_connections_active",
                &[("listener", "capped")],
            ) == 1.0
        })
        .await;
        let (mut four, _) = Client::greeted(address).await;
        four.assert_echo("room again").await;
        assert_eq!(a.accepted(), 3);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_port_lets_two_gateways_share_an_address() {
    bounded(async {
        let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
        let port = testkit::closed_port();
        let yaml = |backend: &Backend| {
            format!(
                r#"
listeners:
  - name: shared
    address: "{port}"
    reuse_port: true
    routes: [{{ cluster: c }}]
clusters:
  - {{ name: c, endpoints: [{{ address: "{}" }}] }}
"#,
                backend.address
            )
        };
        let first = TestGateway::start(&yaml(&a));
        let second = TestGateway::start(&yaml(&b));
        assert_eq!(first.address("shared"), second.address("shared"));
        // The kernel spreads connections over both; with the first gone, the second serves all.
        first.shutdown().await;
        for _ in 0..5 {
            assert_eq!(Client::greeted(port).await.1, "b");
        }
    })
    .await
}
