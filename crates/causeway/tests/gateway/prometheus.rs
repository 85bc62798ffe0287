//! A real Prometheus server (Debian's `prometheus`) scrapes a real `causeway run`: the
//! target is up, and PromQL over Causeway's histograms and counters answers.

use crate::admin::{admin_address, http};
use crate::cli::Process;
use std::time::Duration;
use testkit::{Backend, Client, closed_port};

/// A PromQL instant query's first value; `None` while the result is empty (or NaN), or
/// while Prometheus starts.
async fn query(prometheus: std::net::SocketAddr, promql: &str) -> Option<f64> {
    let (status, body) = http(
        prometheus,
        "GET",
        &format!("/api/v1/query?query={}", encode(promql)),
    )
    .await;
    if status == 503 {
        return None; // accepting connections, not yet ready to answer
    }
    assert_eq!(status, 200, "{promql}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let value = answer["data"]["result"][0]["value"][1].as_str()?;
    value.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Asks `promql` every 200 ms until it answers (at most 20 s: a few scrapes).
async fn answered(prometheus: std::net::SocketAddr, promql: &str) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = query(prometheus, promql).await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer to {promql}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_and_queries_histograms_and_counters() {
    testkit::bounded(async {
        let backend = Backend::echo("b").await;
        let mut gw = Process::start(&format!(
            "admin: {{ address: 127.0.0.1:0 }}\nlisteners:\n  - name: front\n    address: 127.0.0.1:0\n    routes: [{{ name: main, cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            backend.address
        ));
        let admin = admin_address(&mut gw);
        for i in 0..3 {
            let (mut client, _) = Client::greeted(gw.address).await;
            client.assert_echo(&format!("scraped {i}")).await;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global: {{ scrape_interval: 1s }}\nscrape_configs:\n  - job_name: causeway\n    static_configs: [{{ targets: [\"{admin}\"] }}]\n"),
        )
        .unwrap();
        let listen = closed_port();
        let _prometheus = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus is installed (scripts/test installs it)");
        testkit::accepting(listen, Duration::from_secs(20), "Prometheus").await;
        assert_eq!(answered(listen, "up{job=\"causeway\"}").await, 1.0, "the target is up");
        let connections = answered(listen, "causeway_route_connections_total{route=\"main\"}").await;
        assert_eq!(connections, 3.0);
        let closed = "sum(causeway_connections_closed_total{route=\"main\"})";
        assert_eq!(answered(listen, closed).await, 3.0);
        let median = "histogram_quantile(0.5, sum by (le) (causeway_connection_duration_seconds_bucket{route=\"main\"}))";
        let lived = answered(listen, median).await;
        assert!(lived > 0.0 && lived <= 1.0, "the connections lived well under a second: {lived}");
        let connect = "histogram_quantile(0.99, sum by (le) (causeway_upstream_connect_duration_seconds_bucket))";
        assert!(answered(listen, connect).await <= 0.0005 * 2.0 + 0.1);
        assert!(answered(listen, "process_cpu_seconds_total").await > 0.0);
        // Every dashboard query and alert expression runs on this Prometheus, and names
        // only documented metrics.
        for expr in observability_queries() {
            let (status, body) = http(listen, "GET", &format!("/api/v1/query?query={}", encode(&expr))).await;
            assert_eq!(status, 200, "{expr}: {body}");
            assert_documented(&expr);
        }
    })
    .await
}

fn encode(promql: &str) -> String {
    (promql.bytes())
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap()
}

/// The PromQL of deploy/observability: the dashboard's targets (Grafana's variables given
/// values) and the alert rules' expressions.
fn observability_queries() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("deploy/observability/dashboard.json")).unwrap();
    let mut queries: Vec<String> = (dashboard["panels"].as_array().unwrap().iter())
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
        })
        .collect();
    let alerts = repo_file("deploy/observability/alerts.yaml");
    queries.extend(
        (alerts.lines())
            .filter_map(|l| l.trim().strip_prefix("expr: "))
            .map(str::to_string),
    );
    assert!(queries.len() > 25, "{queries:?}");
    queries
}

/// Every metric `expr` names is a family in docs/metrics.md (a histogram's `_bucket` by its
/// family).
fn assert_documented(expr: &str) {
    let page = repo_file("docs/metrics.md");
    let names = expr
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("causeway_") || w.starts_with("process_"));
    for name in names {
        let family = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(
            page.contains(&format!("`{family}`")),
            "{name} in {expr} is not in docs/metrics.md"
        );
    }
}
