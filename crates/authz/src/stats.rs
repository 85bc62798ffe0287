//! Counts of checks by outcome and a latency histogram, in atomics (read by telemetry).

use std::sync::atomic::AtomicU64;
use telemetry::histogram::Histogram;

#[derive(Debug)]
pub struct AuthzStats {
    pub ok: AtomicU64,
    pub denied: AtomicU64,
    pub error: AtomicU64,
    pub timeout: AtomicU64,
    /// Answered from the decision cache (also counted as ok or denied).
    pub cache_hits: AtomicU64,
    /// How long the checks sent to the service took.
    pub latency: Histogram,
}

impl Default for AuthzStats {
    fn default() -> Self {
        AuthzStats {
            ok: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            error: AtomicU64::new(0),
            timeout: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            latency: Histogram::new(telemetry::histogram::LATENCY),
        }
    }
}
