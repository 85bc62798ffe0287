//! Admission: whether an accepted connection may go on — the gateway-wide limit, the
//! listener's limit, the per-client-address limit and the listener's accept rate. A refused
//! connection is closed at once, counted by reason and logged.

use crate::accept::{Listener, ListenerStats};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// The gateway-wide count of connections, against `max_connections` (0: no limit).
#[derive(Debug, Default)]
pub struct GlobalLimit {
    pub active: AtomicU64,
    pub limit: AtomicU64,
}

impl GlobalLimit {
    /// `max_connections` as configured, else what the process's file-descriptor limit can
    /// carry: two descriptors per proxied connection, 128 kept for listeners, logs, admin.
    pub fn set(&self, configured: Option<usize>) {
        let limit = configured.map_or_else(max_connections_for_fds, |m| m as u64);
        self.limit.store(limit, Relaxed);
    }
}

/// Half the descriptors the process may open, less a reserve (at least 1).
pub fn max_connections_for_fds() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the struct we own.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let fds = if read { limit.rlim_cur } else { 1024 };
    (fds.saturating_sub(128) / 2).max(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    GlobalLimit,
    ListenerLimit,
    SourceLimit,
    AcceptRate,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::GlobalLimit => "global_connection_limit",
            Refusal::ListenerLimit => "connection_limit",
            Refusal::SourceLimit => "source_connection_limit",
            Refusal::AcceptRate => "accept_rate",
        }
    }

    fn counter(self, stats: &ListenerStats) -> &AtomicU64 {
        match self {
            Refusal::GlobalLimit => &stats.rejected_global_limit,
            Refusal::ListenerLimit => &stats.rejected_limit,
            Refusal::SourceLimit => &stats.rejected_source_limit,
            Refusal::AcceptRate => &stats.rejected_accept_rate,
        }
    }
}

/// A connection's place in every count it was admitted under; released on drop.
pub(crate) struct Slot {
    pub listener: Arc<Listener>,
    global: Arc<GlobalLimit>,
    source: Option<IpAddr>,
}

impl Slot {
    /// Counts the connection under its client's address once a trusted balancer's PROXY
    /// header named it (the balancer's own address counts nothing). Err: over the
    /// per-source limit (counted); the slot is given back when dropped.
    pub(crate) fn admit_source(&mut self, client: IpAddr) -> Result<(), Refusal> {
        if self.source.is_some() {
            return Ok(());
        }
        count_source(&self.listener, &mut self.source, client).inspect_err(|refusal| {
            refusal.counter(&self.listener.stats).fetch_add(1, Relaxed);
        })
    }
}

/// Counts `client` under the listener's per-source limit, if it has one; the key goes in
/// `slot_source` so the count is given back. Err: over the limit.
fn count_source(
    listener: &Listener,
    slot_source: &mut Option<IpAddr>,
    client: IpAddr,
) -> Result<(), Refusal> {
    let Some(limit) = listener.config.max_connections_per_source else {
        return Ok(());
    };
    let key = source_key(client);
    let mut sources = listener.stats.sources.lock().unwrap();
    let n = sources.entry(key).or_insert(0);
    *n += 1;
    *slot_source = Some(key);
    match *n > limit as u32 {
        true => Err(Refusal::SourceLimit),
        false => Ok(()),
    }
}

/// What the per-source limit counts: an IPv4 address, an IPv6 /64 (one subscriber's
/// prefix: a client that owns a /64 has 2^64 addresses to spread over).
fn source_key(ip: IpAddr) -> IpAddr {
    match crate::route::canonical(ip) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// Whether `peer` is a balancer whose PROXY header this listener reads: its connections
/// are counted per source under the client the header names, not under the balancer.
pub(crate) fn sends_proxy_headers(listener: &Listener, peer: IpAddr) -> bool {
    let ip = crate::route::canonical(peer);
    (listener.config.proxy_protocol.as_ref())
        .is_some_and(|p| p.trusted_sources.iter().any(|c| c.contains(&ip)))
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.listener.stats.active.fetch_sub(1, Relaxed);
        self.global.active.fetch_sub(1, Relaxed);
        if let Some(ip) = self.source {
            let mut sources = self.listener.stats.sources.lock().unwrap();
            if let Some(n) = sources.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    sources.remove(&ip);
                }
            }
        }
    }
}

/// Admits or refuses one connection from `source` on `listener`: an accepted connection
/// (`rate`: its listener's accept rate) or a tunnel inside one (no accept rate: the tunnel's
/// connection was admitted under it). `source` `None`: a trusted balancer, whose client
/// is counted once its PROXY header names it ([`Slot::admit_source`]).
pub(crate) fn admit(
    listener: &Arc<Listener>,
    global: &Arc<GlobalLimit>,
    rate: Option<&mut RateLimiter>,
    source: impl Into<Option<IpAddr>>,
) -> Result<Slot, Refusal> {
    let source = source.into();
    let stats = &listener.stats;
    let accept_rate = listener.config.accept_rate.as_ref();
    let within_rate = rate.is_none_or(|rate| rate.take(accept_rate));
    let refusal = (!within_rate).then_some(Refusal::AcceptRate);
    // Take every slot first, then decide: the guard gives them all back if refused.
    let listener_active = stats.active.fetch_add(1, Relaxed);
    let global_active = global.active.fetch_add(1, Relaxed);
    let mut slot = Slot {
        listener: listener.clone(),
        global: global.clone(),
        source: None,
    };
    let refusal = refusal.or_else(|| {
        let limit = global.limit.load(Relaxed);
        (limit != 0 && global_active >= limit).then_some(Refusal::GlobalLimit)
    });
    let refusal = refusal.or_else(|| {
        listener
            .config
            .connection_limit
            .is_some_and(|limit| listener_active >= limit as u64)
            .then_some(Refusal::ListenerLimit)
    });
    let refusal = refusal.or_else(|| {
        let client = source?;
        count_source(listener, &mut slot.source, client).err()
    });
    match refusal {
        None => Ok(slot),
        Some(refusal) => {
            refusal.counter(stats).fetch_add(1, Relaxed);
            Err(refusal)
        }
    }
}

/// A token bucket: `per_second` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new() -> Self {
        RateLimiter {
            tokens: f64::MAX,
            last: Instant::now(),
        }
    }

    fn take(&mut self, rate: Option<&config::AcceptRate>) -> bool {
        let Some(rate) = rate else {
            return true;
        };
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * rate.per_second as f64;
        self.tokens = (self.tokens + refill).min(rate.burst as f64);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Per-address counts, kept only for listeners with a per-source limit.
pub(crate) type SourceCounts = std::sync::Mutex<HashMap<IpAddr, u32>>;
