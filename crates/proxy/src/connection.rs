//! One connection's way through the gateway: attributes → route → dial → relay → close.

use crate::attributes::Attributes;
use crate::error::{Error, Kind, Side};
use crate::listener::{ActiveGuard, Context};
use crate::relay::{self, Counters};
use crate::socket;
use std::future::pending;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, sleep_until};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) async fn serve(
    downstream: TcpStream,
    source: SocketAddr,
    destination: SocketAddr,
    guard: ActiveGuard,
    context: Arc<Context>,
) {
    let listener = &guard.0;
    let attributes = Attributes {
        id: NEXT_ID.fetch_add(1, Relaxed),
        listener: listener.name.clone(),
        source,
        destination,
    };
    let started = Instant::now();
    let counters = Counters::new();

    let Some(route) = listener.routes.find(&attributes) else {
        listener.stats.no_route.fetch_add(1, Relaxed);
        let error = Error::internal(Kind::NoRoute);
        tracing::warn!(id = attributes.id, listener = %attributes.listener, source = %source, destination = %destination, reason = error.code(), "connection refused: {error}");
        return;
    };
    let cluster = &route.cluster;

    let dialed = tokio::select! {
        dialed = cluster.connect() => dialed,
        _ = context.close_connections.cancelled() => Err(Error::internal(Kind::Shutdown)),
    };
    let (upstream, lease) = match dialed {
        Ok(pair) => pair,
        Err(error) => {
            tracing::warn!(id = attributes.id, listener = %attributes.listener, route = %route.config.name, cluster = %cluster.name(), source = %source, reason = error.code(), "connection closed: {error}");
            return;
        }
    };
    let endpoint = &lease.endpoint;
    tracing::debug!(id = attributes.id, route = %route.config.name, endpoint = %endpoint.address, "connected upstream");

    let eviction = endpoint.eviction();
    let result = tokio::select! {
        r = relay::relay(&downstream, &upstream, &counters) => r,
        e = idle(route.config.idle_timeout, &counters) => Err(e),
        _ = deadline(route.config.max_duration, started) => Err(Error::internal(Kind::MaxDuration)),
        _ = context.close_connections.cancelled() => Err(Error::internal(Kind::Shutdown)),
        _ = eviction.cancelled() => Err(Error::internal(Kind::Failback)),
    };

    // An abort on one side is passed on as an abort on the other.
    if let Err(Error {
        side,
        kind: Kind::Reset | Kind::Io(_),
    }) = &result
    {
        match side {
            Side::Upstream => socket::reset_on_close(&downstream),
            Side::Downstream => socket::reset_on_close(&upstream),
            Side::Internal => {}
        }
    }
    let reason = match &result {
        Ok(()) => "closed".to_string(),
        Err(e) => e.code(),
    };
    tracing::info!(
        id = attributes.id,
        listener = %attributes.listener,
        route = %route.config.name,
        cluster = %cluster.name(),
        endpoint = %endpoint.address,
        source = %source,
        duration_ms = started.elapsed().as_millis() as u64,
        bytes_upstream = counters.upstream_bytes.load(Relaxed),
        bytes_downstream = counters.downstream_bytes.load(Relaxed),
        reason = %reason,
        "connection closed"
    );
}

/// Ends when no byte has moved either way for `timeout`; never when it is `None`.
async fn idle(timeout: Option<Duration>, counters: &Counters) -> Error {
    let Some(timeout) = timeout else {
        return pending().await;
    };
    loop {
        let due = counters.last_activity() + timeout;
        if due <= Instant::now() {
            return Error::internal(Kind::IdleTimeout);
        }
        sleep_until(due).await;
    }
}

async fn deadline(max: Option<Duration>, started: Instant) {
    match max {
        Some(max) => sleep(max.saturating_sub(started.elapsed())).await,
        None => pending().await,
    }
}
