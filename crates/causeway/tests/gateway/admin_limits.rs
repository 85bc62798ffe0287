//! What a peer can make the admin listeners hold: at most 64 connections each (more are
//! closed at once and counted), headers within 5 s; and the control API's unix socket,
//! which never takes over a live gateway's socket nor sits in a directory others can write.

use crate::admin::{admin_address, http};
use crate::admin_split::{probes_address, yaml};
use crate::cli::Process;
use std::time::{Duration, Instant};
use testkit::Backend;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Polls `condition` (an admin request) until it holds, for at most 5 s.
async fn until<F, Fut>(what: &str, condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_listener_holds_64_connections_and_5_seconds_of_silence() {
    testkit::bounded(async {
        let echo = Backend::echo("echo").await;
        let mut gw = Process::start(&yaml(&echo, "address: 127.0.0.1:0, probes: 127.0.0.1:0"));
        let control = admin_address(&mut gw);
        let probes = probes_address(&mut gw);
        let opened = Instant::now();
        let mut silent = Vec::new();
        for _ in 0..admin::MAX_CONNECTIONS {
            silent.push(TcpStream::connect(probes).await.unwrap());
        }
        // Each is admitted when the accept loop takes it: wait until all 64 are.
        until("64 are open", || async {
            http(control, "GET", "/metrics")
                .await
                .1
                .contains("causeway_admin_connections_active{listener=\"probes\"} 64")
        })
        .await;
        let mut one_too_many = TcpStream::connect(probes).await.unwrap();
        assert!(
            closed_within(&mut one_too_many, Duration::from_secs(1)).await,
            "the 65th connection is closed at once"
        );
        let metrics = http(control, "GET", "/metrics").await.1;
        assert!(
            metrics.contains("causeway_admin_connections_refused_total{listener=\"probes\"} 1"),
            "{metrics}"
        );
        assert_eq!(
            http(control, "GET", "/ready").await.0,
            200,
            "the control API has its own slots"
        );

        assert!(
            closed_within(&mut silent[0], Duration::from_secs(8)).await,
            "silence is closed"
        );
        let after = opened.elapsed();
        assert!(
            after >= admin::HEADER_TIMEOUT - Duration::from_millis(500),
            "closed after {after:?}"
        );
        drop(silent);
        until("the probes answer again", || async {
            http(probes, "GET", "/ready").await.0 == 200
        })
        .await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unix_socket_is_never_taken_from_a_live_gateway_nor_put_where_others_write() {
    testkit::bounded(async {
        use std::os::unix::fs::PermissionsExt;
        let echo = Backend::echo("echo").await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let socket = dir.path().join("admin.sock");
        let config = yaml(&echo, &format!("address: \"unix:{}\"", socket.display()));
        let mut first = Process::start(&config);
        tokio::task::block_in_place(|| first.wait_for("admin API ready"));

        let mut second = Process::start(&config);
        let line = tokio::task::block_in_place(|| second.wait_for("cannot listen on unix:"));
        assert!(
            line.contains("another process is listening on it"),
            "{line}"
        );
        assert!(
            tokio::net::UnixStream::connect(&socket).await.is_ok(),
            "the first still serves"
        );

        // Killed: its socket file stays behind, and the next start replaces it.
        first.signal(libc::SIGKILL);
        tokio::task::block_in_place(|| first.wait_exit());
        let mut third = Process::start(&config);
        tokio::task::block_in_place(|| third.wait_for("admin API ready"));

        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let exposed = open.path().join("admin.sock");
        let mut fourth = Process::start(&yaml(
            &echo,
            &format!("address: \"unix:{}\"", exposed.display()),
        ));
        let line = tokio::task::block_in_place(|| fourth.wait_for("cannot listen on unix:"));
        assert!(line.contains("is writable by group or others"), "{line}");
    })
    .await
}
