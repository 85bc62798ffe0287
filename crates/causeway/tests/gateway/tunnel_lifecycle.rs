//! The life of an HTTP CONNECT tunnel at the terminator. A tunnel is a connection of its own
//! (docs/tunnels.md), so what the route says of connections holds for it: its connect
//! route's `idle_timeout`, `max_duration` and `reauthorize_every` end it (both sides closed,
//! the reason in the access log), it counts against the listener's `connection_limit` and
//! the gateway's `max_connections`, and the authorizer is told where it goes
//! (`tunnel_host`, `tunnel_port`).
//!
//! The terminator listens on plaintext. A test client opens its tunnel itself (HTTP/1.1
//! CONNECT over TCP), or goes through an edge gateway whose tunnel cluster carries every
//! tunnel on one HTTP/2 connection to the terminator.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use testkit::authorizer::{TestAuthorizer, Verdict};
use testkit::{Backend, Client, TestGateway, bounded, eventually};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout_at};

/// An echo backend (it says `echo` first) that reports when each of its connections ends.
pub(crate) struct Watched {
    pub(crate) backend: Backend,
    ended: mpsc::UnboundedReceiver<Instant>,
}

impl Watched {
    pub(crate) async fn start() -> Watched {
        let (tell, ended) = mpsc::unbounded_channel();
        let backend = Backend::start(move |mut stream| {
            let tell = tell.clone();
            async move {
                if stream.write_all(b"echo\n").await.is_ok() {
                    testkit::echo(stream).await;
                }
                let _ = tell.send(Instant::now());
            }
        })
        .await;
        Watched { backend, ended }
    }

    /// Waits until one of the backend's connections has ended (closed or reset by the
    /// gateway); panics if none has by `deadline`.
    async fn connection_ended_by(&mut self, deadline: Instant, what: &str) {
        let ended = timeout_at(deadline, self.ended.recv()).await;
        assert!(
            matches!(ended, Ok(Some(_))),
            "{what}: the backend's connection did not end"
        );
    }
}

/// A plaintext terminator: listener `connect` with one connect route `tunnels` (to
/// 127.0.0.1 on `target`'s port) and an access log at `log`. `top` goes at the top level,
/// `listener` among the listener's settings, `route` among the route's (each line indented
/// [`terminator`] whose connect route asks `authorizer` (`authorization`: the route's
/// authorization settings).
fn authorized(
    target: SocketAddr,
    log: &Path,
    authorizer: &TestAuthorizer,
    authorization: &str,
) -> String {
    let top = format!(
        "authorizers:\n  - {{ name: iam, address: \"{}\" }}\n",
        authorizer.address
    );
    let route = format!("        authorization: {authorization}\n");
    terminator(target, log, &top, "", &route)
}

/// as there, ending with a newline).
pub(crate) fn terminator(
    target: SocketAddr,
    log: &Path,
    top: &str,
    listener: &str,
    route: &str,
) -> String {
    format!(
        r#"access_log: {{ path: "{}" }}
{top}listeners:
  - name: connect
    address: 127.0.0.1:0
{listener}    routes:
      - name: tunnels
        connect: {{ allowed_cidrs: [127.0.0.1/32], allowed_ports: ["{}"] }}
{route}        cluster: inside
clusters:
  - {{ name: inside, endpoints: [{{ address: "127.0.0.1:1" }}] }}
"#,
        log.display(),
        target.port()
    )
}

/// How a client reaches the terminator.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Via {
    /// Its own HTTP/1.1 CONNECT: one TCP connection per tunnel.
    Http1,
    /// Through an edge gateway whose tunnel cluster carries every tunnel on one HTTP/2
    /// connection to the terminator.
    Http2,
}

/// Opens tunnels to `target` through the terminator at `terminator`.
pub(crate) struct Tunnels {
    via: Via,
    terminator: SocketAddr,
    target: SocketAddr,
    edge: Option<TestGateway>,
}

impl Tunnels {
    pub(crate) fn new(via: Via, terminator: SocketAddr, target: SocketAddr) -> Tunnels {
        let edge = match via {
            Via::Http1 => None,
            Via::Http2 => Some(TestGateway::start(&format!(
                r#"listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ cluster: tunnel }}]
clusters:
  - name: tunnel
    endpoints: [{{ address: "{terminator}" }}]
    tunnel: {{ protocol: http2, authority: "{target}", max_connections: 1 }}
"#
            ))),
        };
        Tunnels {
            via,
            terminator,
            target,
            edge,
        }
    }

    /// A tunnel open to the backend (its greeting read), or what happened instead.
    async fn try_open(&self) -> Result<Client, String> {
        match &self.edge {
            Some(edge) => {
                let mut client = Client::connect(edge.address("edge")).await;
                match client.line().await {
                    Some(greeting) if greeting == "echo" => Ok(client),
                    Some(other) => Err(format!("the edge relayed {other:?}")),
                    None => Err("the edge closed the client: its tunnel was refused".into()),
                }
            }
            None => {
                let (status, mut client) = crate::tunnel_security::http1_connect(
                    self.terminator,
                    &self.target.to_string(),
                    "",
                )
                .await;
                match status {
                    Some(200) => match client.line().await {
                        Some(greeting) if greeting == "echo" => Ok(client),
                        other => Err(format!("200, then {other:?} instead of the greeting")),
                    },
                    Some(status) => Err(format!("answered {status}")),
                    None => Err("closed without an answer".into()),
                }
            }
        }
    }

    pub(crate) async fn open(&self) -> Client {
        self.try_open()
            .await
            .unwrap_or_else(|e| panic!("{:?}: the tunnel did not open: {e}", self.via))
    }
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The access log's close line of the tunnel to `target` (the only one in these tests),
/// once it is written.
async fn tunnel_close_line(log: &Path, target: SocketAddr) -> Value {
    let target = target.to_string();
    let is_it = |l: &Value| l["event"] == "close" && l["endpoint"] == target.as_str();
    eventually("the tunnel's close line in the access log", || {
        log_lines(log).iter().any(is_it)
    })
    .await;
    log_lines(log).into_iter().find(is_it).unwrap()
}

/// Reads until `client` is closed (EOF or reset), for at most until `deadline`.
async fn closed_by(client: &mut Client, deadline: Instant) -> bool {
    matches!(timeout_at(deadline, client.is_closed()).await, Ok(true))
}

const IDLE: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_is_closed_at_its_routes_idle_timeout() {
    bounded(async {
        for via in [Via::Http1, Via::Http2] {
            let mut echo = Watched::start().await;
            let target = echo.backend.address;
            let log = tempfile::NamedTempFile::new().unwrap();
            let gw = TestGateway::start(&terminator(
                target,
                log.path(),
                "",
                "",
                "        idle_timeout: 1s\n",
            ));
            let tunnels = Tunnels::new(via, gw.address("connect"), target);
            let mut tunnel = tunnels.open().await;
            let opened = Instant::now();

            // Traffic keeps it alive: a line at 0.6 s, and it is still open at 1.2 s.
            sleep_until(opened + Duration::from_millis(600)).await;
            tunnel.assert_echo("at 0.6 s").await;
            sleep_until(opened + Duration::from_millis(1200)).await;
            tunnel.assert_echo("still open at 1.2 s").await;

            // Then idle: closed on both sides within the idle timeout + 1 s, not before it.
            let last = Instant::now();
            assert!(
                closed_by(&mut tunnel, last + IDLE + Duration::from_secs(1)).await,
                "{via:?}: the idle tunnel was not closed within idle_timeout + 1 s"
            );
            // (The gateway saw the last byte a little before `last`: some slack.)
            let idle_for = last.elapsed();
            assert!(
                idle_for >= IDLE - Duration::from_millis(300),
                "{via:?}: closed after {idle_for:?} idle, before the idle timeout"
            );
            echo.connection_ended_by(last + IDLE + Duration::from_secs(1), &format!("{via:?}"))
                .await;
            let line = tunnel_close_line(log.path(), target).await;
            assert_eq!(line["reason"], "idle_timeout", "{via:?}: {line}");
            assert_eq!(line["route"], "tunnels", "{via:?}: {line}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_tunnel_is_closed_at_its_routes_max_duration() {
    bounded(async {
        let mut echo = Watched::start().await;
        let target = echo.backend.address;
        let log = tempfile::NamedTempFile::new().unwrap();
        let gw = TestGateway::start(&terminator(
            target,
            log.path(),
            "",
            "",
            "        max_duration: 1s\n",
        ));
        let tunnels = Tunnels::new(Via::Http1, gw.address("connect"), target);
        let mut tunnel = tunnels.open().await;
        let opened = Instant::now();
        let deadline = opened + Duration::from_secs(2);

        // A line every 100 ms, each echoed, until the gateway ends the tunnel.
        let mut pace = tokio::time::interval(Duration::from_millis(100));
        let mut last_echo = None;
        let closed_at = loop {
            pace.tick().await;
            assert!(
                Instant::now() < deadline,
                "the busy tunnel was not closed within max_duration + 1 s"
            );
            let sent = tunnel.stream.get_mut().write_all(b"busy\n").await;
            let echoed = match sent {
                Ok(()) => timeout_at(deadline, tunnel.line()).await.ok().flatten(),
                Err(_) => None,
            };
            match echoed {
                Some(line) => {
                    assert_eq!(line, "busy");
                    last_echo = Some(opened.elapsed());
                }
                None => break opened.elapsed(),
            }
        };
        let last_echo = last_echo.expect("the tunnel relayed before it was closed");
        assert!(
            last_echo >= Duration::from_millis(600),
            "the busy tunnel was closed early: last echo at {last_echo:?}, closed at {closed_at:?}"
        );
        echo.connection_ended_by(deadline, "max_duration").await;
        let line = tunnel_close_line(log.path(), target).await;
        assert_eq!(line["reason"], "max_duration", "{line}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_is_withdrawn_when_reauthorization_says_no() {
    bounded(async {
        let mut echo = Watched::start().await;
        let target = echo.backend.address;
        let log = tempfile::NamedTempFile::new().unwrap();
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let authorization = "{ ext_authz: iam, reauthorize_every: 300ms }";
        let gw = TestGateway::start(&authorized(target, log.path(), &authorizer, authorization));
        let tunnels = Tunnels::new(Via::Http1, gw.address("connect"), target);
        let mut tunnel = tunnels.open().await;
        assert!(
            !authorizer.requests().is_empty(),
            "the tunnel was authorized"
        );

        // A re-check that allows leaves the tunnel alone.
        let rechecked =
            tokio::time::timeout(Duration::from_secs(1), authorizer.wait_for_requests(2)).await;
        assert!(
            rechecked.is_ok(),
            "no re-check of the live tunnel within 1 s (reauthorize_every: 300ms)"
        );
        tunnel.assert_echo("still allowed").await;

        // Access revoked: the next re-check closes it, on both sides.
        authorizer.set(Verdict::Deny("revoked".into()));
        let denied = Instant::now();
        let deadline = denied + Duration::from_millis(300) + Duration::from_secs(1);
        assert!(
            closed_by(&mut tunnel, deadline).await,
            "the tunnel was not closed within one re-check interval + 1 s of the deny"
        );
        echo.connection_ended_by(deadline, "reauthorization").await;
        let line = tunnel_close_line(log.path(), target).await;
        assert_eq!(line["reason"], "reauthorization_denied", "{line}");
        assert_eq!(line["authz"], "ext_authz_allow", "{line}");
    })
    .await;
}

/// With a limit of 2 connections, an outer connection (the HTTP connection the tunnels
/// arrive on) counts as 1 and each tunnel on it as 1 more. So: the first tunnel opens; a
/// second one, while the first is open, does not reach the backend and does not get a 200
/// (a refusal status, or a connection closed at once; through the edge, the edge closes
/// its client without the backend's greeting); the first is not disturbed by it; once the
/// first has closed, a new tunnel opens.
async fn tunnels_count_against(top: &str, listener: &str) {
    for via in [Via::Http1, Via::Http2] {
        let what = format!("{via:?}, {}{}", top.trim(), listener.trim());
        let echo = Watched::start().await;
        let target = echo.backend.address;
        let log = tempfile::NamedTempFile::new().unwrap();
        let gw = TestGateway::start(&terminator(target, log.path(), top, listener, ""));
        let tunnels = Tunnels::new(via, gw.address("connect"), target);

        let mut first = tunnels.open().await;
        assert_eq!(echo.backend.accepted(), 1);

        let second = tunnels.try_open().await;
        assert!(
            second.is_err(),
            "{what}: a second tunnel opened over the limit of 2"
        );
        assert_eq!(
            echo.backend.accepted(),
            1,
            "{what}: the refused tunnel reached the backend"
        );
        first.assert_echo("the first tunnel is not disturbed").await;

        // The first one ends: its place is free again (released as it is closed; a few
        // tries until the release is seen, each of them refused before any dial).
        drop(first);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut again = loop {
            match tunnels.try_open().await {
                Ok(client) => break client,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "{what}: no tunnel opens after the first closed: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        again.assert_echo("a new tunnel in the freed place").await;
        assert_eq!(echo.backend.accepted(), 2, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_count_against_the_listeners_connection_limit() {
    bounded(tunnels_count_against("", "    connection_limit: 2\n")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_count_against_the_gateways_max_connections() {
    bounded(tunnels_count_against("max_connections: 2\n", "")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorizer_is_told_the_tunnels_target() {
    bounded(async {
        let echo = Watched::start().await;
        let target = echo.backend.address;
        let log = tempfile::NamedTempFile::new().unwrap();
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let authorization = "{ ext_authz: iam }";
        let gw = TestGateway::start(&authorized(target, log.path(), &authorizer, authorization));
        let tunnels = Tunnels::new(Via::Http1, gw.address("connect"), target);
        let mut tunnel = tunnels.open().await;
        tunnel.assert_echo("authorized").await;

        let requests = authorizer.requests();
        assert_eq!(requests.len(), 1);
        let attributes = requests[0].attributes.as_ref().unwrap();
        let extensions = &attributes.context_extensions;
        assert_eq!(extensions["route"], "tunnels");
        let port = target.port().to_string();
        assert_eq!(
            extensions.get("tunnel_host").map(String::as_str),
            Some("127.0.0.1"),
            "the CONNECT target's host: {extensions:?}"
        );
        assert_eq!(
            extensions.get("tunnel_port").map(String::as_str),
            Some(port.as_str()),
            "the CONNECT target's port: {extensions:?}"
        );
        // The same attributes as a Struct (docs/authz.md).
        let metadata = &attributes
            .metadata_context
            .as_ref()
            .unwrap()
            .filter_metadata["causeway"];
        assert!(
            metadata.fields.contains_key("tunnel_host")
                && metadata.fields.contains_key("tunnel_port"),
            "{metadata:?}"
        );
    })
    .await;
}
