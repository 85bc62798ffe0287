//! Name lookups: an endpoint named by host (connections and health checks), a tunnel's
//! destination. getaddrinfo(3) blocks, so each lookup takes one of tokio's blocking threads,
//! and a resolver that does not answer holds that thread for the resolver's own timeout
//! (`resolv.conf`: 5 s per attempt by default), whoever gave up waiting on it. So lookups run
//! in two budgets of places, each place kept until getaddrinfo returns: the names the
//! operator wrote, and the names tunnel clients ask for. Beyond its budget a lookup waits its
//! turn, within its caller's timeout; a burst of tunnels naming slow names holds at most its
//! own places and never delays the endpoints'.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use telemetry::Out;
use tokio::sync::Semaphore;

/// Whose name is looked up: each has its own places.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// An endpoint's (the configuration's names).
    Endpoint,
    /// A tunnel's destination (the client's names).
    Tunnel,
}

/// Lookups running at once, each a blocking thread while it runs.
const ENDPOINT_PLACES: usize = 256;
const TUNNEL_PLACES: usize = 64;

struct Budget {
    name: &'static str,
    size: usize,
    places: Arc<Semaphore>,
    resolved: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// Callers that stopped waiting (their timeout) before a place was free.
    no_place: AtomicU64,
}

impl Budget {
    fn new(name: &'static str, size: usize) -> Budget {
        Budget {
            name,
            size,
            places: Arc::new(Semaphore::new(size)),
            resolved: Arc::default(),
            failed: Arc::default(),
            no_place: AtomicU64::new(0),
        }
    }
}

static BUDGETS: LazyLock<[Budget; 2]> = LazyLock::new(|| {
    [
        Budget::new("endpoint", ENDPOINT_PLACES),
        Budget::new("tunnel", TUNNEL_PLACES),
    ]
});

/// Counts a caller that stops waiting before it has a place.
struct Waiting<'a>(Option<&'a AtomicU64>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(no_place) = self.0 {
            no_place.fetch_add(1, Relaxed);
        }
    }
}

/// The addresses of `address` (`host:port`; an IP address is its own, not looked up).
/// Cancel-safe: a caller that stops waiting (its timeout) leaves a running lookup to finish
/// on its thread, still holding its place, and counted when it ends.
pub(crate) async fn resolve(address: &str, purpose: Purpose) -> io::Result<Vec<SocketAddr>> {
    if let Ok(socket_address) = address.parse::<SocketAddr>() {
        return Ok(vec![socket_address]);
    }
    let budget = &BUDGETS[purpose as usize];
    let mut waiting = Waiting(Some(&budget.no_place));
    let place = (budget.places.clone().acquire_owned().await)
        .map_err(|_| io::Error::other("the resolver is shut"))?;
    waiting.0 = None;
    let (resolved, failed) = (budget.resolved.clone(), budget.failed.clone());
    let address = address.to_string();
    tokio::task::spawn_blocking(move || {
        let _place = place;
        let looked_up = address.to_socket_addrs().map(Iterator::collect::<Vec<_>>);
        let counter = if looked_up.is_ok() { resolved } else { failed };
        counter.fetch_add(1, Relaxed);
        looked_up
    })
    .await
    .map_err(io::Error::other)?
}

/// `causeway_dns_lookups_running{purpose}` and `causeway_dns_lookups_total{purpose,result}`.
pub(crate) fn report(out: &mut Out<'_>) {
    for budget in BUDGETS.iter() {
        let purpose = || ("purpose", budget.name.to_string());
        let running = budget.size - budget.places.available_permits();
        out.gauge(
            "causeway_dns_lookups_running",
            vec![purpose()],
            running as f64,
        );
        for (result, count) in [
            ("resolved", &*budget.resolved),
            ("failed", &*budget.failed),
            ("no_place", &budget.no_place),
        ] {
            let labels = vec![purpose(), ("result", result.into())];
            out.counter("causeway_dns_lookups_total", labels, count.load(Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_address_is_its_own_and_a_name_is_looked_up() {
        assert_eq!(
            resolve("127.0.0.1:80", Purpose::Endpoint).await.unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(
            resolve("[::1]:80", Purpose::Tunnel).await.unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        let localhost = resolve("localhost:80", Purpose::Endpoint).await.unwrap();
        assert!(
            localhost
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 80)
        );
    }
}
