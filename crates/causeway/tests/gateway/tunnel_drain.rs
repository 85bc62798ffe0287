//! A terminator that drains tells its HTTP/2 peers at once (GOAWAY when its listener stops
//! accepting): edges open their next tunnels elsewhere, the open tunnels go on, and the
//! drain ends as soon as they do — an idle pooled connection does not hold it to the end of
//! `drain.timeout`.

use crate::tunnel_lifecycle::{Tunnels, Via, Watched, terminator};
use std::time::Duration;
use testkit::{TestGateway, bounded};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_terminator_sends_goaway_and_ends_when_its_tunnels_do() {
    bounded(async {
        let echo = Watched::start().await;
        let target = echo.backend.address;
        let log = tempfile::NamedTempFile::new().unwrap();
        let gw = TestGateway::start(&terminator(
            target,
            log.path(),
            "drain: { delay: 200ms, timeout: 30s, spread: 1s }\n",
            "",
            "",
        ));
        let tunnels = Tunnels::new(Via::Http2, gw.address("connect"), target);
        let mut first = tunnels.open().await;

        let drain = tokio::spawn(gw.shutdown());
        tokio::time::sleep(Duration::from_millis(500)).await;
        first
            .assert_echo("the open tunnel goes on through the drain")
            .await;
        drop(first);

        let report = tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .expect("the drain ended with its last tunnel, long before drain.timeout (30 s)")
            .unwrap();
        assert!(report.drained, "nothing was left to close: {report:?}");
    })
    .await;
}
