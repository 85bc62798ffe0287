//! The access log: a JSON line per connection at close, and lines for connections still open.

use std::os::unix::fs::OpenOptionsExt;
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

/// logrotate moves the file away and sends SIGUSR1 (`postrotate`): lines written before the
/// signal are in the moved file, lines after it in a new file at the configured path —
/// none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_reopens_the_file_logrotate_moved_away() {
    testkit::bounded(async {
        let echo = testkit::Backend::echo("e").await;
        let dir = tempfile::tempdir().unwrap();
        let (path, moved) = (dir.path().join("access.log"), dir.path().join("access.log.1"));
        let mut gw = crate::cli::Process::start(&format!(
            "admin: {{ enabled: false }}\naccess_log: {{ path: \"{}\" }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            path.display(),
            echo.address
        ));
        let one_connection = async |gw: &crate::cli::Process| {
            let (mut client, _) = testkit::Client::greeted(gw.address).await;
            client.assert_echo("hi").await;
        };
        one_connection(&gw).await;
        testkit::eventually("the first line", || lines(&path).len() == 1).await;
        std::fs::rename(&path, &moved).unwrap();
        one_connection(&gw).await;
        testkit::eventually("the second line, in the moved file", || lines(&moved).len() == 2).await;
        gw.signal(libc::SIGUSR1);
        tokio::task::block_in_place(|| gw.wait_for("access log reopened"));
        one_connection(&gw).await;
        testkit::eventually("the third line, in a new file", || lines(&path).len() == 1).await;
        assert_eq!(lines(&moved).len(), 2, "nothing more in the moved file");
    })
    .await
}

/// A disk that stops taking lines (here: a pipe nobody reads) never holds a connection up:
/// at most `max_queued_lines` wait, the rest are dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_log_drops_lines_instead_of_holding_connections() {
    testkit::bounded(async {
        let echo = testkit::Backend::echo("e").await;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stuck");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // A reader that never reads: the gateway's writes block once the pipe is full.
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let gw = testkit::TestGateway::start(&format!(
            "access_log: {{ path: \"{}\", max_queued_lines: 8 }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            fifo.display(),
            echo.address
        ));
        // A pipe holds 64 KiB: a few hundred lines, then 8 queued, then dropped.
        for _ in 0..400 {
            let (mut client, _) = testkit::Client::greeted(gw.address("l")).await;
            client.assert_echo("still served").await;
        }
        testkit::eventually("lines dropped and counted", || {
            gw.metric("causeway_access_log_dropped_total", &[]) > 0.0
        })
        .await;
    })
    .await
}

/// A full disk (here /dev/full: every write fails with ENOSPC) loses the log's lines, counted
/// and logged, and nothing else: connections go on being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_loses_lines_counted_and_connections_go_on() {
    testkit::bounded(async {
        let echo = testkit::Backend::echo("e").await;
        let gw = testkit::TestGateway::start(&format!(
            "access_log: {{ path: /dev/full }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            echo.address
        ));
        for _ in 0..20 {
            let (mut client, _) = testkit::Client::greeted(gw.address("l")).await;
            client.assert_echo("still served").await;
        }
        testkit::eventually("lost lines counted", || {
            gw.metric("causeway_access_log_write_errors_total", &[]) >= 1.0
        })
        .await;
        assert_eq!(gw.metric("causeway_access_log_dropped_total", &[]), 0.0);
        let (mut client, _) = testkit::Client::greeted(gw.address("l")).await;
        client.assert_echo("served after the failures").await;
    })
    .await
}
