//! The admin API of a real `causeway run` process, over real HTTP.

use crate::cli::Process;
use std::net::SocketAddr;
use testkit::{Backend, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.0 request as an operator's tool sends it (`POST` with the `Causeway-Admin`
/// header); returns the status code and the body.
pub(crate) async fn http(admin: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let control = match method {
        "POST" => "Causeway-Admin: yes\r\n",
        _ => "",
    };
    http_with(admin, method, path, &format!("Host: {admin}\r\n{control}")).await
}

/// One HTTP/1.0 request with exactly the `headers` given (each line ending in CRLF).
pub(crate) async fn http_with(
    admin: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(admin)
        .await
        .expect("admin API reachable");
    let request = format!("{method} {path} HTTP/1.0\r\n{headers}Content-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub(crate) fn admin_address(gw: &mut Process) -> SocketAddr {
    tokio::task::block_in_place(|| gw.wait_for_address("admin API ready"))
}

fn yaml(backend: &Backend, cluster: &str) -> String {
    format!(
        "admin: {{ address: 127.0.0.1:0 }}\nlisteners:\n  - name: front\n    address: 127.0.0.1:0\n    routes: [{{ name: main, cluster: {cluster} }}]\nclusters:\n  - {{ name: {cluster}, endpoints: [{{ address: \"{}\" }}] }}\n",
        backend.address
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shows_readiness_config_clusters_and_connections() {
    testkit::bounded(async {
        let echo = Backend::echo("echo").await;
        let mut gw = Process::start(&yaml(&echo, "backend"));
        let admin = admin_address(&mut gw);

        assert_eq!(http(admin, "GET", "/ready").await, (200, "ready\n".into()));
        assert_eq!(http(admin, "GET", "/live").await.0, 200);

        let (mut client, _) = Client::greeted(gw.address).await;
        client.assert_echo("hello").await;
        let (status, body) = http(admin, "GET", "/connections").await;
        assert_eq!(status, 200);
        let list: serde_json::Value = serde_json::from_str(&body).unwrap();
        let first = &list[0];
        assert_eq!(first["listener"], "front");
        assert_eq!(first["route"], "main");
        assert_eq!(first["cluster"], "backend");
        assert_eq!(first["endpoint"], echo.address.to_string());
        assert_eq!(first["bytes_upstream"], 6, "{first}");
        assert_eq!(first["bytes_downstream"], 11, "greeting and echo: {first}");

        let clusters: serde_json::Value =
            serde_json::from_str(&http(admin, "GET", "/clusters").await.1).unwrap();
        assert_eq!(clusters[0]["name"], "backend");
        assert_eq!(clusters[0]["endpoints"][0]["healthy"], true);
        assert_eq!(clusters[0]["endpoints"][0]["active_connections"], 1);

        let config: serde_json::Value =
            serde_json::from_str(&http(admin, "GET", "/config").await.1).unwrap();
        assert_eq!(config["listeners"][0]["name"], "front");
        assert_eq!(config["drain"]["timeout"], "30s");

        assert_eq!(http(admin, "GET", "/nothing-here").await.0, 404);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_applies_a_valid_file_and_refuses_an_invalid_one() {
    testkit::bounded(async {
        let (a, b) = (Backend::echo("a").await, Backend::echo("b").await);
        let mut gw = Process::start(&yaml(&a, "one"));
        let admin = admin_address(&mut gw);
        let path = gw._config.as_ref().unwrap().path().to_path_buf();

        std::fs::write(&path, "listeners: [").unwrap();
        let (status, body) = http(admin, "POST", "/reload").await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("error"), "{body}");
        assert_eq!(
            Client::greeted(gw.address).await.1,
            "a",
            "the old configuration still serves"
        );

        std::fs::write(&path, yaml(&b, "two")).unwrap();
        let (status, body) = http(admin, "POST", "/reload").await;
        assert_eq!(status, 200, "{body}");
        let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(summary["clusters_added"][0], "two");
        assert_eq!(summary["listeners_updated"][0], "front");
        assert_eq!(Client::greeted(gw.address).await.1, "b");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_drain_turns_ready_to_503_and_ends_the_process() {
    testkit::bounded(async {
        let echo = Backend::echo("echo").await;
        let mut gw = Process::start(&yaml(&echo, "backend"));
        let admin = admin_address(&mut gw);
        let (mut live, _) = Client::greeted(gw.address).await;

        assert_eq!(http(admin, "POST", "/drain").await.0, 202);
        assert_eq!(
            http(admin, "GET", "/ready").await,
            (503, "draining\n".into())
        );
        live.assert_echo("still served while draining").await;
        drop(live);
        let status = tokio::task::block_in_place(|| gw.wait_exit());
        assert!(status.success(), "{status:?}");
    })
    .await
}

/// What a web page in an operator's browser could send is refused: a rebound DNS name in
/// `Host`, a cross-site request (with `Origin`), a `POST` without the `Causeway-Admin`
/// header. `GET /config` shows no header or TLV value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_web_page_could_make_are_refused() {
    testkit::bounded(async {
        let echo = Backend::echo("echo").await;
        let secret = "Bearer s3cr3t-token";
        let yaml = yaml(&echo, "backend").replace(
            "endpoints:",
            &format!("proxy_protocol: {{ version: 2, tlvs: [{{ type: 0xE0, value: tlv-s3cr3t }}] }}, tunnel: {{ authority: \"x:1\", headers: [{{ name: authorization, value: \"{secret}\" }}] }}, endpoints:"),
        );
        let mut gw = Process::start(&yaml);
        let admin = admin_address(&mut gw);
        let host = format!("Host: {admin}\r\n");

        let rebound = http_with(admin, "GET", "/config", "Host: evil.example:9901\r\n").await;
        assert_eq!(rebound.0, 403, "{rebound:?}");
        let origin = format!("{host}Origin: http://evil.example\r\nCauseway-Admin: yes\r\n");
        assert_eq!(http_with(admin, "POST", "/drain", &origin).await.0, 403);
        assert_eq!(http_with(admin, "POST", "/drain", &host).await.0, 403, "no control header");
        assert_eq!(http(admin, "GET", "/ready").await, (200, "ready\n".into()), "not draining");

        let (status, body) = http(admin, "GET", "/config").await;
        assert_eq!(status, 200);
        assert!(!body.contains("s3cr3t"), "{body}");
        assert!(body.contains("authorization") && body.contains("<redacted>"), "{body}");
    })
    .await
}

/// `POST /logging?level=debug` turns on debug lines while the gateway runs (Envoy's
/// `/logging`); a filter that does not parse is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_changes_while_running() {
    testkit::bounded(async {
        let echo = Backend::echo("echo").await;
        let mut gw = Process::start(&yaml(&echo, "backend"));
        let admin = admin_address(&mut gw);
        let (status, body) = http(admin, "POST", "/logging?level=causeway%3D%3D").await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = http(admin, "POST", "/logging?level=debug").await;
        assert_eq!((status, body.as_str()), (200, "log level: debug\n"));
        let (mut client, _) = Client::greeted(gw.address).await;
        client.assert_echo("hello").await;
        let line = tokio::task::block_in_place(|| gw.wait_for("connected upstream"));
        assert!(line.contains("DEBUG"), "{line}");
    })
    .await
}
