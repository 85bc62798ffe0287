//! The admin split of a real `causeway run` process: a read-only probe listener that may
//! face the network, a control API on loopback, a unix socket, or behind a bearer token;
//! closing one connection by id.

use crate::admin::{admin_address, http, http_with};
use crate::cli::Process;
use std::net::SocketAddr;
use testkit::{Backend, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) fn yaml(backend: &Backend, admin: &str) -> String {
    format!(
        "admin: {{ {admin} }}\nlisteners:\n  - name: front\n    address: 127.0.0.1:0\n    routes: [{{ name: main, cluster: backend }}]\nclusters:\n  - {{ name: backend, endpoints: [{{ address: \"{}\" }}] }}\n",
        backend.address
    )
}

/// The headers of the answer to `GET path`, lowercased.
async fn response_head(address: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let head = response.split_once("\r\n\r\n").map_or("", |(h, _)| h);
    head.to_lowercase()
}

pub(crate) fn probes_address(gw: &mut Process) -> SocketAddr {
    tokio::task::block_in_place(|| gw.wait_for_address("probe listener ready"))
}

/// The probe listener answers `/`, `/status.json`, `/ready`, `/live` and `/metrics`, and
/// nothing that reads secrets or changes the gateway: not even with every header a tool
/// would send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_listener_is_read_only() {
    testkit::bounded(async {
        let echo = Backend::echo("echo").await;
        let mut gw = Process::start(&yaml(&echo, "address: 127.0.0.1:0, probes: 127.0.0.1:0"));
        let control = admin_address(&mut gw);
        let probes = probes_address(&mut gw);
        assert_ne!(control, probes);

        assert_eq!(http(probes, "GET", "/ready").await, (200, "ready\n".into()));
        assert_eq!(http(probes, "GET", "/live").await.0, 200);
        let (status, metrics) = http(probes, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert!(metrics.contains("causeway_reloads_total"), "{metrics}");
        let (status, page) = http(probes, "GET", "/").await;
        assert_eq!(status, 200);
        assert!(page.contains("<title>Causeway status</title>"), "{page}");
        let (mut client, _) = Client::greeted(gw.address).await;
        client.assert_echo("hello").await;
        let (status, body) = http(probes, "GET", "/status.json").await;
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["listeners"][0]["routes"][0]["cluster"], "backend");
        let oldest = &json["longest_lived"][0];
        assert_eq!(oldest["bytes_upstream"], 6, "{json}");
        // Nothing a client told the gateway reaches the network-facing listener.
        assert!(oldest.get("source").is_none(), "{oldest}");
        let (_, full) = http(control, "GET", "/status.json").await;
        let full: serde_json::Value = serde_json::from_str(&full).unwrap();
        let source = full["longest_lived"][0]["source"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            !body.contains(&source),
            "no client address on the probes: {body}"
        );
        assert!(
            source.starts_with("127.0.0.1:"),
            "operators see who: {full}"
        );
        let (_, page) = http(probes, "GET", "/").await;
        let headers = response_head(probes, "/").await;
        assert!(
            headers.contains("content-security-policy: default-src 'none'"),
            "{headers}"
        );
        assert!(
            page.contains("<script src=\"status.js\"></script>"),
            "{page}"
        );

        for path in ["/config", "/connections", "/clusters"] {
            assert_eq!(http(probes, "GET", path).await.0, 404, "{path}");
        }
        for path in [
            "/drain",
            "/reload",
            "/logging?level=debug",
            "/connections/1/close",
        ] {
            let (status, _) = http(probes, "POST", path).await;
            assert!(status == 404 || status == 405, "POST {path}: {status}");
        }
        client.assert_echo("still served").await;
        assert_eq!(http(probes, "GET", "/ready").await.0, 200, "not draining");
        assert_eq!(http(control, "GET", "/config").await.0, 200);
    })
    .await
}

/// With `token_file`, every control request needs `Authorization: Bearer <token>`; a
/// missing or wrong token is refused before anything runs, and a right one works from any
/// Host (a rebinding page cannot know the token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_off_loopback_needs_the_bearer_token() {
    testkit::bounded(async {
        let echo = Backend::echo("echo").await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "0123456789abcdef-secret\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut gw = Process::start(&yaml(
            &echo,
            &format!("address: 127.0.0.1:0, token_file: {}", token_file.display()),
        ));
        let admin = admin_address(&mut gw);
        let host = format!("Host: {admin}\r\nCauseway-Admin: yes\r\n");

        let lower = "Authorization: bearer 0123456789abcdef-secret\r\n";
        let with_token = |extra: &str| format!("Host: {admin}\r\n{lower}{extra}");
        assert_eq!(
            http_with(admin, "POST", "/drain", &with_token("")).await.0,
            403,
            "a POST still needs Causeway-Admin with a token"
        );
        let origin = with_token("Origin: http://evil.example\r\nCauseway-Admin: yes\r\n");
        assert_eq!(
            http_with(admin, "POST", "/drain", &origin).await.0,
            403,
            "Origin is refused with a token"
        );
        for auth in [
            "",
            "Authorization: Bearer wrong\r\n",
            "Authorization: Bearer 0123456789abcdef-secre\r\n",
            "Authorization: Bearer 0123456789abcdef-secret0\r\n",
        ] {
            let headers = format!("{host}{auth}");
            assert_eq!(
                http_with(admin, "GET", "/config", &headers).await.0,
                401,
                "{auth:?}"
            );
            assert_eq!(
                http_with(admin, "POST", "/drain", &headers).await.0,
                401,
                "{auth:?}"
            );
        }
        assert_eq!(
            http(admin, "GET", "/ready").await.0,
            401,
            "no token, no probe either"
        );
        let good =
            "Host: causeway.internal:9901\r\nAuthorization: Bearer 0123456789abcdef-secret\r\n";
        assert_eq!(http_with(admin, "GET", "/config", good).await.0, 200);
        assert_eq!(
            http_with(admin, "GET", "/ready", good).await,
            (200, "ready\n".into())
        );
        let metrics = http_with(admin, "GET", "/metrics", good).await.1;
        assert!(
            metrics.contains("causeway_admin_requests_refused_total{reason=\"token\"} 9"),
            "{metrics}"
        );

        // A token file others may read is refused, before anything listens.
        let readable = dir.path().join("readable");
        std::fs::write(&readable, "0123456789abcdef-secret\n").unwrap();
        std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = dir.path().join("causeway.yaml");
        let admin = format!("address: 127.0.0.1:0, token_file: {}", readable.display());
        std::fs::write(&config, yaml(&echo, &admin)).unwrap();
        let out = std::process::Command::new(crate::cli::BIN)
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains("others may read or write it (mode 644)"),
            "{stderr}"
        );
    })
    .await
}

/// A control API on a unix socket: reachable through the file (mode 0660), answering as on
/// TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_listens_on_a_unix_socket() {
    testkit::bounded(async {
        let echo = Backend::echo("echo").await;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("admin.sock");
        let mut gw = Process::start(&yaml(
            &echo,
            &format!("address: \"unix:{}\"", socket.display()),
        ));
        tokio::task::block_in_place(|| gw.wait_for("admin API ready"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        stream
            .write_all(b"GET /clusters HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.0 200"), "{response}");
        assert!(response.contains("\"name\":\"backend\""), "{response}");
    })
    .await
}

/// `POST /connections/{id}/close` ends that connection and no other, through the one
/// ending: its close reason is `closed_by_operator` in the log and the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_closes_one_connection_by_id() {
    testkit::bounded(async {
        let echo = Backend::echo("echo").await;
        let mut gw = Process::start(&yaml(&echo, "address: 127.0.0.1:0"));
        let admin = admin_address(&mut gw);
        let (mut doomed, _) = Client::greeted(gw.address).await;
        doomed.assert_echo("one").await;
        let (mut kept, _) = Client::greeted(gw.address).await;
        kept.assert_echo("two").await;
        let list: serde_json::Value =
            serde_json::from_str(&http(admin, "GET", "/connections").await.1).unwrap();
        let id = list[0]["id"].as_u64().unwrap();

        assert_eq!(http(admin, "POST", "/connections/99999/close").await.0, 404);
        assert_eq!(http(admin, "POST", "/connections/x/close").await.0, 400);
        let host = format!("Host: {admin}\r\n");
        let no_header = http_with(admin, "POST", &format!("/connections/{id}/close"), &host).await;
        assert_eq!(no_header.0, 403, "a POST still needs Causeway-Admin");
        doomed.assert_echo("still open").await;

        let (status, body) = http(admin, "POST", &format!("/connections/{id}/close")).await;
        assert_eq!(status, 202, "{body}");
        assert!(doomed.is_closed().await);
        let line = tokio::task::block_in_place(|| gw.wait_for("closed_by_operator"));
        assert!(line.contains(&format!("id={id}")), "{line}");
        kept.assert_echo("the other stays").await;
        let (_, metrics) = http(admin, "GET", "/metrics").await;
        assert!(
            metrics.contains("causeway_connections_closed_total{listener=\"front\",route=\"main\",reason=\"closed_by_operator\"} 1"),
            "{metrics}"
        );
    })
    .await
}
