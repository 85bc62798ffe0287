//! Draining: a gateway going away lets its live connections finish within the drain
//! window, then closes the rest spread over time; connections of a removed listener or
//! cluster are drained the same way.

use super::Gateway;
use crate::end::registry::CloseReason;
use std::sync::atomic::Ordering::Relaxed;

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every connection ended by itself before the spread began.
    pub drained: bool,
    /// Connections still open when the spread began, and closed.
    pub closed: usize,
}

impl Gateway {
    /// Gives the connections matching `which` the drain window, then closes those left,
    /// spread like a shutdown's.
    pub(super) fn drain_connections(
        &self,
        drain: config::Drain,
        which: impl Fn(&crate::end::registry::Live) -> bool + Send + 'static,
    ) {
        let registry = self.context.registry.clone();
        tokio::spawn(async move {
            tokio::time::sleep(drain.timeout - drain.spread).await;
            let remaining: Vec<_> = registry
                .snapshot()
                .into_iter()
                .filter(|l| which(l))
                .collect();
            if remaining.is_empty() {
                return;
            }
            let step = drain.spread / remaining.len() as u32;
            for live in remaining {
                live.request_close(CloseReason::Shutdown);
                tokio::time::sleep(step).await;
            }
        });
    }

    /// True from the moment a drain starts: the gateway is going away (/ready says 503).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Reports draining from now on, ahead of `shutdown` (which does it too).
    pub fn begin_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Drains and stops, by the configuration's `drain` settings, counted from now:
    /// draining at once; accepting for `delay` more (so load balancers notice first); live
    /// connections then have until `timeout` to end by themselves, and those still open in
    /// the last `spread` of the window are closed one by one, oldest first, spread evenly,
    /// so their clients do not all reconnect in the same instant.
    pub async fn shutdown(&self) -> ShutdownReport {
        let started = tokio::time::Instant::now();
        self.draining.store(true, Relaxed);
        let (drain, listeners) = {
            let mut state = self.state.lock().unwrap();
            (
                state.config.drain.clone(),
                std::mem::take(&mut state.listeners),
            )
        };
        let live = self.context.connections.len();
        tracing::info!(connections = live, timeout = ?drain.timeout, delay = ?drain.delay, spread = ?drain.spread, "draining");

        tokio::time::sleep_until(started + drain.delay).await;
        self.context.stop_accepting.cancel();
        for (_, listener) in listeners {
            let _ = listener.accept_loop.await;
        }
        self.context.connections.close();

        let deadline = started + drain.timeout;
        let spread_from = deadline - drain.spread;
        let drained = tokio::time::timeout_at(spread_from, self.context.connections.wait())
            .await
            .is_ok();
        let mut closed = 0;
        if !drained {
            let remaining = self.context.registry.snapshot();
            closed = remaining.len();
            tracing::warn!(
                connections = closed,
                over = ?drain.spread,
                "drain window ending: closing the remaining connections"
            );
            let step = drain.spread / closed.max(1) as u32;
            for (i, live) in remaining.iter().enumerate() {
                tokio::time::sleep_until(spread_from + step * i as u32).await;
                live.request_close(CloseReason::Shutdown);
            }
            self.context.registry.close_all(CloseReason::Shutdown);
            self.context.connections.wait().await;
        }
        self.stop_health_checks.cancel();
        // The drained connections' spans, exported before the process ends.
        if let Some(tracer) = &self.context.tracer {
            tracer.flush(std::time::Duration::from_secs(5)).await;
        }
        ShutdownReport { drained, closed }
    }
}
