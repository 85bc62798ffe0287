use std::collections::HashMap;
use testkit::{Backend, Client, TestGateway, bounded, eventually};

fn cluster_yaml(policy: &str, backends: &[&Backend]) -> String {
    let endpoints: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address: \"{}\" }}", b.address))
        .collect();
    format!(
        r#"
listeners:
  - name: lb
    address: 127.0.0.1:0
    routes: [{{ cluster: pool }}]
clusters:
  - name: pool
    load_balancing: {policy}
    endpoints: [{}]
"#,
        endpoints.join(", ")
    )
}

async fn spread(gw: &TestGateway, connections: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..connections {
        let (_client, name) = Client::greeted(gw.address("lb")).await;
        *seen.entry(name).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly() {
    bounded(async {
        let (a, b, c) = (
            Backend::echo("a").await,
            Backend::echo("b").await,
            Backend::echo("c").await,
        );
        let gw = TestGateway::start(&cluster_yaml("round_robin", &[&a, &b, &c]));
        let seen = spread(&gw, 9).await;
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen.values().all(|&n| n == 3), "{seen:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reaches_every_endpoint() {
    bounded(async {
        let (a, b, c) = (
            Backend::echo("a").await,
            Backend::echo("b").await,
            Backend::echo("c").await,
        );
        let gw = TestGateway::start(&cluster_yaml("random", &[&a, &b, &c]));
        let seen = spread(&gw, 60).await;
        assert_eq!(seen.len(), 3, "{seen:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_prefers_the_emptier_endpoint() {
    bounded(async {
        let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
        let gw = TestGateway::start(&cluster_yaml("least_connections", &[&a, &b]));
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(Client::greeted(gw.address("lb")).await);
        }
        let on_a = clients.iter().filter(|(_, n)| n == "a").count();
        assert_eq!(on_a, 2, "four connections split two and two");

        // Empty `a`; the next two connections must both go there (round-robin would split).
        clients.retain(|(_, n)| n != "a");
        eventually("a's connections are released", || {
            gw.endpoint_metric("causeway_endpoint_connections_active", "pool", a.address) == 0.0
        })
        .await;
        for _ in 0..2 {
            let (client, name) = Client::greeted(gw.address("lb")).await;
            assert_eq!(name, "a");
            clients.push((client, name));
        }
    })
    .await
}
