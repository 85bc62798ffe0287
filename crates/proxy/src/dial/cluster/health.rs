//! Active health checks: connect (and, for FIX venues, log on) within a timeout, every
//! interval, and flip an endpoint's health only after `healthy_threshold` /
//! `unhealthy_threshold` results in a row.

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
        let probe = probe(endpoint, check.fix.as_ref(), check.timeout);
        let ok = matches!(tokio::time::timeout(check.timeout, probe).await, Ok(true));
        if ok {
            endpoint.stats.health_checks_passed.fetch_add(1, Relaxed);
            successes += 1;
            failures = 0;
            // A passed check ends a passive ejection early, whatever the health state: an
            // endpoint whose connects failed only briefly never became unhealthy, so no
            // transition below would end it.
            if endpoint.end_ejection() {
                tracing::info!(
                    cluster = %cluster.config.name,
                    endpoint = %endpoint.address,
                    "a passed health check ended the endpoint's ejection"
                );
            }
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

/// One check: the connection, and with `fix` a Logon answered by a Logon or a Logout.
async fn probe(
    endpoint: &super::Endpoint,
    fix: Option<&config::FixHealthCheck>,
    timeout: std::time::Duration,
) -> bool {
    let Ok(mut stream) = super::connect::connect(endpoint).await else {
        return false;
    };
    match fix {
        None => true,
        Some(fix) => fix_logon(&mut stream, fix, timeout).await.unwrap_or(false),
    }
}

async fn fix_logon(
    stream: &mut tokio::net::TcpStream,
    check: &config::FixHealthCheck,
    timeout: std::time::Duration,
) -> std::io::Result<bool> {
    use crate::error::{Error, Kind, Side};
    use crate::inspect::{Look, read_until};
    use protocols::fix;
    use tokio::io::AsyncWriteExt;
    let time = fix::sending_time_at(std::time::SystemTime::now());
    let header = |msg_type, seq| {
        vec![
            (35, msg_type),
            (49, check.sender_comp_id.as_str()),
            (56, check.target_comp_id.as_str()),
            (34, seq),
            (52, time.as_str()),
        ]
    };
    let mut logon = header("A", "1");
    // ResetSeqNumFlag: the check never continues an earlier session.
    logon.extend([(98, "0"), (108, "30"), (141, "Y")]);
    stream
        .write_all(&fix::encode(&check.begin_string, &logon))
        .await?;
    // The answer, whatever it is: only its type matters.
    const MAX: usize = 64 * 1024;
    let look = |bytes: &[u8]| match fix::frame(bytes, MAX) {
        Ok(message) => Look::Done(message.msg_type().map(str::to_string)),
        Err(fix::Error::Incomplete { needed }) => Look::NeedMore(needed),
        Err(_) => Look::Fail(Error::new(Side::Upstream, Kind::Malformed("not FIX"))),
    };
    let Ok((answer, _)) = read_until(stream, Side::Upstream, timeout, MAX, look).await else {
        return Ok(false);
    };
    match answer.as_deref() {
        Some("A") => {
            let logout = fix::encode(&check.begin_string, &header("5", "2"));
            let _ = stream.write_all(&logout).await;
            Ok(true)
        }
        Some("5") => Ok(true),
        _ => Ok(false),
    }
}
