//! Metrics: /metrics parses as Prometheus text and counts what happened; statsd lines reach
//! a UDP socket.

use crate::admin::{admin_address, http};
use crate::cli::Process;
use testkit::{Backend, Client};

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

async fn scrape(admin: std::net::SocketAddr) -> prometheus_parse::Scrape {
    let (status, body) = http(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text exposition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counts_match_what_happened() {
    testkit::bounded(async {
        let echo = Backend::echo("echo").await;
        let dead = testkit::closed_port();
        let strict = testkit::closed_port();
        let yaml = format!(
            r#"admin: {{ address: 127.0.0.1:0 }}
listeners:
  - name: front
    address: 127.0.0.1:0
    routes:
      - {{ name: loopback, match: {{ source_cidrs: [127.0.0.0/8] }}, cluster: backend }}
  - name: strict
    address: "{strict}"
    routes:
      - {{ name: nobody, match: {{ source_cidrs: [192.0.2.0/24] }}, cluster: backend }}
clusters:
  - name: backend
    passive_ejection: {{ consecutive_failures: 0 }}
    endpoints:
      - {{ address: "{dead}" }}
      - {{ address: "{}", priority: 1 }}
"#,
            echo.address
        );
        let mut gw = Process::start(&yaml);
        let admin = admin_address(&mut gw);
        let mut held = Vec::new();
        for _ in 0..3 {
            let (mut c, _) = Client::greeted(gw.address).await;
            c.assert_echo("12345").await;
            held.push(c);
        }
        for _ in 0..2 {
            assert!(Client::connect(strict).await.is_closed().await);
        }

        let s = scrape(admin).await;
        let front = [("listener", "front")];
        assert_eq!(
            value(&s, "causeway_listener_connections_accepted_total", &front),
            3.0
        );
        assert_eq!(
            value(&s, "causeway_listener_connections_active", &front),
            3.0
        );
        assert_eq!(
            value(
                &s,
                "causeway_route_connections_total",
                &[("route", "loopback")]
            ),
            3.0
        );
        assert_eq!(
            value(
                &s,
                "causeway_listener_connections_rejected_total",
                &[("listener", "strict"), ("reason", "no_route")]
            ),
            2.0
        );
        let standby = echo.address.to_string();
        let on_standby = [("cluster", "backend"), ("endpoint", standby.as_str())];
        assert_eq!(
            value(&s, "causeway_endpoint_connections_active", &on_standby),
            3.0
        );
        let dead = dead.to_string();
        let on_dead = [("cluster", "backend"), ("endpoint", dead.as_str())];
        assert_eq!(
            value(&s, "causeway_endpoint_connect_failures_total", &on_dead),
            3.0
        );
        // Each client sent "12345\n" and got its greeting ("echo\n") and the echo back.
        let up = [("endpoint", standby.as_str()), ("direction", "upstream")];
        assert_eq!(value(&s, "causeway_endpoint_bytes_total", &up), 18.0);
        let down = [("endpoint", standby.as_str()), ("direction", "downstream")];
        assert_eq!(value(&s, "causeway_endpoint_bytes_total", &down), 33.0);

        // Closing keeps the byte totals (moved from the live connections to the endpoint).
        drop(held);
        let mut settled = false;
        for _ in 0..200 {
            let s = scrape(admin).await;
            if value(&s, "causeway_endpoint_connections_active", &on_standby) == 0.0 {
                assert_eq!(value(&s, "causeway_endpoint_bytes_total", &up), 18.0);
                assert_eq!(value(&s, "causeway_endpoint_bytes_total", &down), 33.0);
                settled = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(settled, "connections never closed");
        assert_eq!(
            value(
                &scrape(admin).await,
                "causeway_reloads_total",
                &[("result", "ok")]
            ),
            0.0
        );
    })
    .await
}

/// Receives statsd datagrams until `done` holds for the lines seen; every line must parse
/// as `NAME:VALUE|TYPE[|#TAGS]` with a number and a known type.
pub(crate) async fn statsd_until(
    socket: &tokio::net::UdpSocket,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while !done(&seen) {
        let n = socket.recv(&mut buf).await.unwrap();
        assert!(n <= 1432, "a datagram fits the MTU: {n} bytes");
        for line in String::from_utf8_lossy(&buf[..n]).lines() {
            // Names never hold `:` (tag values may, after the `|#`).
            let (name, rest) = line.split_once(':').unwrap_or((line, ""));
            let mut parts = rest.split('|');
            let value = parts.next().unwrap_or_default();
            let kind = parts.next().unwrap_or_default();
            assert!(!name.is_empty() && !name.contains(' '), "{line}");
            assert!(value.parse::<f64>().is_ok(), "a number: {line}");
            assert!(kind == "c" || kind == "g", "a counter or gauge: {line}");
            seen.push(line.to_string());
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsd_lines_reach_a_udp_socket() {
    testkit::bounded(async {
        let statsd = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo = Backend::echo("echo").await;
        let yaml = format!(
            "admin: {{ enabled: false }}\nmetrics:\n  statsd: {{ address: \"{}\", prefix: gw, flush_interval: 100ms }}\nlisteners:\n  - name: front\n    address: 127.0.0.1:0\n    routes: [{{ cluster: backend }}]\nclusters:\n  - {{ name: backend, endpoints: [{{ address: \"{}\" }}] }}\n",
            statsd.local_addr().unwrap(),
            echo.address
        );
        let gw = Process::start(&yaml);
        let (_client, _) = Client::greeted(gw.address).await;
        let has = |seen: &[String], line: &str| seen.iter().any(|l| l.starts_with(line));
        let seen = statsd_until(&statsd, |seen| {
            has(seen, "gw.listener_connections_accepted_total:1|c|#listener:front")
                && has(seen, "gw.endpoint_connections_active:1|g|#cluster:backend,endpoint:")
        })
        .await;
        assert!(!seen.iter().any(|l| l.contains("causeway_")), "no stutter: {seen:?}");
    })
    .await
}

/// Plain statsd (labels folded into dotted names, as Envoy names its stats) to an IPv6
/// statsd address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_statsd_to_an_ipv6_address() {
    testkit::bounded(async {
        let statsd = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
        let echo = Backend::echo("echo").await;
        let yaml = format!(
            "admin: {{ enabled: false }}\nmetrics:\n  statsd: {{ address: \"{}\", mode: plain, flush_interval: 100ms }}\nlisteners:\n  - name: front\n    address: 127.0.0.1:0\n    routes: [{{ name: main, cluster: backend }}]\nclusters:\n  - {{ name: backend, endpoints: [{{ address: \"{}\" }}] }}\n",
            statsd.local_addr().unwrap(),
            echo.address
        );
        let gw = Process::start(&yaml);
        let (mut client, _) = Client::greeted(gw.address).await;
        client.assert_echo("counted").await;
        drop(client);
        let has = |seen: &[String], line: &str| seen.iter().any(|l| l == line);
        let seen = statsd_until(&statsd, |seen| {
            has(seen, "causeway.listener.front.connections_accepted_total:1|c")
                && has(seen, "causeway.connection.front.main.duration_seconds_count:1|c")
        })
        .await;
        assert!(!seen.iter().any(|l| l.contains("|#")), "no tags in plain mode: {seen:?}");
    })
    .await
}
