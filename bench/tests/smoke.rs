//! The benchmark in CI size: every mode for a moment through an in-process gateway, checking
//! that every byte comes back. No timing is asserted.

use bench::modes::{ConnectionRate, IdleHold, PingPong, Target, Throughput};
use std::time::Duration;
use testkit::{Backend, TestGateway, bounded};

async fn gateway() -> (Backend, TestGateway) {
    let echo = Backend::silent_echo().await;
    let gw = TestGateway::start(&format!(
        "listeners:\n  - name: bench\n    address: 127.0.0.1:0\n    routes: [{{ cluster: echo }}]\nclusters:\n  - {{ name: echo, endpoints: [{{ address: \"{}\" }}] }}\n",
        echo.address
    ));
    (echo, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_runs_and_every_byte_comes_back() {
    bounded(async {
        let (_echo, gw) = gateway().await;
        let address = gw.address("bench");
        let target = &Target::plain(address);
        let short = Duration::from_millis(300);

        let p = PingPong {
            connections: 4,
            size: 128,
            duration: short,
        }
        .run(target)
        .await
        .unwrap();
        assert!(
            p.messages > 0 && p.p50_us > 0.0 && p.p99_us >= p.p50_us,
            "{p:?}"
        );

        for streams in [1, 3] {
            let t = Throughput {
                streams,
                duration: short,
                verify_content: true,
            }
            .run(address)
            .await
            .unwrap();
            assert!(t.bytes > 0, "{t:?}");
        }

        let c = ConnectionRate {
            concurrency: 4,
            duration: short,
        }
        .run(target)
        .await
        .unwrap();
        assert!(c.connections > 0, "{c:?}");

        let held = IdleHold {
            connections: 200,
            hold: Duration::from_millis(100),
            open_concurrency: 32,
        }
        .run(target, || async { gw.gateway.active_connections() as u64 })
        .await
        .unwrap();
        assert_eq!(held.connections, 200);
        assert!(
            held.measured >= 200,
            "the gateway held every connection: {held:?}"
        );
    })
    .await
}

/// The TLS modes through a terminating gateway: handshakes full and resumed (each loop
/// resumes its own sessions), ping-pong and idle hold over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_modes_handshake_resume_and_echo() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let pki = bench::tls::Pki::write(dir.path()).unwrap();
        let echo = Backend::silent_echo().await;
        let gw = TestGateway::start(&format!(
            "identities:\n  - {{ name: bench, cert: \"{}\", key: \"{}\" }}\nlisteners:\n  - name: bench\n    address: 127.0.0.1:0\n    routes: [{{ cluster: echo, terminate: {{ identities: [bench] }} }}]\nclusters:\n  - {{ name: echo, endpoints: [{{ address: \"{}\" }}] }}\n",
            pki.cert.display(),
            pki.key.display(),
            echo.address
        ));
        let short = Duration::from_millis(300);
        let address = gw.address("bench");
        for resume in [false, true] {
            let client = bench::tls::Client::new(resume);
            let target = Target {
                tls: Some(client.clone()),
                ..Target::plain(address)
            };
            let case = ConnectionRate {
                concurrency: 4,
                duration: short,
            };
            let c = case.run(&target).await.unwrap();
            assert!(c.connections > 8, "{c:?}");
            let share = client.resumed_share();
            match resume {
                false => assert_eq!(share, 0.0),
                // The first handshake of each of the 4 loops is a full one.
                true => assert!(share > 0.5, "resumed {share}"),
            }
        }
        let target = &Target {
            tls: Some(bench::tls::Client::new(false)),
            ..Target::plain(address)
        };
        let p = PingPong {
            connections: 2,
            size: 100,
            duration: short,
        };
        assert!(p.run(target).await.unwrap().messages > 0);
        let hold = IdleHold {
            connections: 50,
            hold: Duration::from_millis(50),
            open_concurrency: 16,
        };
        let held = hold.run(target, || async { 0 }).await.unwrap();
        assert_eq!(held.connections, 50);
    })
    .await
}

/// New connections through FIX and MQ inspecting listeners: the first message routes, the
/// echo comes back whole, and its round trip is timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_through_inspecting_listeners_route_and_echo() {
    use bench::first_messages::{CHANNEL, VENUE, fix_logon, mq_initial};
    bounded(async {
        let echo = Backend::silent_echo().await;
        let gw = TestGateway::start(&format!(
            "listeners:\n  - name: fix\n    address: 127.0.0.1:0\n    protocol: fix\n    routes: [{{ match: {{ fix: {{ target_comp_id: [{VENUE}] }} }}, cluster: echo }}]\n  - name: mq\n    address: 127.0.0.1:0\n    protocol: mq\n    routes: [{{ match: {{ mq: {{ channel: [{CHANNEL}] }} }}, cluster: echo }}]\nclusters:\n  - {{ name: echo, endpoints: [{{ address: \"{}\" }}] }}\n",
            echo.address
        ));
        for (listener, message) in [("fix", fix_logon()), ("mq", mq_initial())] {
            let target = Target {
                first_message: Some(message.into()),
                ..Target::plain(gw.address(listener))
            };
            let case = ConnectionRate {
                concurrency: 4,
                duration: Duration::from_millis(300),
            };
            let r = case.run(&target).await.unwrap();
            assert!(r.connections > 8 && r.first_answer_p50_us > 0.0, "{r:?}");
        }
    })
    .await
}

/// The SFTP case's transfers against a real sshd: a put and a get that come back byte for
/// byte, a get of different bytes refused, and the cipher read from the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_transfers_put_get_and_check_their_bytes() {
    bounded(async {
        let sshd = testkit::ssh::Sshd::start().await;
        let dir = tempfile::tempdir().unwrap();
        let transfer = bench::modes::SftpTransfer {
            server: sshd.address,
            user: "alice".into(),
            key: testkit::ssh::private_key(dir.path(), "upstream_ed25519"),
        };
        let (local, got, other) = (
            dir.path().join("one"),
            dir.path().join("got"),
            dir.path().join("other"),
        );
        std::fs::write(&local, vec![7u8; 1 << 20]).unwrap();
        std::fs::write(&other, vec![8u8; 1 << 20]).unwrap();
        tokio::task::spawn_blocking(move || {
            assert!(transfer.put(&local, "one").unwrap() > 0.0);
            assert!(transfer.get("one", &got, &local).unwrap() > 0.0);
            let refused = transfer.get("one", &got, &other).unwrap_err();
            assert!(refused.contains("differs"), "{refused}");
            assert!(transfer.cipher().unwrap().contains('@'));
        })
        .await
        .unwrap();
    })
    .await
}
