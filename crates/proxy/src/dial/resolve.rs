//! Name lookups: an endpoint named by host, a tunnel's destination. getaddrinfo(3) blocks,
//! so each lookup takes one of tokio's blocking threads, and a resolver that does not answer
//! holds that thread for the resolver's own timeout (`resolv.conf`: 5 s per attempt by
//! default), whoever gave up waiting on it. So at most [`MAX_RUNNING`] lookups run at once,
//! each keeping its place until getaddrinfo returns; beyond that a lookup waits its turn,
//! within its caller's timeout. A tunnel client naming many names under a slow domain holds
//! at most that many threads.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use telemetry::Out;
use tokio::sync::Semaphore;

/// Lookups running at once (each a blocking thread while it runs).
pub(crate) const MAX_RUNNING: usize = 64;

struct Lookups {
    places: std::sync::Arc<Semaphore>,
    resolved: AtomicU64,
    failed: AtomicU64,
}

static LOOKUPS: LazyLock<Lookups> = LazyLock::new(|| Lookups {
    places: std::sync::Arc::new(Semaphore::new(MAX_RUNNING)),
    resolved: AtomicU64::new(0),
    failed: AtomicU64::new(0),
});

/// The addresses of `address` (`host:port`; an IP address is its own, not looked up).
/// Cancel-safe: a caller that stops waiting (its timeout) leaves the lookup to finish on
/// its thread, still holding its place.
pub(crate) async fn resolve(address: &str) -> io::Result<Vec<SocketAddr>> {
    if let Ok(socket_address) = address.parse::<SocketAddr>() {
        return Ok(vec![socket_address]);
    }
    let place = (LOOKUPS.places.clone().acquire_owned().await)
        .map_err(|_| io::Error::other("the resolver is shut"))?;
    let address = address.to_string();
    let looked_up = tokio::task::spawn_blocking(move || {
        let _place = place;
        address.to_socket_addrs().map(Iterator::collect::<Vec<_>>)
    })
    .await
    .map_err(io::Error::other)?;
    let counter = match &looked_up {
        Ok(_) => &LOOKUPS.resolved,
        Err(_) => &LOOKUPS.failed,
    };
    counter.fetch_add(1, Relaxed);
    looked_up
}

/// `causeway_dns_lookups_running` and `causeway_dns_lookups_total{result}`.
pub(crate) fn report(out: &mut Out<'_>) {
    let running = MAX_RUNNING - LOOKUPS.places.available_permits();
    out.gauge("causeway_dns_lookups_running", vec![], running as f64);
    for (result, count) in [("resolved", &LOOKUPS.resolved), ("failed", &LOOKUPS.failed)] {
        let labels = vec![("result", result.into())];
        out.counter("causeway_dns_lookups_total", labels, count.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_is_its_own_and_a_name_is_looked_up() {
        assert_eq!(
            resolve("127.0.0.1:80").await.unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(
            resolve("[::1]:80").await.unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        let localhost = resolve("localhost:80").await.unwrap();
        assert!(
            localhost
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 80)
        );
    }
}
