//! Choosing among the eligible endpoints of one priority, without allocating.

use super::Endpoint;
use config::LoadBalancing;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

#[derive(Debug)]
pub(super) struct Balancer {
    policy: LoadBalancing,
    next: AtomicUsize,
}

impl Balancer {
    pub fn new(policy: LoadBalancing) -> Self {
        Balancer {
            policy,
            next: AtomicUsize::new(0),
        }
    }

    pub fn choose(
        &self,
        level: &[usize],
        endpoints: &[Arc<Endpoint>],
        eligible: impl Fn(&usize) -> bool,
    ) -> Option<usize> {
        let count = level.iter().filter(|i| eligible(i)).count();
        if count == 0 {
            return None;
        }
        let nth = |n: usize| level.iter().copied().filter(|i| eligible(i)).nth(n % count);
        match self.policy {
            LoadBalancing::RoundRobin => nth(self.next.fetch_add(1, Relaxed)),
            LoadBalancing::Random => nth(fastrand::usize(..count)),
            LoadBalancing::LeastConnections => {
                // Ties are broken round-robin so equal endpoints share the load.
                let start = self.next.fetch_add(1, Relaxed);
                (0..count)
                    .filter_map(|k| nth(start + k))
                    .min_by_key(|&i| endpoints[i].stats.active.load(Relaxed))
            }
        }
    }
}
