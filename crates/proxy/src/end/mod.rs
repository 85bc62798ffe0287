//! The one ending every connection shares — a plain or TLS stream, a CONNECT tunnel, an SSH
//! session: while it lives, the route's idle timeout and maximum duration, its periodic
//! re-authorization and the gateway's own close requests (drain, failback, shutdown) race
//! the work; once it ends, its bytes go into the endpoint's totals and it gets its log line
//! and access-log line, with one close reason.

pub mod access_log;
pub mod failback;
pub(crate) mod refuse;
pub mod registry;
pub mod sessions;
pub(crate) mod trace;

use crate::attributes::Attributes;
use crate::authorize;
use crate::error::{Error, Kind};
use crate::relay::Counters;
use crate::route::Route;
use access_log::AccessLog;
use registry::{Live, Registration};
use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::time::{Instant, sleep_until};

/// Runs `work` (the relay) until it ends or something ends it first: the route's timeouts,
/// a re-check the authorizer denies, or the gateway asking the connection to close.
/// `work` is pinned by the caller: it lives in the caller's task once, not twice.
pub(crate) async fn supervise(
    live: &Live,
    route: &Route,
    work: Pin<&mut impl Future<Output = Result<(), Error>>>,
) -> Result<(), Error> {
    let mut midlife = midlife(route, &live.attributes);
    tokio::select! {
        r = work => r,
        e = timeouts(&route.config, &live.counters) => Err(e),
        e = async { match midlife.as_mut() { Some(m) => m.await, None => pending().await } } => Err(e),
        reason = live.close_requested() => {
            let error = Error::internal(reason.kind());
            live.attributes.span.with(|s| s.event("close_requested", vec![("causeway.reason", error.code().into())]));
            Err(error)
        }
    }
}

/// What happens while a connection lives: periodic re-authorization (ends it when denied)
/// and its span's continuations. Boxed (a thin pointer), and only for connections that have
/// either: the others carry a pointer's worth.
fn midlife<'a>(
    route: &'a Route,
    attributes: &'a Attributes,
) -> Option<Pin<Box<impl Future<Output = Error> + Send + 'a>>> {
    // Each boxed on its own: a re-check's state (its gRPC call) is large, and a connection
    // whose span is continued but never re-checked must not carry room for one.
    let recheck = authorize::recheck(route, attributes).map(Box::pin);
    let continuing = trace::continuations(attributes).map(Box::pin);
    if recheck.is_none() && continuing.is_none() {
        return None;
    }
    Some(Box::pin(async move {
        let recheck = async {
            match recheck {
                Some(r) => r.await,
                None => pending().await,
            }
        };
        let continuing = async {
            if let Some(c) = continuing {
                c.await;
            }
            pending().await
        };
        tokio::select! {
            e = recheck => e,
            e = continuing => e,
        }
    }))
}

/// Ends with the route's idle timeout or maximum duration, whichever comes first; never
/// when the route has neither. One timer, boxed, so routes without timeouts pay nothing.
async fn timeouts(route: &config::Route, counters: &Counters) -> Error {
    let max_at = route.max_duration.map(|max| counters.started() + max);
    let due = |counters: &Counters| {
        let idle_at = route
            .idle_timeout
            .map(|idle| counters.last_activity() + idle);
        match (idle_at, max_at) {
            (Some(i), Some(m)) => Some(i.min(m)),
            (i, m) => i.or(m),
        }
    };
    let Some(first) = due(counters) else {
        return pending().await;
    };
    let mut timer = Box::pin(sleep_until(first));
    loop {
        timer.as_mut().await;
        let now = Instant::now();
        if max_at.is_some_and(|m| m <= now) {
            return Error::internal(Kind::MaxDuration);
        }
        match due(counters) {
            Some(at) if at > now => timer.as_mut().reset(at),
            _ => return Error::internal(Kind::IdleTimeout),
        }
    }
}

/// The end of a registered connection: out of the registry, then its bytes into the
/// endpoint's totals (metrics add the two, and must never see these bytes twice), the log
/// line and the access-log line.
pub(crate) fn finish(
    registration: Registration,
    route: &Route,
    result: &Result<(), Error>,
    log: Option<&AccessLog>,
) {
    let live = registration.live.clone();
    drop(registration);
    let (attributes, counters) = (&live.attributes, &live.counters);
    let (up, down) = (
        counters.upstream_bytes.load(Relaxed),
        counters.downstream_bytes.load(Relaxed),
    );
    if let Some(endpoint) = live.endpoint_for_bytes() {
        endpoint.stats.closed_bytes_upstream.fetch_add(up, Relaxed);
        (endpoint.stats.closed_bytes_downstream).fetch_add(down, Relaxed);
    }
    let reason = match result {
        Ok(()) => "closed".to_string(),
        Err(e) => e.code(),
    };
    let lived = counters.started().elapsed();
    route.ended.record(&reason, Some(lived));
    let duration_ms = lived.as_millis() as u64;
    let (cluster, endpoint) = match live.upstream() {
        Some(u) => (Some(u.cluster.name()), Some(&u.endpoint)),
        None => (None, None),
    };
    match endpoint {
        Some(endpoint) => {
            tracing::info!(id = attributes.id, listener = %attributes.listener, route = %route.config.name, cluster, endpoint = %endpoint.address, source = %attributes.source, duration_ms, bytes_upstream = up, bytes_downstream = down, reason = %reason, "connection closed")
        }
        // Closed before it reached an upstream: worth an operator's look.
        None => {
            tracing::warn!(id = attributes.id, listener = %attributes.listener, route = %route.config.name, source = %attributes.source, duration_ms, reason = %reason, "connection closed before it reached an upstream")
        }
    }
    if let Some(log) = log {
        log.closed(&live, Some(route), endpoint.map(|e| &**e), result);
    }
    trace::end(&live, Some(route), result);
}

/// A connection refused before it was registered (PROXY header, inspection, no route, TLS
/// handshake, authorization): logged, closed.
pub(crate) fn refused(
    attributes: crate::attributes::Attributes,
    route: Option<&Arc<Route>>,
    error: Error,
    log: Option<&AccessLog>,
) {
    tracing::warn!(id = attributes.id, listener = %attributes.listener, source = %attributes.source, route = route.map(|r| r.config.name.as_str()), reason = error.code(), "connection refused: {error}");
    let live = Live::new(attributes);
    if let Some(route) = route {
        route.ended.record(&error.code(), None);
    }
    let result = Err(error);
    if let Some(log) = log {
        log.closed(&live, route.map(|r| &**r), None, &result);
    }
    trace::end(&live, route.map(|r| &**r), &result);
}
