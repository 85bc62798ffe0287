//! OpenTelemetry traces (docs/observability.md): a SERVER span per connection with a span
//! for each phase, exported over OTLP/gRPC and OTLP/HTTP to in-test receivers; the
//! authorizer told the context of its call; one trace across a tunnel; trace ids in the
//! access log and `/connections`; a collector that is down costs connections nothing.

use serde_json::Value;
use std::path::Path;
use testkit::authorizer::{TestAuthorizer, Verdict};
use testkit::otlp::{OtlpReceiver, ReceivedSpan};
use testkit::pki::Ca;
use testkit::tls_peer::{client_config, connect};
use testkit::{Backend, Client, TestGateway, bounded, closed_port, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `tracing` section for `receiver` (`protocol`: grpc or http/protobuf), exporting
/// every 20 ms so tests do not wait.
pub(crate) fn tracing_yaml(receiver: &OtlpReceiver, protocol: &str) -> String {
    format!(
        "tracing:\n  endpoint: {}\n  protocol: {protocol}\n  service_name: causeway-test\n  batch: {{ schedule_delay: 20ms }}\n",
        receiver.endpoint()
    )
}

/// A gateway with `top` (tracing, access log...) and one listener, `edge`, in front of
/// `echo`.
fn edge_gateway(top: &str, echo: &Backend) -> TestGateway {
    TestGateway::start(&format!(
        "{top}\nlisteners:\n  - {{ name: edge, address: 127.0.0.1:0, routes: [{{ cluster: echo }}] }}\nclusters:\n  - {{ name: echo, endpoints: [{{ address: \"{}\" }}] }}\n",
        echo.address
    ))
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one `{name}` span: {spans:#?}");
    found[0]
}

/// The child of `parent` named `name`.
fn child<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan, name: &str) -> &'a ReceivedSpan {
    let found: Vec<_> = (spans.iter())
        .filter(|s| s.name == name && s.parent_span_id == parent.span_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one `{name}` in `{}`: {spans:#?}",
        parent.name
    );
    assert_eq!(found[0].trace_id, parent.trace_id);
    found[0]
}

fn log_lines(path: &Path) -> Vec<Value> {
    (std::fs::read_to_string(path).unwrap_or_default().lines())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_one_server_span_with_a_span_for_each_phase() {
    bounded(async {
        let otlp = OtlpReceiver::grpc().await;
        let authorizer = TestAuthorizer::start(Verdict::Allow).await;
        let echo = Backend::echo("echo").await;
        let log = tempfile::NamedTempFile::new().unwrap();
        // The preferred endpoint is down: the dial's span shows the failed attempt.
        let gw = TestGateway::start(&format!(
            r#"{}access_log: {{ path: "{}" }}
authorizers:
  - {{ name: iam, address: "{}" }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes:
      - name: checked
        authorization: {{ ext_authz: iam }}
        cluster: echo
clusters:
  - name: echo
    endpoints: [{{ address: "{}", priority: 0 }}, {{ address: "{}", priority: 1 }}]
"#,
            tracing_yaml(&otlp, "grpc"),
            log.path().display(),
            authorizer.address,
            closed_port(),
            echo.address,
        ));
        let (mut client, greeting) = Client::greeted(gw.address("edge")).await;
        assert_eq!(greeting, "echo");
        client.assert_echo("traced").await;
        // While it lives, /connections names its trace.
        let live = gw.gateway.connections_snapshot();
        let trace_id = live[0].trace_id.clone().expect("a trace id");
        drop(client);

        let spans = otlp
            .wait_until("the connection's span", |s| {
                !named(s, "connection").is_empty()
            })
            .await;
        let connection = one(&spans, "connection");
        assert_eq!(connection.kind, "server");
        assert_eq!(connection.service, "causeway-test");
        assert_eq!(connection.trace_id, trace_id);
        assert!(connection.parent_span_id.is_empty(), "a trace starts here");
        for (key, value) in [
            ("client.address", "127.0.0.1"),
            ("network.peer.address", "127.0.0.1"),
            ("network.transport", "tcp"),
            ("causeway.listener", "edge"),
            ("causeway.route", "checked"),
            ("causeway.cluster", "echo"),
            ("causeway.endpoint", &echo.address.to_string()),
            ("causeway.authz", "ext_authz_allow"),
            ("causeway.bytes.upstream", "7"),
            ("causeway.bytes.downstream", "12"),
        ] {
            assert_eq!(connection.attr(key), Some(value), "{key}: {connection:#?}");
        }
        assert!(connection.attr("causeway.close_reason").is_some());
        // Phases: authorization (with the ext_authz call inside) and the dial.
        let authorize = child(&spans, connection, "authorize");
        assert_eq!(authorize.attr("causeway.authz"), Some("ext_authz_allow"));
        let check = child(
            &spans,
            authorize,
            "envoy.service.auth.v3.Authorization/Check",
        );
        assert_eq!(check.kind, "client");
        assert_eq!(check.attr("rpc.system"), Some("grpc"));
        let dial = child(&spans, connection, "connect");
        assert_eq!(dial.kind, "client");
        assert_eq!(
            dial.attr("server.port"),
            Some(&*echo.address.port().to_string())
        );
        assert_eq!(
            dial.events,
            ["connect_failed"],
            "the down endpoint was tried first"
        );
        // The authorizer was told the context of its call: its trace joins ours.
        let sent = format!("00-{}-{}-01", check.trace_id, check.span_id);
        assert_eq!(authorizer.traceparents(), [sent]);
        // The access-log line leads to the trace.
        eventually("the access-log line", || !log_lines(log.path()).is_empty()).await;
        let line = &log_lines(log.path())[0];
        assert_eq!(line["trace_id"], connection.trace_id.as_str());
        assert_eq!(line["span_id"], connection.span_id.as_str());
        eventually("the exported spans are counted", || {
            gw.metric("causeway_trace_spans_exported_total", &[]) >= 4.0
        })
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_connection_over_otlp_http_and_its_refusals() {
    bounded(async {
        let otlp = OtlpReceiver::http().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("trace CA");
        let (cert, key) = ca
            .server(&["echo.causeway.test"])
            .write(dir.path(), "server");
        let echo = Backend::echo("echo").await;
        let gw = TestGateway::start(&format!(
            r#"{}identities:
  - {{ name: server, cert: "{}", key: "{}" }}
  - {{ name: ca, bundle: "{}" }}
listeners:
  - name: tls
    address: 127.0.0.1:0
    routes:
      - terminate: {{ identities: [server], client_certificate: required, trust: ca }}
        cluster: echo
clusters:
  - {{ name: echo, endpoints: [{{ address: "{}" }}] }}
"#,
            tracing_yaml(&otlp, "http/protobuf"),
            cert.display(),
            key.display(),
            ca.write(dir.path(), "ca").display(),
            echo.address,
        ));
        let client = ca.spiffe("spiffe://causeway.test/client");
        let config = client_config(&ca.der(), Some(&client), &[]);
        let mut tls = connect(gw.address("tls"), "echo.causeway.test", config)
            .await
            .unwrap();
        let mut greeting = [0u8; 5];
        tls.read_exact(&mut greeting).await.unwrap();
        tls.write_all(b"x\n").await.unwrap();
        let mut echoed = [0u8; 2];
        tls.read_exact(&mut echoed).await.unwrap();
        tls.shutdown().await.unwrap();
        while tls.read(&mut echoed).await.is_ok_and(|n| n > 0) {}
        // A client without a certificate: its span ends with the handshake's failure.
        let config = client_config(&ca.der(), None, &[]);
        if let Ok(mut refused) = connect(gw.address("tls"), "echo.causeway.test", config).await {
            let _ = refused.read(&mut greeting).await;
        }
        let spans = otlp
            .wait_until("both connections", |s| named(s, "connection").len() == 2)
            .await;
        let mut connections = named(&spans, "connection");
        connections.sort_by_key(|s| s.error.is_some());
        let (good, refused) = (connections[0], connections[1]);
        let handshake = child(&spans, good, "tls handshake");
        assert_eq!(handshake.attr("tls.protocol.version"), Some("1.3"));
        assert_eq!(
            handshake.attr("tls.client.server_name"),
            Some("echo.causeway.test")
        );
        let spiffe = Some("spiffe://causeway.test/client");
        assert_eq!(handshake.attr("causeway.tls.peer.spiffe_id"), spiffe);
        assert_eq!(good.attr("causeway.tls.peer.spiffe_id"), spiffe);
        assert_eq!(good.error, None);
        let failed = child(&spans, refused, "tls handshake");
        assert!(failed.error.is_some(), "{failed:#?}");
        let why = Some("downstream_tls_no_certificate");
        assert_eq!(refused.attr("error.type"), why, "{refused:#?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnelled_connection_is_one_trace_from_the_edge_to_the_terminator() {
    bounded(async {
        let otlp = OtlpReceiver::grpc().await;
        let echo = Backend::echo("banner").await;
        let tracing = tracing_yaml(&otlp, "grpc");
        let (authority, port) = (echo.address.to_string(), echo.address.port().to_string());
        let p = crate::tunnels::pair_with("http2", &authority, &port, true, &tracing, "", &tracing);
        let (mut client, banner) = Client::greeted(p.edge.address("edge")).await;
        assert_eq!(banner, "banner");
        client.assert_echo("across").await;
        drop(client);
        let spans = otlp
            .wait_until("the edge's and the terminator's spans", |s| {
                !named(s, "tunnel").is_empty() && !named(s, "CONNECT").is_empty()
            })
            .await;
        let tunnel = one(&spans, "tunnel");
        let connect = one(&spans, "CONNECT");
        assert_eq!(connect.kind, "client");
        assert_eq!(tunnel.kind, "server");
        assert_eq!(
            tunnel.trace_id, connect.trace_id,
            "one trace across the tunnel"
        );
        assert_eq!(
            tunnel.parent_span_id, connect.span_id,
            "the tunnel is the CONNECT's child"
        );
        assert_eq!(tunnel.attr("causeway.tunnel.port"), Some(&*port));
        // The edge's connection is the CONNECT's parent.
        let edge = spans
            .iter()
            .find(|s| s.span_id == connect.parent_span_id)
            .expect("the edge connection's span");
        assert_eq!((edge.name.as_str(), edge.kind), ("connection", "server"));
        assert_eq!(edge.attr("causeway.listener"), Some("edge"));
        // The terminator dialed the backend within the tunnel's span.
        child(&spans, tunnel, "connect");
        // How long the tunnel took to open, in the edge's histogram.
        let opened = [("cluster", "tunnel")];
        let count = p
            .edge
            .metric("causeway_tunnel_open_duration_seconds_count", &opened);
        assert_eq!(count, 1.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_connections_nothing_but_dropped_spans() {
    bounded(async {
        let echo = Backend::echo("echo").await;
        let gw = edge_gateway(
            &format!(
                r#"tracing:
  endpoint: http://{}
  timeout: 200ms
  batch: {{ schedule_delay: 20ms }}"#,
                closed_port(),
            ),
            &echo,
        );
        for i in 0..20 {
            let (mut client, greeting) = Client::greeted(gw.address("edge")).await;
            assert_eq!(greeting, "echo");
            client.assert_echo(&format!("still here {i}")).await;
        }
        eventually("spans are counted as dropped", || {
            gw.metric(
                "causeway_trace_spans_dropped_total",
                &[("reason", "export_failed")],
            ) >= 20.0
        })
        .await;
        assert_eq!(gw.metric("causeway_trace_spans_exported_total", &[]), 0.0);
    })
    .await;
}

/// A `traceparent` is believed only from an edge the terminator trusts (as for the client
/// address header): from anyone else the tunnel's span starts a trace of its own, linked to
/// what the caller claimed; from a trusted edge it continues the caller's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_trusted_callers_trace_is_continued() {
    bounded(async {
        let otlp = OtlpReceiver::grpc().await;
        let echo = Backend::silent_echo().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("tunnel CA");
        let top = tracing_yaml(&otlp, "grpc");
        let gw = crate::tunnel_security::mtls_terminator(&ca, dir.path(), echo.address, &top);
        let claimed_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let header = format!("traceparent: 00-{claimed_trace}-00f067aa0ba902b7-01\r\n");
        for peer in [
            "spiffe://causeway.test/other",
            "spiffe://causeway.test/edge",
        ] {
            let config = client_config(&ca.der(), Some(&ca.spiffe(peer)), &[]);
            let tls = connect(gw.address("connect"), "terminator.causeway.test", config)
                .await
                .unwrap();
            let stream = tokio::io::BufReader::new(tls);
            let authority = echo.address.to_string();
            let (status, tunnel) =
                crate::tunnel_security::connect_over(stream, &authority, &header).await;
            assert_eq!(status, Some(200), "{peer}");
            drop(tunnel);
        }
        let spans = otlp
            .wait_until("two tunnels", |s| named(s, "tunnel").len() == 2)
            .await;
        let claimed = format!("{claimed_trace}-00f067aa0ba902b7");
        let (continued, linked): (Vec<&ReceivedSpan>, Vec<&ReceivedSpan>) = named(&spans, "tunnel")
            .into_iter()
            .partition(|s| s.trace_id == claimed_trace);
        assert_eq!((continued.len(), linked.len()), (1, 1), "{spans:#?}");
        assert_eq!(continued[0].parent_span_id, "00f067aa0ba902b7");
        assert!(
            linked[0].parent_span_id.is_empty(),
            "an untrusted caller's trace is not ours"
        );
        assert!(linked[0].links.contains(&claimed), "{:#?}", linked[0]);
    })
    .await;
}

/// What an inspecting listener read is on the connection's span: FIX CompIDs (never the
/// Logon's password), the MQ channel and queue manager, the SSH user; with an `inspect`
/// phase before the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_mq_and_ssh_sessions_carry_what_was_read_of_them() {
    bounded(async {
        let otlp = OtlpReceiver::grpc().await;
        let tracing = tracing_yaml(&otlp, "grpc");
        // FIX: examples/fix.yaml.
        let (venue1, _) = testkit::fix::acceptor("VENUE1").await;
        let (venue2, _) = testkit::fix::acceptor("VENUE2").await;
        let (v1, v2) = (venue1.address.to_string(), venue2.address.to_string());
        let fix = crate::fix::gateway(&v1, &v1, &v2, &tracing);
        let (session, answer) = crate::fix::log_on(&fix, "CLIENT1", "VENUE1").await;
        assert_eq!(answer.msg_type(), "A");
        drop(session);
        // MQ: a plaintext first segment.
        let app = Backend::echo("app").await;
        let mq = TestGateway::start(&format!(
            r#"{tracing}listeners:
  - name: mq
    address: 127.0.0.1:0
    protocol: mq
    routes: [{{ match: {{ mq: {{ channel: [APP1.SVRCONN] }} }}, cluster: app }}]
clusters:
  - {{ name: app, endpoints: [{{ address: "{}" }}] }}
"#,
            app.address
        ));
        let first = protocols::mq::encode_initial(
            protocols::mq::Segment::Tsh,
            false,
            "APP1.SVRCONN",
            "QM1",
        );
        let mut stream = tokio::net::TcpStream::connect(mq.address("mq"))
            .await
            .unwrap();
        stream.write_all(&first).await.unwrap();
        let mut greeting = [0u8; 4];
        stream.read_exact(&mut greeting).await.unwrap();
        drop(stream);
        // SSH: a login that runs one command.
        let sshd = testkit::ssh::Sshd::start().await;
        let yaml = crate::sftp::gateway_yaml(
            &sshd.address.to_string(),
            ", allow: { exec: true }",
            &crate::sftp::pinned(),
        );
        let ssh = TestGateway::start(&format!("{tracing}{yaml}"));
        let client = testkit::ssh::Client::new(ssh.address("sftp"));
        let mut command = client.command("ssh", &client.key("alice"));
        command.arg("alice@127.0.0.1").arg("true");
        let out = command.output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        let spans = otlp
            .wait_until("the FIX, MQ and SSH spans", |s| {
                named(s, "connection").len() == 2
                    && !named(s, "ssh session").is_empty()
                    && !named(s, "ssh channel").is_empty()
            })
            .await;
        let by_listener = |name: &str| {
            *named(&spans, "connection")
                .iter()
                .find(|s| s.attr("causeway.listener") == Some(name))
                .unwrap_or_else(|| panic!("{name}: {spans:#?}"))
        };
        let fix_span = by_listener("fix");
        assert_eq!(
            fix_span.attr("causeway.fix.sender_comp_id"),
            Some("CLIENT1")
        );
        assert_eq!(fix_span.attr("causeway.fix.target_comp_id"), Some("VENUE1"));
        child(&spans, fix_span, "inspect");
        let mq_span = by_listener("mq");
        assert_eq!(mq_span.attr("causeway.mq.channel"), Some("APP1.SVRCONN"));
        assert_eq!(mq_span.attr("causeway.mq.queue_manager"), Some("QM1"));
        child(&spans, mq_span, "inspect");
        let session = one(&spans, "ssh session");
        assert_eq!(session.kind, "server");
        assert_eq!(session.attr("causeway.ssh.user"), Some("alice"));
        assert_eq!(session.attr("causeway.ssh.auth_method"), Some("publickey"));
        child(&spans, session, "authorize");
        let channel = child(&spans, session, "ssh channel");
        assert_eq!(channel.attr("causeway.ssh.channel"), Some("exec"));
        // Never a secret: the FIX Logon carried a password.
        for span in &spans {
            assert!(
                !span.attributes.values().any(|v| v.contains("hunter2")),
                "{span:#?}"
            );
        }
    })
    .await;
}

/// Causeway edge → Envoy terminator with its OpenTelemetry tracer, both exporting to one
/// receiver: Envoy's span of the CONNECT joins the edge's trace, as the CONNECT's child, and
/// the edge's access-log line names that trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envoy_terminator_joins_the_edges_trace() {
    bounded(async {
        let otlp = OtlpReceiver::grpc().await;
        let echo = Backend::echo("banner").await;
        let envoy_address = closed_port();
        let _envoy = crate::tunnels::Envoy::start(
            &format!(
                r#"layered_runtime:
  layers:
  - name: static
    static_layer:
      tracing.opentelemetry.flush_interval_ms: 50
      tracing.opentelemetry.min_flush_spans: 1
static_resources:
  listeners:
  - name: connect
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: connect
          codec_type: HTTP2
          http2_protocol_options: {{ allow_connect: true }}
          upgrade_configs: [{{ upgrade_type: CONNECT }}]
          tracing:
            random_sampling: {{ value: 100 }}
            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                grpc_service: {{ envoy_grpc: {{ cluster_name: otlp }}, timeout: 1s }}
                service_name: envoy-terminator
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ connect_matcher: {{}} }}
                route: {{ cluster: backend, upgrade_configs: [{{ upgrade_type: CONNECT, connect_config: {{}} }}] }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  clusters:
{}{}"#,
                envoy_address.port(),
                crate::tunnels::envoy_cluster("backend", echo.address, false),
                crate::tunnels::envoy_cluster("otlp", otlp.address, true),
            ),
            envoy_address,
        )
        .await;
        let log = tempfile::NamedTempFile::new().unwrap();
        let edge = TestGateway::start(&format!(
            r#"{}access_log: {{ path: "{}" }}
listeners:
  - name: edge
    address: 127.0.0.1:0
    routes: [{{ cluster: envoy }}]
clusters:
  - name: envoy
    endpoints: [{{ address: "{envoy_address}" }}]
    tunnel: {{ protocol: http2, authority: "{}" }}
"#,
            tracing_yaml(&otlp, "grpc"),
            log.path().display(),
            echo.address
        ));
        let (mut client, banner) = Client::greeted(edge.address("edge")).await;
        assert_eq!(banner, "banner");
        client.assert_echo("through Envoy").await;
        drop(client);
        let spans = otlp
            .wait_until("Envoy's span and the edge's CONNECT", |s| {
                s.iter().any(|s| s.service == "envoy-terminator") && !named(s, "CONNECT").is_empty()
            })
            .await;
        let connect = one(&spans, "CONNECT");
        let envoy = spans
            .iter()
            .find(|s| s.service == "envoy-terminator")
            .unwrap();
        assert_eq!(envoy.trace_id, connect.trace_id, "Envoy joined the edge's trace: {spans:#?}");
        assert_eq!(envoy.parent_span_id, connect.span_id, "{envoy:#?}");
        eventually("the access-log line", || !log_lines(log.path()).is_empty()).await;
        assert_eq!(log_lines(log.path())[0]["trace_id"], connect.trace_id.as_str());
    })
    .await;
}

/// examples/tracing.yaml with `causeway trace-receiver` (the real binary) as its collector:
/// the receiver prints the connection's span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracing_example_runs_as_documented() {
    bounded(async {
        use tokio::io::AsyncBufReadExt;
        let collector = closed_port();
        let mut receiver = tokio::process::Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["trace-receiver", &collector.to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut printed = tokio::io::BufReader::new(receiver.stdout.take().unwrap()).lines();
        let first = printed.next_line().await.unwrap().unwrap();
        assert!(first.starts_with("OTLP/grpc trace receiver on"), "{first}");
        let echo = Backend::echo("traced").await;
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let yaml = std::fs::read_to_string(root.join("examples/tracing.yaml"))
            .unwrap()
            .replace("127.0.0.1:4317", &collector.to_string())
            .replace("127.0.0.1:10500", "127.0.0.1:0")
            .replace("127.0.0.1:10501", &echo.address.to_string())
            .replace("schedule_delay: 1s", "schedule_delay: 20ms")
            .replace("access_log: {}", "");
        let gw = TestGateway::start(&yaml);
        let (mut client, greeting) = Client::greeted(gw.address("traced")).await;
        assert_eq!(greeting, "traced");
        client.assert_echo("hello").await;
        drop(client);
        let line = loop {
            let line = printed
                .next_line()
                .await
                .unwrap()
                .expect("the receiver prints spans");
            if line.contains("server \"connection\"") {
                break line;
            }
        };
        for part in [
            "causeway-edge",
            "causeway.listener=\"traced\"",
            "causeway.route=\"default\"",
        ] {
            assert!(line.contains(part), "{part}: {line}");
        }
    })
    .await;
}

/// A long-lived connection's span is ended every `span_max_duration` and continued in a
/// new one of the same trace, linked to the one before; a drain shows as an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_connection_is_continued_in_linked_spans_while_it_lives() {
    bounded(async {
        let otlp = OtlpReceiver::grpc().await;
        let echo = Backend::echo("echo").await;
        let gw = edge_gateway(
            &format!(
                r#"tracing:
  endpoint: {}
  span_max_duration: 200ms
  batch: {{ schedule_delay: 20ms }}
drain: {{ timeout: 100ms }}"#,
                otlp.endpoint(),
            ),
            &echo,
        );
        let (mut client, _) = Client::greeted(gw.address("edge")).await;
        client.assert_echo("still here").await;
        // Two stretches are exported while the connection lives.
        let spans = otlp
            .wait_until("two continued stretches", |s| {
                named(s, "connection").len() >= 2
            })
            .await;
        let mut stretches = named(&spans, "connection");
        stretches.sort_by_key(|s| s.start_unix_nano);
        let (first, second) = (stretches[0], stretches[1]);
        assert_eq!(first.attr("causeway.span.continued"), Some("true"));
        assert_eq!(second.trace_id, first.trace_id, "one trace");
        assert!(
            second
                .links
                .contains(&format!("{}-{}", first.trace_id, first.span_id))
        );
        assert_eq!(
            second.attr("causeway.listener"),
            Some("edge"),
            "attributes carried on"
        );
        assert!(
            first.end_unix_nano - first.start_unix_nano >= 150_000_000,
            "{first:#?}"
        );
        // The last stretch ends with the connection: a drain closes it, as an event.
        gw.shutdown().await;
        let spans = otlp
            .wait_until("the last stretch", |s| {
                named(s, "connection")
                    .iter()
                    .any(|s| s.attr("causeway.close_reason").is_some())
            })
            .await;
        let last = named(&spans, "connection")
            .into_iter()
            .find(|s| s.attr("causeway.close_reason").is_some())
            .unwrap();
        assert_eq!(last.attr("error.type"), Some("shutdown"), "{last:#?}");
        assert!(
            last.events.contains(&"close_requested".to_string()),
            "{last:#?}"
        );
    })
    .await;
}

/// `access_log.otlp`: each access-log line also goes to the collector as an OTLP log
/// record, carrying its connection's trace and span ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_reach_the_collector_as_log_records_in_their_trace() {
    bounded(async {
        let otlp = OtlpReceiver::http().await;
        let echo = Backend::echo("echo").await;
        let log = tempfile::NamedTempFile::new().unwrap();
        let gw = edge_gateway(
            &format!(
                r#"{}access_log: {{ path: "{}", otlp: true }}"#,
                tracing_yaml(&otlp, "http/protobuf"),
                log.path().display(),
            ),
            &echo,
        );
        let (mut client, _) = Client::greeted(gw.address("edge")).await;
        client.assert_echo("logged").await;
        drop(client);
        let records = otlp.wait_for_logs(1).await;
        let record = &records[0];
        assert_eq!(record.service, "causeway-test");
        let line: Value = serde_json::from_str(&record.body).expect("the JSON line");
        assert_eq!(line["event"], "close");
        assert_eq!(
            line["trace_id"],
            record.trace_id.as_str(),
            "in the connection's trace"
        );
        assert_eq!(line["span_id"], record.span_id.as_str());
        // The same line in the file.
        eventually("the file's line", || !log_lines(log.path()).is_empty()).await;
        assert_eq!(
            log_lines(log.path())[0]["trace_id"],
            record.trace_id.as_str()
        );
        eventually("the record is counted", || {
            gw.metric("causeway_access_log_otlp_exported_total", &[]) >= 1.0
        })
        .await;
    })
    .await;
}

#[test]
fn access_log_otlp_needs_a_collector() {
    let config = config::parse(
        "access_log: { otlp: true }\nlisteners:\n  - { name: l, address: 127.0.0.1:0, routes: [{ cluster: c }] }\nclusters:\n  - { name: c, endpoints: [{ address: \"127.0.0.1:1\" }] }\n",
        "test.yaml",
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = runtime
        .block_on(async { proxy::Gateway::start(&config).map(|_| ()) })
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("access_log.otlp") && error.contains("tracing"),
        "{error}"
    );
}

/// Spans to a collector over mTLS (its CA checked, our certificate presented), with the
/// configured headers on every export; `/config` shows the header names, never their
/// values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_a_collector_over_mtls_with_headers() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("collector CA");
        let server = ca.server(&["localhost"]);
        let otlp = OtlpReceiver::grpc_tls(&server.cert_pem, &server.key_pem, Some(&ca.pem())).await;
        let (cert, key) = ca
            .spiffe("spiffe://causeway.test/gateway")
            .write(dir.path(), "gateway");
        let echo = Backend::echo("echo").await;
        let gw = edge_gateway(
            &format!(
                r#"tracing:
  endpoint: https://localhost:{}
  headers: {{ x-api-key: s3cret }}
  tls: {{ ca: "{}", certificate: "{}", key: "{}" }}
  batch: {{ schedule_delay: 20ms }}"#,
                otlp.address.port(),
                ca.write(dir.path(), "ca").display(),
                cert.display(),
                key.display(),
            ),
            &echo,
        );
        let (mut client, _) = Client::greeted(gw.address("edge")).await;
        client.assert_echo("secured").await;
        drop(client);
        otlp.wait_until("the span, over mTLS", |s| {
            !named(s, "connection").is_empty()
        })
        .await;
        let headers = otlp.last_headers();
        assert!(
            headers.contains(&("x-api-key".into(), "s3cret".into())),
            "{headers:?}"
        );
        let shown = serde_json::to_string(&gw.gateway.config()).unwrap();
        assert!(
            shown.contains("x-api-key") && !shown.contains("s3cret"),
            "{shown}"
        );
    })
    .await;
}

/// A collector whose certificate is not from the configured CA gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_with_an_unknown_certificate_gets_no_spans() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (Ca::new("our CA"), Ca::new("another CA"));
        let server = theirs.server(&["localhost"]);
        let otlp = OtlpReceiver::grpc_tls(&server.cert_pem, &server.key_pem, None).await;
        let echo = Backend::echo("echo").await;
        let gw = edge_gateway(
            &format!(
                "tracing:\n  endpoint: https://localhost:{}\n  tls: {{ ca: \"{}\" }}\n  timeout: 500ms\n  batch: {{ schedule_delay: 20ms }}\n",
                otlp.address.port(),
                ours.write(dir.path(), "ca").display(),
            ),
            &echo,
        );
        let (mut client, _) = Client::greeted(gw.address("edge")).await;
        client.assert_echo("refused").await;
        drop(client);
        eventually("the span is dropped", || {
            gw.metric("causeway_trace_spans_dropped_total", &[("reason", "export_failed")]) >= 1.0
        })
        .await;
        assert!(otlp.spans().is_empty());
    })
    .await;
}

/// Behind a load balancer: the `proxy_header` phase, and `client.address` on the
/// connection's span is the client the PROXY header named, `network.peer.address` the
/// balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_header_phase_names_the_real_client() {
    bounded(async {
        let otlp = OtlpReceiver::grpc().await;
        let echo = Backend::echo("echo").await;
        let gw = TestGateway::start(&format!(
            "{}listeners:\n  - name: edge\n    address: 127.0.0.1:0\n    proxy_protocol: {{ mode: required, trusted_sources: [127.0.0.1/32] }}\n    routes: [{{ cluster: echo }}]\nclusters:\n  - {{ name: echo, endpoints: [{{ address: \"{}\" }}] }}\n",
            tracing_yaml(&otlp, "grpc"),
            echo.address
        ));
        let mut stream = tokio::net::TcpStream::connect(gw.address("edge")).await.unwrap();
        stream
            .write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n")
            .await
            .unwrap();
        let mut greeting = [0u8; 5];
        stream.read_exact(&mut greeting).await.unwrap();
        drop(stream);
        let spans = otlp
            .wait_until("the connection's span", |s| !named(s, "connection").is_empty())
            .await;
        let connection = one(&spans, "connection");
        assert_eq!(connection.attr("client.address"), Some("192.0.2.7"));
        assert_eq!(connection.attr("client.port"), Some("40000"));
        assert_eq!(connection.attr("network.peer.address"), Some("127.0.0.1"));
        assert_eq!(connection.attr("causeway.proxy_protocol.peer").map(|p| p.starts_with("127.0.0.1:")), Some(true));
        let phase = child(&spans, connection, "proxy_header");
        assert_eq!(phase.attr("client.address"), Some("192.0.2.7"));
    })
    .await;
}
