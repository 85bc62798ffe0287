//! Faults a bank's network and machines produce, injected over real sockets: resets part-way
//! through both ways, a reader that stops reading, an authorizer whose latency spikes past
//! its timeout, a statsd that vanishes, the process out of file descriptors. (Faults that
//! need a firewall or a resolver of their own: `faults_network`.) docs/robustness.md.

use crate::cli::Process;
use std::time::Duration;
use testkit::authorizer::{TestAuthorizer, Verdict};
use testkit::{Backend, Client, TestGateway, bounded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

fn one_route(backend: &Backend, top: &str) -> String {
    format!(
        "{top}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
        backend.address
    )
}

/// `n` bytes of a pattern a shifted or lost byte breaks.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn reset_on_drop(stream: &TcpStream) {
    socket2::SockRef::from(stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Reads until the end; the bytes before it, and whether it was a reset.
async fn read_to_reset(stream: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (got, false),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (got, true),
            Err(e) => panic!("neither data nor a reset: {e}"),
        }
    }
}

const CUT_AFTER: usize = 300_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_after_n_bytes_reaches_the_client_after_those_bytes() {
    bounded(async {
        let upstream = Backend::start(|mut stream| async move {
            stream.write_all(&pattern(CUT_AFTER)).await.unwrap();
            stream.flush().await.unwrap();
            // Wait for the client's word that all arrived: a reset discards unread data.
            let mut ack = [0u8; 1];
            stream.read_exact(&mut ack).await.unwrap();
            reset_on_drop(&stream);
        })
        .await;
        let gw = TestGateway::start(&one_route(&upstream, ""));
        let mut client = TcpStream::connect(gw.address("l")).await.unwrap();
        let mut got = vec![0u8; CUT_AFTER];
        client.read_exact(&mut got).await.unwrap();
        assert!(
            got == pattern(CUT_AFTER),
            "the bytes before the reset, intact"
        );
        client.write_all(b"k").await.unwrap();
        let (after, reset) = read_to_reset(&mut client).await;
        assert!(after.is_empty() && reset, "then a reset, not a clean close");
        testkit::eventually("the connection is over", || {
            gw.metric("causeway_listener_connections_active", &[("listener", "l")]) == 0.0
        })
        .await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reset_after_n_bytes_reaches_the_upstream_after_those_bytes() {
    bounded(async {
        let (report, reported) = oneshot::channel();
        let report = std::sync::Mutex::new(Some(report));
        let (progress, mut arrived) = tokio::sync::watch::channel(0usize);
        let upstream = Backend::start(move |mut stream| {
            let (report, progress) = (report.lock().unwrap().take(), progress.clone());
            async move {
                let mut got = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                let reset = loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break false,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
                    }
                    progress.send_replace(got.len());
                };
                let _ = report.unwrap().send((got, reset));
            }
        })
        .await;
        let gw = TestGateway::start(&one_route(&upstream, ""));
        let mut client = TcpStream::connect(gw.address("l")).await.unwrap();
        client.write_all(&pattern(CUT_AFTER)).await.unwrap();
        // Only once the upstream has every byte: a reset discards what is still unread.
        arrived.wait_for(|n| *n >= CUT_AFTER).await.unwrap();
        reset_on_drop(&client);
        drop(client);
        let (got, reset) = reported.await.unwrap();
        assert_eq!(got.len(), CUT_AFTER, "the bytes before the reset");
        assert!(got == pattern(CUT_AFTER), "intact");
        assert!(reset, "the client's reset reaches the upstream as a reset");
    })
    .await
}

/// Writes until a write stalls for `stall` (or `most` bytes are out); the total written.
async fn write_until_stalled(
    stream: &mut (impl AsyncWriteExt + Unpin),
    stall: Duration,
    most: usize,
) -> usize {
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0;
    while sent < most {
        match tokio::time::timeout(stall, stream.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(e)) => panic!("the upstream's write failed: {e}"),
            Err(_) => break,
        }
    }
    sent
}

/// The largest buffer `net.ipv4.NAME` lets a socket grow to.
fn tcp_buffer_max(name: &str) -> usize {
    let sizes = std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}")).unwrap();
    sizes.split_whitespace().last().unwrap().parse().unwrap()
}

/// A zero window: the client reads nothing while the upstream keeps sending. The other
/// direction flows on, and what the upstream gets out stays within the sockets' buffers
/// plus the gateway's relay buffer: the gateway does not queue what its client won't read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_back_only_its_own_direction() {
    const UPLOAD: usize = 8 << 20;
    // What the sockets can hold at most: the upstream's send buffer, the gateway's receive
    // buffer from it and send buffer to the client (autotuned up to these), and a little
    // more (the relay's buffer, the client's 4 KiB).
    let bound = 2 * tcp_buffer_max("tcp_wmem") + tcp_buffer_max("tcp_rmem") + (1 << 20);
    // What a gateway queueing without bound would let the upstream write.
    let most = 4 * bound;
    bounded(async {
        let (report, reported) = oneshot::channel();
        let report = std::sync::Mutex::new(Some(report));
        let upstream = Backend::start(move |stream| {
            let report = report.lock().unwrap().take().unwrap();
            async move {
                let (mut read, mut write) = stream.into_split();
                let pushing = tokio::spawn(async move {
                    write_until_stalled(&mut write, Duration::from_secs(1), most).await
                });
                let mut got = vec![0u8; UPLOAD];
                read.read_exact(&mut got).await.unwrap();
                let intact = got == pattern(UPLOAD);
                let _ = report.send((intact, pushing.await.unwrap()));
            }
        })
        .await;
        let gw = TestGateway::start(&one_route(&upstream, ""));
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut client = socket.connect(gw.address("l")).await.unwrap();
        client.write_all(&pattern(UPLOAD)).await.unwrap();
        let (intact, pushed) = reported.await.unwrap();
        assert!(intact, "the client's 8 MiB reached the upstream intact");
        assert!(
            pushed < bound,
            "the upstream got {pushed} bytes out to a client reading nothing (at most {bound})"
        );
        // And what was held back arrives once the client reads.
        let mut first = vec![0u8; 64 * 1024];
        client.read_exact(&mut first).await.unwrap();
        assert!(first.iter().all(|b| *b == 7));
    })
    .await
}

fn authorized(authorizer: &TestAuthorizer, failure_mode: &str, backend: &Backend) -> String {
    format!(
        "authorizers:\n  - {{ name: iam, address: \"{}\", timeout: 200ms, failure_mode: {failure_mode} }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ authorization: {{ ext_authz: iam }}, cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
        authorizer.address, backend.address
    )
}

/// `n` clients at once; for each, the backend's greeting (None: closed without one).
async fn many_clients(address: std::net::SocketAddr, n: usize) -> Vec<(Client, Option<String>)> {
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..n {
        clients.spawn(async move {
            let mut client = Client::connect(address).await;
            let greeting = client.line().await;
            (client, greeting)
        });
    }
    clients.join_all().await
}

/// The authorizer's latency spikes past its timeout: each gateway applies its failure mode
/// at the timeout, every check it gave up on is cancelled at the authorizer (none is left
/// running on either side), and once the authorizer answers again so does the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorizer_slower_than_its_timeout_gets_the_failure_mode_and_leaves_nothing_behind() {
    bounded(async {
        let backend = Backend::echo("main").await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let closed = TestGateway::start(&authorized(&authorizer, "deny", &backend));
        let open = TestGateway::start(&authorized(&authorizer, "allow", &backend));
        assert_eq!(Client::greeted(closed.address("l")).await.1, "main");

        authorizer.set(Verdict::Hang);
        let started = tokio::time::Instant::now();
        let refused = many_clients(closed.address("l"), 20).await;
        assert!(
            refused.iter().all(|(_, g)| g.is_none()),
            "deny: all refused"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "at the timeout"
        );
        let admitted = many_clients(open.address("l"), 20).await;
        assert!(
            admitted.iter().all(|(_, g)| g.as_deref() == Some("main")),
            "allow: all in"
        );
        for gw in [&closed, &open] {
            let timeouts = [("authorizer", "iam"), ("result", "timeout")];
            assert_eq!(gw.metric("causeway_authz_checks_total", &timeouts), 20.0);
        }
        assert!(
            authorizer.most_hanging() >= 20,
            "the checks did reach the authorizer"
        );
        authorizer.wait_for_hanging(0).await;
        testkit::eventually("the refused connections are over", || {
            closed.metric("causeway_listener_connections_active", &[("listener", "l")]) == 0.0
        })
        .await;

        authorizer.set(Verdict::Allow);
        let (mut client, name) = Client::greeted(closed.address("l")).await;
        assert_eq!(name, "main", "the spike is over");
        client.assert_echo("after the spike").await;
    })
    .await
}

/// statsd goes away (its port unreachable): connections carry on, the datagrams lost are
/// counted, and the count reaches statsd once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statsd_that_goes_away_costs_connections_nothing_and_is_counted() {
    bounded(async {
        let echo = Backend::echo("echo").await;
        let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = gone.local_addr().unwrap();
        drop(gone);
        let top = format!(
            "admin: {{ address: 127.0.0.1:0 }}\nmetrics:\n  statsd: {{ address: \"{address}\", prefix: gw, flush_interval: 50ms }}"
        );
        let mut gw = Process::start(&one_route(&echo, &top));
        let admin = crate::admin::admin_address(&mut gw);
        let (mut client, _) = Client::greeted(gw.address).await;
        client.assert_echo("statsd is gone").await;
        // A counter has no change signal: scraped every 20 ms.
        let mut lost = 0.0;
        while lost < 2.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (_, text) = crate::admin::http(admin, "GET", "/metrics").await;
            lost = testkit::metric_in(&text, "causeway_statsd_send_errors_total", &[]);
        }
        client.assert_echo("still served").await;

        let statsd = tokio::net::UdpSocket::bind(address).await.unwrap();
        let seen = crate::metrics::statsd_until(&statsd, |seen| {
            seen.iter().any(|l| l.starts_with("gw.statsd_send_errors_total:"))
        })
        .await;
        assert!(!seen.is_empty());
    })
    .await
}

/// CPU time (user and system, clock ticks) the process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime: fields 14 and 15 of stat(5), 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Out of file descriptors (EMFILE), the accept loop pauses instead of spinning on the
/// error, counts it, and accepts what waited in the queue once descriptors are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_listener_pauses_and_recovers() {
    const OPEN_FILES: u64 = 64;
    bounded(async {
        let echo = Backend::echo("echo").await;
        // `held` keeps the silent clients' descriptors (it waits a minute for a first byte).
        // By default `max_connections` keeps the gateway within its open-file limit (about
        // half of it); set above it, as a system out of files (ENFILE) would, accept fails.
        let yaml = format!(
            "max_connections: 1000\nadmin: {{ address: 127.0.0.1:0 }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{{ cluster: c }}]\n  - name: held\n    address: 127.0.0.1:0\n    inspect: {{ tls: true, timeout: 60s }}\n    routes: [{{ cluster: c }}]\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"{}\" }}] }}\n",
            echo.address
        );
        let mut gw = Process::start_with_open_files(&yaml, OPEN_FILES);
        let held = tokio::task::block_in_place(|| gw.wait_for_address("listener=held"));
        let admin = crate::admin::admin_address(&mut gw);
        let mut silent = Vec::new();
        for _ in 0..OPEN_FILES + 16 {
            silent.push(TcpStream::connect(held).await.unwrap());
        }
        let pid = gw.pid();
        testkit::eventually("the gateway has every descriptor it may open", || {
            open_files(pid) >= OPEN_FILES as usize
        })
        .await;
        // A client of the other listener waits in its queue.
        let mut waiting = Client::connect(gw.address).await;
        let greeting = tokio::time::timeout(Duration::from_millis(500), waiting.line());
        assert!(greeting.await.is_err(), "no descriptor left to accept with");
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_secs(1)).await; // CPU time over a second
        let spent = cpu_ticks(pid) - before;
        assert!(spent <= 10, "no busy loop: {spent} ticks of CPU in one second");

        drop(silent);
        assert_eq!(waiting.line().await.as_deref(), Some("echo"), "accepted at last");
        waiting.assert_echo("recovered").await;
        let (_, text) = crate::admin::http(admin, "GET", "/metrics").await;
        let exhausted = |listener| {
            let labels = [("listener", listener), ("reason", "fd_exhausted")];
            testkit::metric_in(&text, "causeway_listener_accept_errors_total", &labels)
        };
        assert!(exhausted("held") + exhausted("l") > 0.0, "counted:\n{text}");
    })
    .await
}
