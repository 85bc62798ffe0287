//! Active TCP health checks: connect within a timeout, every interval, and flip an
//! endpoint's health only after `healthy_threshold` / `unhealthy_threshold` results in a row.

use super::Cluster;
use config::HealthCheck;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio_util::sync::CancellationToken;

pub(crate) async fn run(
    cluster: Arc<Cluster>,
    index: usize,
    check: HealthCheck,
    stop: CancellationToken,
) {
    let endpoint = &cluster.endpoints[index];
    let (mut successes, mut failures) = (0u32, 0u32);
    loop {
        let ok = matches!(
            tokio::time::timeout(check.timeout, super::dial::connect(endpoint)).await,
            Ok(Ok(_))
        );
        if ok {
            endpoint.stats.health_checks_passed.fetch_add(1, Relaxed);
            successes += 1;
            failures = 0;
        } else {
            endpoint.stats.health_checks_failed.fetch_add(1, Relaxed);
            failures += 1;
            successes = 0;
        }
        let healthy = endpoint.is_healthy();
        if !healthy && successes >= check.healthy_threshold {
            cluster.health_changed(index, true);
        } else if healthy && failures >= check.unhealthy_threshold {
            cluster.health_changed(index, false);
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(check.interval) => {}
        }
    }
}
