//! What a client can make an SSH listener hold before it authenticates, bounded: the
//! connections not yet authenticated (in all and per source, as OpenSSH's `MaxStartups`),
//! the password hashes checked at once (argon2: ~19 MiB and a core's time each), and the
//! logins the authorizer is asked to authenticate per second.

use ssh::credentials::PasswordHash;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use telemetry::Out;
use tokio::sync::Semaphore;

/// How long a login try may wait for a password check before it is refused.
const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(5);

/// A listener's counts before authentication (shared by its versions across reloads).
#[derive(Debug, Default)]
pub struct PreAuthStats {
    open: Mutex<OpenCounts>,
    /// Connections closed at once: over `max_unauthenticated`, over the per-source share.
    refused_listener: AtomicU64,
    refused_source: AtomicU64,
    /// Password hashes checked (dummy ones included), running now, most at once.
    password_checks: AtomicU64,
    password_checks_running: AtomicU64,
    password_checks_peak: AtomicU64,
    /// Tries that had to wait for a check; tries refused after waiting too long.
    password_check_waits: AtomicU64,
    password_checks_refused: AtomicU64,
    /// Authorizer logins refused over `authorizer_logins_per_second`.
    authorizer_logins_throttled: AtomicU64,
}

#[derive(Debug, Default)]
struct OpenCounts {
    total: u32,
    by_source: HashMap<IpAddr, u32>,
}

/// A connection's place among its listener's unauthenticated ones, given back when dropped.
pub(crate) struct Unauthenticated {
    stats: Arc<PreAuthStats>,
    source: IpAddr,
}

/// A place for a new unauthenticated connection from `source`; `Err(reason)` when over.
pub(crate) fn admit_unauthenticated(
    stats: &Arc<PreAuthStats>,
    settings: &config::SshListener,
    source: IpAddr,
) -> Result<Unauthenticated, &'static str> {
    let pre = &**stats;
    let mut open = pre.open.lock().unwrap();
    if open.total >= settings.max_unauthenticated {
        pre.refused_listener.fetch_add(1, Relaxed);
        return Err("ssh_unauthenticated_limit");
    }
    let from_source = open.by_source.entry(source).or_default();
    if *from_source >= settings.max_unauthenticated_per_source {
        pre.refused_source.fetch_add(1, Relaxed);
        return Err("ssh_unauthenticated_source_limit");
    }
    *from_source += 1;
    open.total += 1;
    Ok(Unauthenticated {
        stats: stats.clone(),
        source,
    })
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        let mut open = self.stats.open.lock().unwrap();
        open.total -= 1;
        if let Some(n) = open.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// Password hashes checked on the blocking pool, at most so many at once.
#[derive(Debug)]
pub(crate) struct PasswordChecks {
    permits: Arc<Semaphore>,
}

impl PasswordChecks {
    pub(crate) fn new(settings: &config::SshListener) -> PasswordChecks {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let permits = settings
            .max_concurrent_password_checks
            .map_or(cores, |n| n as usize);
        PasswordChecks {
            permits: Arc::new(Semaphore::new(permits)),
        }
    }

    /// Whether `password` matches `hash`; false too when no check could start in time.
    pub(crate) async fn verify(
        &self,
        stats: &Arc<PreAuthStats>,
        hash: PasswordHash,
        password: String,
    ) -> bool {
        let pre = &**stats;
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                pre.password_check_waits.fetch_add(1, Relaxed);
                let waited = self.permits.clone().acquire_owned();
                match tokio::time::timeout(PASSWORD_CHECK_WAIT, waited).await {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        pre.password_checks_refused.fetch_add(1, Relaxed);
                        return false;
                    }
                }
            }
        };
        let stats = stats.clone();
        // The permit goes with the check: a client that leaves does not free it early.
        let checked = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pre = &*stats;
            pre.password_checks.fetch_add(1, Relaxed);
            let running = pre.password_checks_running.fetch_add(1, Relaxed) + 1;
            pre.password_checks_peak.fetch_max(running, Relaxed);
            let matched = hash.verify(&password);
            pre.password_checks_running.fetch_sub(1, Relaxed);
            matched
        });
        checked.await.unwrap_or(false)
    }
}

/// A token bucket: so many logins per second, as many at once.
#[derive(Debug)]
pub(crate) struct LoginRate {
    per_second: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl LoginRate {
    pub(crate) fn new(per_second: u32) -> LoginRate {
        let per_second = f64::from(per_second);
        LoginRate {
            per_second,
            bucket: Mutex::new((per_second, Instant::now())),
        }
    }

    /// Takes one login's token; false (counted) when none is left.
    pub(crate) fn take(&self, stats: &PreAuthStats) -> bool {
        let mut bucket = self.bucket.lock().unwrap();
        let (tokens, since) = &mut *bucket;
        let now = Instant::now();
        let refill = now.duration_since(*since).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.per_second);
        *since = now;
        if *tokens < 1.0 {
            let throttled = &stats.authorizer_logins_throttled;
            throttled.fetch_add(1, Relaxed);
            return false;
        }
        *tokens -= 1.0;
        true
    }
}

impl PreAuthStats {
    /// The listener's series before authentication.
    pub(crate) fn report(&self, listener: &str, out: &mut Out<'_>) {
        let name = || vec![("listener", listener.to_string())];
        for (reason, count) in [
            ("ssh_unauthenticated_limit", &self.refused_listener),
            ("ssh_unauthenticated_source_limit", &self.refused_source),
        ] {
            let mut labels = name();
            labels.push(("reason", reason.into()));
            let total = count.load(Relaxed);
            out.counter(
                "causeway_listener_connections_rejected_total",
                labels,
                total,
            );
        }
        let open = self.open.lock().unwrap().total;
        out.gauge("causeway_ssh_unauthenticated", name(), f64::from(open));
        for (metric, count) in [
            ("causeway_ssh_password_checks_total", &self.password_checks),
            (
                "causeway_ssh_password_check_waits_total",
                &self.password_check_waits,
            ),
            (
                "causeway_ssh_password_checks_refused_total",
                &self.password_checks_refused,
            ),
            (
                "causeway_ssh_authorizer_logins_throttled_total",
                &self.authorizer_logins_throttled,
            ),
        ] {
            out.counter(metric, name(), count.load(Relaxed));
        }
        for (metric, value) in [
            (
                "causeway_ssh_password_checks_running",
                &self.password_checks_running,
            ),
            (
                "causeway_ssh_password_checks_peak",
                &self.password_checks_peak,
            ),
        ] {
            out.gauge(metric, name(), value.load(Relaxed) as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_rate_refuses_beyond_its_burst_then_refills() {
        let stats = PreAuthStats::default();
        let rate = LoginRate::new(3);
        assert_eq!((0..5).filter(|_| rate.take(&stats)).count(), 3);
        assert_eq!(stats.authorizer_logins_throttled.load(Relaxed), 2);
        std::thread::sleep(Duration::from_millis(400));
        assert!(rate.take(&stats), "a token back after a third of a second");
    }
}
