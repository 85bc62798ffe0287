//! The access log: a JSON line per connection at close, and lines for connections still open.

use testkit::{Backend, Client, TestGateway, bounded, eventually};

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_lines_and_periodic_lines_for_open_connections() {
    bounded(async {
        let echo = Backend::echo("echo").await;
        let path = std::env::temp_dir().join(format!("causeway-access-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let gw = TestGateway::start(&format!(
            r#"
access_log: {{ path: "{}", open_connections_interval: 200ms }}
listeners:
  - name: front
    address: 127.0.0.1:0
    routes:
      - {{ name: main, match: {{ destination_ports: [1] }}, cluster: backend }}
  - name: other
    address: 127.0.0.1:0
    routes: [{{ name: any, cluster: backend }}]
clusters:
  - {{ name: backend, endpoints: [{{ address: "{}" }}] }}
"#,
            path.display(),
            echo.address
        ));

        // No route: closed at once, logged with its reason.
        assert!(Client::connect(gw.address("front")).await.is_closed().await);
        // A connection held across two intervals, then closed by the client.
        let (mut held, _) = Client::greeted(gw.address("other")).await;
        held.assert_echo("hello").await;
        eventually("two periodic lines for the open connection", || {
            lines(&path).iter().filter(|l| l["event"] == "open").count() >= 2
        })
        .await;
        drop(held);
        eventually("its close line", || {
            lines(&path)
                .iter()
                .any(|l| l["event"] == "close" && l["listener"] == "other")
        })
        .await;

        let all = lines(&path);
        let refused = all.iter().find(|l| l["listener"] == "front").unwrap();
        assert_eq!(refused["event"], "close");
        assert_eq!(refused["reason"], "no_route");
        assert_eq!(refused["side"], "internal");
        assert!(refused["route"].is_null());

        let open = all.iter().find(|l| l["event"] == "open").unwrap();
        let closed = all
            .iter()
            .find(|l| l["event"] == "close" && l["listener"] == "other")
            .unwrap();
        assert_eq!(open["id"], closed["id"]);
        for field in ["time", "start_time", "duration_ms", "source", "destination"] {
            assert!(!closed[field].is_null(), "{field} in {closed}");
        }
        assert_eq!(closed["route"], "any");
        assert_eq!(closed["cluster"], "backend");
        assert_eq!(closed["endpoint"], echo.address.to_string());
        assert_eq!(closed["bytes_upstream"], 6);
        assert_eq!(closed["bytes_downstream"], 11);
        assert_eq!(closed["reason"], "closed");
        assert!(closed["side"].is_null());
        let _ = std::fs::remove_file(&path);
    })
    .await
}
