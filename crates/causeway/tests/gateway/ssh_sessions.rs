//! SSH sessions under stress and faults: channels that open while another one downloads,
//! requests answered in order, transfers cut before they close, an
//! upstream that drops the session, and a gateway that ends a session whatever its state.

use super::sftp::{audit_lines, downstream_bytes, gateway_yaml, pinned, random_file};
use super::ssh_fake::{FakeUpstream, held_first};
use ssh::russh::{self, ChannelMsg, client};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::authorizer::{TestAuthorizer, Verdict};
use testkit::ssh::{Client, Sshd};
use testkit::{TestGateway, bounded, eventually};

/// The SSH test gateway (exec allowed), with an access log and an audit log, and `extra`
/// on top of its configuration.
fn logged(sshd: &Sshd, logs: &tempfile::TempDir, extra: &str) -> TestGateway {
    let audit = logs.path().join("audit.jsonl");
    let yaml = gateway_yaml(
        &sshd.address.to_string(),
        &format!(
            ", allow: {{ exec: true }}, audit_log: \"{}\"",
            audit.display()
        ),
        &pinned(),
    );
    let access = logs.path().join("access.jsonl");
    TestGateway::start(&format!(
        "access_log: {{ path: \"{}\" }}\n{extra}{yaml}",
        access.display()
    ))
}

/// The access log's close lines.
fn closed(logs: &tempfile::TempDir) -> Vec<serde_json::Value> {
    audit_lines(&logs.path().join("access.jsonl"))
        .into_iter()
        .filter(|l| l["event"] == "close")
        .collect()
}

/// A russh client that trusts any host key (the test's gateway).
pub(crate) struct AnyHost;

impl client::Handler for AnyHost {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// alice logged in to the gateway with her key, over russh.
pub(crate) async fn russh_alice(gateway: std::net::SocketAddr) -> client::Handle<AnyHost> {
    let config = Arc::new(client::Config::default());
    let mut session = client::connect(config, gateway, AnyHost).await.unwrap();
    let key = russh::keys::load_secret_key(testkit::ssh::example_keys().join("alice"), None);
    let key = russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key.unwrap()), None);
    let auth = session.authenticate_publickey("alice", key).await.unwrap();
    assert!(auth.success());
    session
}

/// The next answer to a request on `channel`.
async fn answer(channel: &mut russh::Channel<client::Msg>) -> Option<bool> {
    loop {
        match channel.wait().await? {
            ChannelMsg::Success => return Some(true),
            ChannelMsg::Failure => return Some(false),
            _ => {}
        }
    }
}

/// Two sessions over one OpenSSH master connection (ControlMaster): while the first
/// downloads as fast as it can, the second opens and runs a command at once — the
/// gateway's session loop never waits for the upstream's answer to a channel open or
/// request (a wait that, behind the download's data, could stall both for 30 s and refuse
/// the second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_channel_opens_at_once_while_another_downloads() {
    bounded(async {
        let sshd = Sshd::start().await;
        let big = sshd.root.join("alice/big.bin");
        random_file(&big, 8 << 20);
        let logs = tempfile::tempdir().unwrap();
        let gw = logged(&sshd, &logs, "");
        let client = Client::new(gw.address("sftp"));
        let control = client.dir().join("control");
        let muxed = |master: bool| {
            let mut command = client.command("ssh", &client.key("alice"));
            let mode = if master { "yes" } else { "no" };
            command
                .arg("-o")
                .arg(format!("ControlPath={}", control.display()))
                .arg("-o")
                .arg(format!("ControlMaster={mode}"))
                .stdout(Stdio::null())
                .arg("alice@127.0.0.1");
            command
        };
        let mut master = muxed(true).arg("-N").spawn().unwrap();
        eventually("the master connection is up", || control.exists()).await;
        let endless = format!("while cat {}; do :; done", big.display());
        let mut download = muxed(false).arg(endless).spawn().unwrap();
        let relayed = || downstream_bytes(&gw, sshd.address);
        eventually("the download is under way", || relayed() > 4 << 20).await;

        let started = Instant::now();
        let second = muxed(false)
            .arg("echo second")
            .stdout(Stdio::piped())
            .output()
            .await
            .unwrap();
        let took = started.elapsed();
        let stdout = String::from_utf8_lossy(&second.stdout);
        assert!(
            second.status.success() && stdout.trim() == "second",
            "{second:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "the second channel took {took:?}"
        );
        let before = relayed();
        eventually("the download still flows", || {
            relayed() > before + (4 << 20)
        })
        .await;
        download.kill().await.unwrap();
        master.kill().await.unwrap();
    })
    .await;
}

/// OpenSSH sends a command's stdin right behind the `exec` request, without waiting for
/// its answer: 8 MiB piped into a remote command all arrive (the client is held back while
/// the upstream's answer is awaited, not refused for sending early).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_stdin_sent_before_the_exec_answer_all_arrives() {
    bounded(async {
        let sshd = Sshd::start().await;
        let logs = tempfile::tempdir().unwrap();
        let gw = logged(&sshd, &logs, "");
        let client = Client::new(gw.address("sftp"));
        let input = client.dir().join("input.bin");
        random_file(&input, 8 << 20);
        let mut ssh = client.command("ssh", &client.key("alice"));
        ssh.stdin(std::fs::File::open(&input).unwrap())
            .arg("alice@127.0.0.1")
            .arg("wc -c");
        let out = tokio::time::timeout(Duration::from_secs(60), ssh.output())
            .await
            .expect("done")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(stdout.trim(), (8 << 20).to_string(), "{out:?}");
    })
    .await;
}

/// An `env` request is answered by the route at once and passed upstream (this sshd
/// refuses every variable: no `AcceptEnv`); the refusal never reaches the client as the
/// answer to the command sent right behind it (russh keeps one reply flag per channel).
/// Over russh (both asking for an answer, neither waited for) and OpenSSH (`SendEnv`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_refused_upstream_does_not_disturb_the_commands_answer() {
    bounded(async {
        let sshd = Sshd::start().await;
        let logs = tempfile::tempdir().unwrap();
        let gw = logged(&sshd, &logs, "");
        let session = russh_alice(gw.address("sftp")).await;
        for _ in 0..3 {
            let mut channel = session.channel_open_session().await.unwrap();
            channel.set_env(true, "CAUSEWAY_TEST", "1").await.unwrap();
            channel.exec(true, "echo ran").await.unwrap();
            assert_eq!(answer(&mut channel).await, Some(true), "env, by the route");
            assert_eq!(answer(&mut channel).await, Some(true), "the command");
            let mut out = Vec::new();
            while let Some(message) = channel.wait().await {
                if let ChannelMsg::Data { data } = message {
                    out.extend_from_slice(&data);
                }
            }
            assert_eq!(String::from_utf8_lossy(&out).trim(), "ran");
        }

        let client = Client::new(gw.address("sftp"));
        let mut ssh = client.command("ssh", &client.key("alice"));
        ssh.args(["-o", "SendEnv=CAUSEWAY_TEST"])
            .env("CAUSEWAY_TEST", "1")
            .arg("alice@127.0.0.1")
            .arg("echo ran");
        let out = tokio::time::timeout(Duration::from_secs(30), ssh.output())
            .await
            .expect("answered")
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "ran",
            "{out:?}"
        );
    })
    .await;
}

/// A download cut before its CLOSE (the client killed mid-transfer) still gets its audit
/// close line when the channel ends, marked `cut`, with the bytes that went through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sftp_transfer_cut_before_close_gets_a_cut_audit_line() {
    bounded(async {
        let sshd = Sshd::start().await;
        random_file(&sshd.root.join("alice/cut.bin"), 64 << 20);
        let logs = tempfile::tempdir().unwrap();
        let gw = logged(&sshd, &logs, "");
        let client = Client::new(gw.address("sftp"));
        let mut sftp = client.command("sftp", &client.key("alice"));
        sftp.args(["-b", "-"])
            .arg("alice@127.0.0.1")
            .current_dir(client.dir())
            .process_group(0);
        let mut child = sftp.spawn().unwrap();
        let batch = b"get cut.bin\n";
        use tokio::io::AsyncWriteExt;
        child.stdin.take().unwrap().write_all(batch).await.unwrap();
        let audit = logs.path().join("audit.jsonl");
        eventually("the file is open and flowing", || {
            audit_lines(&audit).iter().any(|l| l["op"] == "open")
                && downstream_bytes(&gw, sshd.address) > 1 << 20
        })
        .await;
        let pgid = child.id().unwrap() as i32;
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait().await;
        eventually("the cut transfer's close line", || {
            audit_lines(&audit).iter().any(|l| l["op"] == "close")
        })
        .await;
        let lines = audit_lines(&audit);
        let close = lines.iter().find(|l| l["op"] == "close").unwrap();
        assert_eq!(close["status"], "cut", "{close}");
        assert!(
            close["path"].as_str().unwrap().ends_with("cut.bin"),
            "{close}"
        );
        let read = close["bytes_read"].as_u64().unwrap();
        assert!(read > 0 && read < 64 << 20, "{close}");
    })
    .await;
}

/// The upstream server drops the session while the client has no channel open (`ssh -N`):
/// the gateway sees it at once and disconnects the client, saying why; the access log says
/// `upstream_ssh_session_closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_drops_the_session_disconnects_the_client() {
    bounded(async {
        let sshd = Sshd::start().await;
        let logs = tempfile::tempdir().unwrap();
        let gw = logged(&sshd, &logs, "");
        let client = Client::new(gw.address("sftp"));
        let mut idle = client.command("ssh", &client.key("alice"));
        idle.arg("-N").arg("alice@127.0.0.1");
        let idle = idle.spawn().unwrap();
        eventually("the session is up and connected upstream", || {
            let live = gw.gateway.connections_snapshot();
            live.first().is_some_and(|c| c.endpoint.is_some())
        })
        .await;
        sshd.drop_sessions();
        let out = tokio::time::timeout(Duration::from_secs(10), idle.wait_with_output())
            .await
            .expect("the client is let go")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("the upstream server closed the session"),
            "{stderr}"
        );
        eventually("the session's line", || closed(&logs).len() == 1).await;
        let line = &closed(&logs)[0];
        assert_eq!(line["reason"], "upstream_ssh_session_closed", "{line}");
        assert_eq!(line["side"], "upstream", "{line}");
    })
    .await;
}

/// A cluster reached through a CONNECT tunnel: `known_hosts` is looked up by the SSH
/// server the tunnel goes to (its authority), not by the tunnel proxy the gateway dials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_hosts_names_the_ssh_server_behind_a_tunnel() {
    bounded(async {
        let sshd = Sshd::start().await;
        let logs = tempfile::tempdir().unwrap();
        let terminator = TestGateway::start(&format!(
            r#"listeners:
  - name: connect
    address: 127.0.0.1:0
    routes:
      - name: tunnels
        connect: {{ allowed_cidrs: [127.0.0.1/32], allowed_ports: ["{}"] }}
        cluster: inside
clusters:
  - {{ name: inside, endpoints: [{{ address: "127.0.0.1:1" }}] }}
"#,
            sshd.address.port()
        ));
        let known_hosts = logs.path().join("known_hosts");
        let key =
            std::fs::read_to_string(testkit::ssh::example_keys().join("backend_host_ed25519.pub"))
                .unwrap();
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{} {key}", sshd.address.port()),
        )
        .unwrap();
        let yaml = gateway_yaml(
            &terminator.address("connect").to_string(),
            "",
            &format!("known_hosts: \"{}\"", known_hosts.display()),
        )
        .replace(
            "    connect_attempts: 1\n",
            &format!(
                "    connect_attempts: 1\n    tunnel: {{ protocol: http1, authority: \"{}\" }}\n",
                sshd.address
            ),
        );
        let gw = TestGateway::start(&yaml);
        let client = Client::new(gw.address("sftp"));
        let run = client.sftp("alice", &client.key("alice"), "pwd\n").await;
        assert!(run.success, "{run:?}");
        assert!(run.stdout.contains("/alice"), "{run:?}");
    })
    .await;
}

/// The gateway's SSH test configuration towards `upstream` (exec allowed), access-logged.
fn towards(upstream: std::net::SocketAddr, logs: &tempfile::TempDir, top: &str) -> TestGateway {
    let yaml = gateway_yaml(&upstream.to_string(), ", allow: { exec: true }", &pinned());
    let access = logs.path().join("access.jsonl");
    TestGateway::start(&format!(
        "access_log: {{ path: \"{}\" }}\n{top}{yaml}",
        access.display()
    ))
}

/// One channel's request that the upstream never answers stalls nothing else: a channel
/// downloading meanwhile keeps flowing, and a third channel opens and runs its command at
/// once (the session's loop does not wait for the upstream's answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_upstream_never_answers_stalls_no_other_channel() {
    bounded(async {
        let fake = FakeUpstream::start(false).await;
        let logs = tempfile::tempdir().unwrap();
        let gw = towards(fake.address, &logs, "");
        let session = russh_alice(gw.address("sftp")).await;
        let mut stream = session.channel_open_session().await.unwrap();
        stream.exec(true, "stream").await.unwrap();
        assert_eq!(answer(&mut stream).await, Some(true));
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counting = received.clone();
        let reader = tokio::spawn(async move {
            while let Some(message) = stream.wait().await {
                if let ChannelMsg::Data { data } = message {
                    counting.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let got = || received.load(std::sync::atomic::Ordering::Relaxed);
        eventually("the stream flows", || got() > 1 << 20).await;

        let hung = session.channel_open_session().await.unwrap();
        hung.exec(true, "hang").await.unwrap();
        let before = got();
        eventually("the stream flows on", || got() > before + (4 << 20)).await;
        let third = async {
            let mut third = session.channel_open_session().await.unwrap();
            third.exec(true, "echo").await.unwrap();
            answer(&mut third).await
        };
        let answered = tokio::time::timeout(Duration::from_secs(5), third).await;
        assert_eq!(
            answered.ok().flatten(),
            Some(true),
            "the third channel ran at once"
        );
        reader.abort();
    })
    .await;
}

/// A command the upstream never answers: after the 30 s the gateway waits, the channel
/// is closed on both sides rather than answered with a failure while its upstream twin
/// stays open (whose late answer would be taken as the next request's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_unanswered_in_time_closes_its_channel() {
    bounded(async {
        let fake = FakeUpstream::start(false).await;
        let logs = tempfile::tempdir().unwrap();
        let gw = towards(fake.address, &logs, "");
        let session = russh_alice(gw.address("sftp")).await;
        let mut hung = session.channel_open_session().await.unwrap();
        let started = Instant::now();
        hung.exec(true, "hang").await.unwrap();
        assert_eq!(answer(&mut hung).await, None, "closed, not answered");
        assert!(
            started.elapsed() >= Duration::from_secs(29),
            "waited its time"
        );
        // The session goes on.
        let mut next = session.channel_open_session().await.unwrap();
        next.exec(true, "echo").await.unwrap();
        assert_eq!(answer(&mut next).await, Some(true));
    })
    .await;
}

/// A drain while the upstream is still being dialed: the dial is dropped, the client is
/// told why at once, the connection is logged once (`shutdown`), and the gateway never
/// logs in upstream after that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_during_the_upstream_dial_ends_the_session_and_logs_in_nowhere() {
    bounded(async {
        let fake = FakeUpstream::start(true).await;
        let logs = tempfile::tempdir().unwrap();
        let gw = towards(fake.address, &logs, "drain: { timeout: 500ms }\n");
        let client = Client::new(gw.address("sftp"));
        let mut idle = client.command("ssh", &client.key("alice"));
        idle.arg("-N").arg("alice@127.0.0.1");
        let idle = idle.spawn().unwrap();
        eventually("the session is registered and dialing", || {
            gw.gateway.connections_snapshot().len() == 1
                && super::sftp::established_towards(fake.address.port()) == 1
        })
        .await;
        let _report = gw.shutdown().await;
        let out = tokio::time::timeout(Duration::from_secs(10), idle.wait_with_output())
            .await
            .expect("the client is let go")
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("closed by the gateway"),
            "told why: {stderr}"
        );
        eventually("the session's line", || !closed(&logs).is_empty()).await;
        // The upstream answers only now: the gateway gave its connection up.
        fake.release();
        let mut ended = fake.ended.clone();
        ended.wait_for(|n| *n == 1).await.unwrap();
        assert_eq!(fake.logins.load(std::sync::atomic::Ordering::Relaxed), 0);
        let lines = closed(&logs);
        assert_eq!(lines.len(), 1, "one line: {lines:?}");
        assert_eq!(lines[0]["reason"], "shutdown", "{lines:?}");
    })
    .await;
}

/// OpenSSH with a terminal sends its pty request, its environment and the command one
/// behind the other without waiting: each is answered in order, the command gets its
/// terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pty_environment_and_command_sent_together_are_answered_in_order() {
    bounded(async {
        let sshd = Sshd::start().await;
        let logs = tempfile::tempdir().unwrap();
        let gw = logged(&sshd, &logs, "");
        let client = Client::new(gw.address("sftp"));
        let mut ssh = client.command("ssh", &client.key("alice"));
        ssh.args(["-tt", "-o", "SendEnv=CAUSEWAY_TEST"])
            .env("CAUSEWAY_TEST", "1")
            .arg("alice@127.0.0.1")
            .arg("tty");
        let out = tokio::time::timeout(Duration::from_secs(30), ssh.output())
            .await
            .expect("answered")
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(stdout.contains("/dev/pts/"), "a terminal: {stdout}");
    })
    .await;
}

/// A window change the client sends right behind its command, before the command's
/// answer, reaches the upstream's terminal (in order with the data behind it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_change_sent_before_the_commands_answer_reaches_the_terminal() {
    bounded(async {
        let sshd = Sshd::start().await;
        let logs = tempfile::tempdir().unwrap();
        let gw = logged(&sshd, &logs, "");
        let session = russh_alice(gw.address("sftp")).await;
        let mut channel = session.channel_open_session().await.unwrap();
        channel
            .request_pty(false, "xterm", 80, 24, 0, 0, &[])
            .await
            .unwrap();
        channel.exec(true, "read line; stty size").await.unwrap();
        channel.window_change(123, 45, 0, 0).await.unwrap();
        channel.data(&b"go\n"[..]).await.unwrap();
        // (The command's answer is not awaited: russh's one reply flag per channel is
        // cleared by the window change, a request that wants no reply.)
        let mut out = Vec::new();
        while let Some(message) = channel.wait().await {
            if let ChannelMsg::Data { data } = message {
                out.extend_from_slice(&data);
            }
        }
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains("45 123"), "the new size: {out:?}");
    })
    .await;
}

/// A channel starts once: a pty request on a channel already running its command is
/// refused (the gateway passes nothing upstream for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pty_request_on_a_started_channel_is_refused() {
    bounded(async {
        let sshd = Sshd::start().await;
        let logs = tempfile::tempdir().unwrap();
        let gw = logged(&sshd, &logs, "");
        let session = russh_alice(gw.address("sftp")).await;
        let mut channel = session.channel_open_session().await.unwrap();
        channel.exec(true, "read line; echo done").await.unwrap();
        assert_eq!(answer(&mut channel).await, Some(true));
        channel
            .request_pty(true, "xterm", 80, 24, 0, 0, &[])
            .await
            .unwrap();
        assert_eq!(answer(&mut channel).await, Some(false), "refused");
        channel.data(&b"go\n"[..]).await.unwrap();
        let mut out = Vec::new();
        while let Some(message) = channel.wait().await {
            if let ChannelMsg::Data { data } = message {
                out.extend_from_slice(&data);
            }
        }
        assert_eq!(String::from_utf8_lossy(&out).trim(), "done");
    })
    .await;
}

/// The auth deadline fires while the authorizer is still deciding a login (held until the
/// test lets it answer): the decision is given up (the client refused), and the gateway
/// never logs in upstream for that connection afterwards, even once the authorizer says
/// yes (the next client's login is the server's only one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auth_deadline_during_a_slow_authorization_logs_in_nowhere() {
    bounded(async {
        let sshd = Sshd::start().await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let (slow, release) = held_first(authorizer.address).await;
        let logs = tempfile::tempdir().unwrap();
        let yaml = gateway_yaml(
            &sshd.address.to_string(),
            ", allow: { exec: true }",
            &pinned(),
        )
        .replace("    ssh:\n      host_keys", "    ssh:\n      auth_timeout: 3s\n      host_keys")
        .replace(
            "        cluster: backend\n",
            "        cluster: backend\n        authorization: { ext_authz: iam }\n",
        );
        let access = logs.path().join("access.jsonl");
        let gw = TestGateway::start(&format!(
            "access_log: {{ path: \"{}\" }}\nauthorizers:\n  - {{ name: iam, address: \"{slow}\", timeout: 30s }}\n{yaml}",
            access.display()
        ));
        let client = Client::new(gw.address("sftp"));
        let started = Instant::now();
        let first = client.ssh("alice", &client.key("alice"), "true").await;
        assert!(!first.success, "{first:?}");
        assert!(started.elapsed() < Duration::from_secs(20), "let go on time");
        let _ = release.send(());
        authorizer.wait_for_requests(1).await;
        let second = client.ssh("alice", &client.key("alice"), "true").await;
        assert!(second.success, "{second:?}");
        let logins = sshd.log().matches("Accepted publickey for alice").count();
        assert_eq!(logins, 1, "only the second client's: {}", sshd.log());
        eventually("both lines", || audit_lines(&access).len() >= 3).await;
        let reasons: Vec<String> = audit_lines(&access)
            .iter()
            .filter(|l| l["ssh_channel"].is_null() && !l["reason"].is_null())
            .map(|l| l["reason"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(reasons, ["downstream_ssh_auth_failed", "closed"], "{reasons:?}");
    })
    .await;
}
