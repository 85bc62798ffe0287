//! IBM MQ channels through a `protocol: mq` listener (examples/mq.yaml): plaintext first
//! segments of every kind (TSH, TSHC, TSHM; ASCII and EBCDIC) routed by channel and replayed
//! unchanged, TLS told apart and routed by the channel in its SNI, anything else refused.

use protocols::mq::{Segment, encode_initial};
use std::time::Duration;
use testkit::pki::Ca;
use testkit::{Backend, TestGateway, bounded, tls_peer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Sends `first` and returns the backend's greeting line and the echo of `first`; `None`
/// when the gateway closes the connection instead.
async fn first_flow(gw: &TestGateway, first: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut stream = TcpStream::connect(gw.address("mq")).await.unwrap();
    stream.write_all(first).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut greeting = String::new();
    let n = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut greeting))
        .await
        .expect("an answer or a close")
        .unwrap_or(0);
    if n == 0 {
        return None;
    }
    let mut echoed = vec![0u8; first.len()];
    reader.read_exact(&mut echoed).await.unwrap();
    Some((greeting.trim_end().to_string(), echoed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mq_example_routes_channels_from_headers_and_snis() {
    bounded(async {
        let ca = Ca::new("MQ CA");
        let qm_cert = ca.server(&["app12e-tls.chl.mq.ibm.com"]);
        let app1 = Backend::echo("app1").await;
        let app2 = Backend::echo("app2").await;
        let qm_tls = Backend::tls_echo("qm1", tls_peer::server_config(&qm_cert, None)).await;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let yaml = std::fs::read_to_string(root.join("examples/mq.yaml"))
            .unwrap()
            .replace("127.0.0.1:10400", "127.0.0.1:0")
            .replace("127.0.0.1:10401", &app1.address.to_string())
            .replace("127.0.0.1:10402", &app2.address.to_string())
            .replace("127.0.0.1:10403", &qm_tls.address.to_string())
            .replace("admin:\n  address: 127.0.0.1:9906\n", "");
        let gw = TestGateway::start(&yaml);

        // Plaintext: every segment kind and encoding, routed by channel, bytes unchanged.
        for segment in [Segment::Tsh, Segment::Tshc, Segment::Tshm] {
            for ebcdic in [false, true] {
                for (channel, backend) in [("APP1.SVRCONN", "app1"), ("APP2.SVRCONN", "app2")] {
                    let first = encode_initial(segment, ebcdic, channel, "QM1");
                    let (greeting, echoed) = first_flow(&gw, &first)
                        .await
                        .unwrap_or_else(|| panic!("{channel} {segment:?} ebcdic={ebcdic} refused"));
                    assert_eq!(greeting, backend);
                    assert!(echoed == first, "the first segment is replayed unchanged");
                }
            }
        }
        // Another channel, a malformed segment, neither TLS nor MQ: closed, nothing dialed.
        let before = app1.accepted() + app2.accepted();
        let mut not_initial = encode_initial(Segment::Tsh, false, "APP1.SVRCONN", "QM1");
        not_initial[9] = 0x09; // a heartbeat first
        for first in [
            encode_initial(Segment::Tsh, false, "OTHER.SVRCONN", "QM1"),
            not_initial,
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        ] {
            assert_eq!(first_flow(&gw, &first).await, None);
        }
        assert_eq!(app1.accepted() + app2.accepted(), before);
        assert_eq!(gw.rejected("mq", "no_route"), 1.0);
        assert_eq!(gw.rejected("mq", "inspection_failed"), 2.0);

        // TLS: the channel in the SNI; passed through to the queue manager, who terminates.
        let config = tls_peer::client_config(&ca.der(), None, &[]);
        let address = gw.address("mq");
        let mut tls = tls_peer::connect(address, "app12e-tls.chl.mq.ibm.com", config.clone())
            .await
            .expect("APP1.TLS is passed through");
        let mut line = String::new();
        BufReader::new(&mut tls).read_line(&mut line).await.unwrap();
        assert_eq!(line, "qm1 -\n");
        // Another channel's SNI, an MQ SNI that does not decode: refused.
        for sni in ["app22e-tls.chl.mq.ibm.com", "a2g-x.chl.mq.ibm.com"] {
            assert!(
                tls_peer::connect(address, sni, config.clone())
                    .await
                    .is_err(),
                "{sni}"
            );
        }
        assert_eq!(gw.rejected("mq", "no_route"), 2.0);
        assert_eq!(gw.rejected("mq", "inspection_failed"), 3.0);
        assert_eq!(qm_tls.accepted(), 1);
        let metrics = gw.metrics_text();
        for line in [
            r#"causeway_mq_connections_total{listener="mq",route="app1",channel="APP1.SVRCONN",queue_manager="QM1"} 6"#,
            r#"causeway_mq_connections_total{listener="mq",route="app2",channel="APP2.SVRCONN",queue_manager="QM1"} 6"#,
            r#"causeway_mq_connections_total{listener="mq",route="app1-tls",channel="APP1.TLS",queue_manager=""} 1"#,
        ] {
            assert!(metrics.contains(line), "{line} in\n{metrics}");
        }
    })
    .await;
}

/// Wireshark's MQ dissector (tshark, installed by scripts/test) reads the channel and queue
/// manager of the first segments the tests build exactly where the gateway does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tshark_reads_the_test_frames_as_the_gateway_does() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        for segment in [Segment::Tsh, Segment::Tshc, Segment::Tshm] {
            for ebcdic in [false, true] {
                let frame = encode_initial(segment, ebcdic, "APP1.SVRCONN", "QM1");
                let found = protocols::mq::initial_data(&frame).unwrap();
                let hex: String = frame
                    .chunks(16)
                    .enumerate()
                    .map(|(i, row)| {
                        let bytes: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
                        format!("{:06x} {}\n", i * 16, bytes.join(" "))
                    })
                    .collect();
                let (text, pcap) = (dir.path().join("mq.hex"), dir.path().join("mq.pcap"));
                std::fs::write(&text, hex).unwrap();
                let made = tokio::process::Command::new("text2pcap")
                    .args(["-q", "-T", "50000,1414"])
                    .arg(&text)
                    .arg(&pcap)
                    .output()
                    .await
                    .expect("text2pcap is installed (scripts/test installs tshark)");
                assert!(made.status.success(), "{made:?}");
                let out = tokio::process::Command::new("tshark")
                    .args(["-V", "-d", "tcp.port==1414,mq", "-r"])
                    .arg(&pcap)
                    .output()
                    .await
                    .expect("tshark is installed (scripts/test installs it)");
                let dissected = String::from_utf8_lossy(&out.stdout);
                let field = |name: &str| {
                    dissected
                        .lines()
                        .find_map(|l| l.trim().strip_prefix(name))
                        .map(|v| v.trim().to_string())
                };
                let what = format!("{segment:?} ebcdic={ebcdic}");
                assert_eq!(
                    field("ChannelNme:").as_deref(),
                    Some(found.channel.as_str()),
                    "{what}\n{dissected}"
                );
                assert_eq!(
                    field("QMgrName..:"),
                    found.queue_manager,
                    "{what}\n{dissected}"
                );
            }
        }
    })
    .await;
}
