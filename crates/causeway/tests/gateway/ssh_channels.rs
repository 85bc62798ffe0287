//! Each channel of an SSH session is a connection of its own: admitted against the
//! listener's limits, shown in /connections with its session, closed at its route's idle
//! timeout on its own (its session and the other channels going on), with its own
//! access-log line.

use super::sftp::{audit_lines, established_towards, gateway_yaml, pinned};
use std::process::Stdio;
use std::time::Duration;
use testkit::ssh::{Client, Sshd};
use testkit::{TestGateway, bounded, eventually};

/// The SSH test gateway (exec allowed) with `listener` settings on its listener and
/// `route` settings on its route.
fn yaml(sshd: &Sshd, listener: &str, route: &str) -> String {
    gateway_yaml(
        &sshd.address.to_string(),
        ", allow: { exec: true }",
        &pinned(),
    )
    .replace(
        "    protocol: ssh\n",
        &format!("    protocol: ssh\n{listener}"),
    )
    .replace(
        "        cluster: backend\n",
        &format!("        cluster: backend\n{route}"),
    )
}

/// With `connection_limit: 2`, one session running a command holds both places: the next
/// client is refused at accept, and once the first is gone the places are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_takes_a_place_under_the_listeners_connection_limit() {
    bounded(async {
        let sshd = Sshd::start().await;
        let gw = TestGateway::start(&yaml(&sshd, "    connection_limit: 2\n", ""));
        let client = Client::new(gw.address("sftp"));
        let mut first = client.command("ssh", &client.key("alice"));
        first.arg("alice@127.0.0.1").arg("sleep 30");
        let mut first = first.spawn().unwrap();
        eventually("the session and its channel are live", || {
            gw.gateway.connections_snapshot().len() == 2
        })
        .await;
        let live = gw.gateway.connections_snapshot();
        let (session, channel) = (&live[0], &live[1]);
        assert_eq!(session.ssh_channel, None);
        assert_eq!(channel.ssh_channel, Some("exec"));
        assert_eq!(channel.ssh_session, Some(session.id));
        assert_eq!(channel.ssh_user.as_deref(), Some("alice"));
        assert_eq!(channel.endpoint, Some(sshd.address.to_string()));

        let second = client.ssh("alice", &client.key("alice"), "echo hi").await;
        assert!(!second.success, "{second:?}");
        assert_eq!(gw.rejected("sftp", "connection_limit"), 1.0);

        first.kill().await.unwrap();
        eventually("both places are given back", || {
            gw.gateway.connections_snapshot().is_empty()
        })
        .await;
        let third = client.ssh("alice", &client.key("alice"), "echo hi").await;
        assert!(third.success && third.stdout.trim() == "hi", "{third:?}");
    })
    .await;
}

/// With `connection_limit: 1` the session itself fills the listener: the channel it opens
/// is refused (the client told the gateway lacks the resources), counted, and nothing runs
/// upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_over_the_limit_is_refused_and_its_session_told() {
    bounded(async {
        let sshd = Sshd::start().await;
        let gw = TestGateway::start(&yaml(&sshd, "    connection_limit: 1\n", ""));
        let client = Client::new(gw.address("sftp"));
        let marker = client.dir().join("ran");
        let command = format!("touch {}", marker.display());
        let run = client.ssh("alice", &client.key("alice"), &command).await;
        assert!(!run.success, "{run:?}");
        assert!(run.stderr.contains("open failed"), "{run:?}");
        assert_eq!(gw.rejected("sftp", "connection_limit"), 1.0);
        assert!(!marker.exists(), "the command never ran upstream");
    })
    .await;
}

/// Two channels over one multiplexed session with `idle_timeout: 2s`: the silent one is
/// closed at its idle timeout (its client let go, the access log says `idle_timeout`),
/// while the one that keeps talking and the session it shares go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_channel_is_closed_while_its_session_goes_on() {
    bounded(async {
        let sshd = Sshd::start().await;
        let log = tempfile::NamedTempFile::new().unwrap();
        let yaml = yaml(&sshd, "", "        idle_timeout: 2s\n");
        let gw = TestGateway::start(&format!(
            "access_log: {{ path: \"{}\" }}\n{yaml}",
            log.path().display()
        ));
        let client = Client::new(gw.address("sftp"));
        let control = client.dir().join("control");
        let muxed = |master: bool| {
            let mut command = client.command("ssh", &client.key("alice"));
            command
                .arg("-o")
                .arg(format!("ControlPath={}", control.display()))
                .args([
                    "-o",
                    if master {
                        "ControlMaster=yes"
                    } else {
                        "ControlMaster=no"
                    },
                ])
                .stdout(Stdio::null())
                .arg("alice@127.0.0.1");
            command
        };
        let mut master = muxed(true);
        let _master = master.arg("-N").spawn().unwrap();
        eventually("the master session is up", || control.exists()).await;
        let mut ticker = muxed(false);
        ticker.arg("while true; do echo tick; sleep 0.2; done");
        let mut ticker = ticker.spawn().unwrap();
        let mut silent = muxed(false);
        let silent = silent.arg("sleep 30").spawn().unwrap();
        eventually("both channels are live", || {
            gw.gateway.connections_snapshot().len() == 3
        })
        .await;

        let out = tokio::time::timeout(Duration::from_secs(5), silent.wait_with_output())
            .await
            .expect("the silent channel was closed within idle_timeout + 3 s")
            .unwrap();
        assert!(!out.status.success(), "{out:?}");
        let close = eventually_close_line(log.path()).await;
        assert_eq!(close["ssh_channel"], "exec", "{close}");
        assert_eq!(close["reason"], "idle_timeout", "{close}");
        assert_eq!(close["ssh_user"], "alice", "{close}");

        assert!(
            ticker.try_wait().unwrap().is_none(),
            "the talking channel goes on"
        );
        let live = gw.gateway.connections_snapshot();
        assert_eq!(live.len(), 2, "the session and the talking channel remain");
        assert_eq!(established_towards(sshd.address.port()), 1);
        ticker.kill().await.unwrap();
    })
    .await;
}

async fn eventually_close_line(path: &std::path::Path) -> serde_json::Value {
    let close = || {
        audit_lines(path)
            .into_iter()
            .find(|l| l["event"] == "close")
    };
    eventually("a close line", || close().is_some()).await;
    close().unwrap()
}

/// Data on a channel that was opened but never started (no exec, shell or subsystem yet)
/// is kept, bounded: past 64 KiB the channel is closed — and the session goes on (it used to
/// stall for good once the channel's queue was full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_on_a_channel_never_started_cannot_wedge_the_session() {
    bounded(async {
        use ssh::russh::ChannelMsg;
        let sshd = Sshd::start().await;
        let gw = TestGateway::start(&yaml(&sshd, "", ""));
        let session = crate::ssh_sessions::russh_alice(gw.address("sftp")).await;
        let mut early = session.channel_open_session().await.unwrap();
        for _ in 0..200 {
            early.data(&[b'x'; 1024][..]).await.unwrap();
        }
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match early.wait().await {
                    Some(ChannelMsg::Close) | None => return,
                    Some(_) => {}
                }
            }
        });
        closed.await.expect("the channel is closed past the bound");
        let denied = [
            ("listener", "sftp"),
            ("request", "early_data"),
            ("result", "denied"),
        ];
        assert_eq!(
            gw.metric("causeway_ssh_channel_requests_total", &denied),
            1.0
        );

        // The session still answers: another channel runs a command.
        let run = async {
            let mut channel = session.channel_open_session().await.unwrap();
            channel.exec(true, "echo hi").await.unwrap();
            let mut out = Vec::new();
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.extend_from_slice(&data),
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            out
        };
        let out = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the session is not wedged");
        assert_eq!(String::from_utf8_lossy(&out).trim(), "hi");
    })
    .await;
}

/// A little data before the request that starts the channel reaches the upstream command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sent_before_the_exec_reaches_the_command() {
    bounded(async {
        use ssh::russh::ChannelMsg;
        let sshd = Sshd::start().await;
        let gw = TestGateway::start(&yaml(&sshd, "", ""));
        let session = crate::ssh_sessions::russh_alice(gw.address("sftp")).await;
        let mut channel = session.channel_open_session().await.unwrap();
        channel.data(&b"early bytes\n"[..]).await.unwrap();
        channel.exec(true, "head -c 12").await.unwrap();
        let run = async {
            let mut out = Vec::new();
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.extend_from_slice(&data),
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            out
        };
        let out = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out), "early bytes\n");
    })
    .await;
}
