//! The benchmark in CI size: every mode for a moment through an in-process gateway, checking
//! that every byte comes back. No timing is asserted.

use bench::modes::{ConnectionRate, IdleHold, PingPong, Throughput};
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
        let target = gw.address("bench");
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
            .run(target)
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
