//! The stream driver: plain TCP, TLS (passed through or terminated), FIX and MQ
//! connections. Set up ([`super::setup`]), then authorized, dialed and relayed to the one
//! ending. A connection whose route terminates CONNECT tunnels is handed on (`tunnels`).

use super::setup::{self, Accepted};
use crate::accept::admission::Slot;
use crate::accept::{Context, Listener};
use crate::attributes::Attributes;
use crate::authorize;
use crate::dial::{self, cluster::Cluster, cluster::Lease};
use crate::end::registry::{Live, Upstream};
use crate::end::{self, refuse};
use crate::error::{Error, Kind, Side};
use crate::relay::{self, Leg};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::net::TcpStream;

/// One stream connection, from its first byte to its access-log line. Everything the relay
/// needs lives in this one future (nested `async fn`s would store their arguments twice
/// for the connection's whole life).
pub(crate) async fn serve<T, F>(
    downstream: TcpStream,
    attributes: Box<Attributes>,
    mut slot: Slot,
    context: Arc<Context>,
    tunnels: T,
) where
    T: FnOnce(Accepted, Arc<Listener>, Arc<Context>) -> F,
    F: Future<Output = ()>,
{
    let Some(mut accepted) = setup::accept(downstream, attributes, &mut slot, &context).await
    else {
        return;
    };
    let listener = &slot.listener;
    let log = context.access_log.as_ref();
    if accepted.route.config.connect.is_some() {
        return tunnels(accepted, listener.clone(), context.clone()).await;
    }
    let routing = match authorized(&mut accepted).await {
        Ok(routing) => routing,
        Err(error) => return refuse_unauthorized(accepted, error, slot, log),
    };
    let registration = context
        .registry
        .register(Arc::new(Live::new(*accepted.attributes)));
    let (live, route) = (&registration.live.clone(), &accepted.route);
    count(listener, route, &live.attributes);
    // Boxed: the dial state is large and short-lived; kept inline it would size every
    // connection's task for its whole life.
    let replay = accepted.replay.take();
    // The authorizer's answer moves into the dial, and goes with it.
    let dial = upstream(listener, route, live, routing, replay, &context);
    // The lease (the endpoint's count of this connection) is held until the end.
    let (mut upstream, _lease) = match tokio::select! {
        dialed = Box::pin(dial) => dialed,
        reason = live.close_requested() => Err(Error::internal(reason.kind())),
    } {
        Ok((upstream, lease)) => (upstream, lease),
        Err(error) => {
            let why = "upstream unavailable";
            refuse::refuse(accepted.downstream, &live.attributes, why).await;
            return end::finish(registration, route, &Err(error), log);
        }
    };
    let splice = context.splice.load(std::sync::atomic::Ordering::Relaxed);
    let relay = relay_legs(
        &mut accepted.downstream,
        &mut upstream,
        &live.counters,
        splice,
    );
    let result = end::supervise(live, route, std::pin::pin!(relay)).await;
    relay::pass_on_abort(&result, &mut accepted.downstream, &mut upstream);
    end::finish(registration, route, &result, log);
}

/// Bytes both ways: between two plain sockets by the plain relay (splice when `splice`),
/// else as streams. (An `async fn`: the flag lives in its state's padding, where a block
/// would hold a reference to it — per connection, for its whole life.)
async fn relay_legs(
    downstream: &mut Leg,
    upstream: &mut Leg,
    counters: &relay::Counters,
    splice: bool,
) -> Result<(), Error> {
    match (downstream, upstream) {
        (Leg::Plain(down), Leg::Plain(up)) => relay::relay(down, up, counters, splice).await,
        (down, up) => relay::relay_streams(down, up, counters).await,
    }
}

/// A connection its route's authorization refused: told (a FIX Logout), counted, logged.
/// The goodbye (a FIX Logout) goes out from a task of its own, which keeps the connection's
/// place in the counts (`slot`) until it is over; awaited here, its state would size every
/// connection's task.
fn refuse_unauthorized(
    accepted: Accepted,
    error: Error,
    slot: Slot,
    log: Option<&end::access_log::AccessLog>,
) {
    slot.listener.stats.authz_denied.fetch_add(1, Relaxed);
    let why = match error.kind {
        Kind::AuthzUnavailable => "authorization unavailable",
        _ => "not authorized",
    };
    let Accepted {
        downstream,
        attributes,
        route,
        ..
    } = accepted;
    end::refused((*attributes).clone(), Some(&route), error, log);
    tokio::spawn(async move {
        refuse::refuse(downstream, &attributes, why).await;
        drop(slot);
    });
}

/// A connection the route took, in the route's and the protocol's counts.
fn count(listener: &Listener, route: &crate::route::Route, attributes: &Attributes) {
    route.connections.fetch_add(1, Relaxed);
    if attributes.protocol.is_some() {
        let comp_ids = listener.config.fix.comp_id_metrics;
        (listener.stats.sessions).count(&route.config.name, attributes, comp_ids);
    }
}

/// The upstream of an authorized connection: the route's cluster or the one the
/// authorizer chose, dialed; what was read before routing (a Logon inside TLS) sent first.
/// Recorded on the live connection once reached.
async fn upstream(
    listener: &Listener,
    route: &Arc<crate::route::Route>,
    live: &Live,
    routing: Option<Box<authz::Routing>>,
    replay: Option<Box<[u8]>>,
    context: &Context,
) -> Result<(Leg, Lease), Error> {
    let routing = routing.as_deref();
    let attributes = &live.attributes;
    let cluster: &Arc<Cluster> = match routing.and_then(|r| r.cluster.as_deref()) {
        None => &route.cluster,
        Some(name) => listener.routes.cluster(name).ok_or_else(|| {
            tracing::warn!(id = attributes.id, route = %route.config.name, cluster = name, "the authorizer named a cluster that does not exist");
            Error::internal(Kind::BadDynamicTarget)
        })?,
    };
    let handshakes = &context.handshakes;
    let (mut leg, lease) =
        dial::dial(cluster, &route.config, attributes, routing, handshakes).await?;
    if let Some(bytes) = replay {
        use tokio::io::AsyncWriteExt;
        leg.write_all(&bytes)
            .await
            .map_err(|e| Error::io(Side::Upstream, &e))?;
    }
    live.set_upstream(Upstream {
        route: route.clone(),
        cluster: cluster.clone(),
        endpoint: lease.endpoint.clone(),
    });
    tracing::debug!(id = attributes.id, route = %route.config.name, endpoint = %lease.endpoint.address, "connected upstream");
    Ok((leg, lease))
}

/// The route's authorization of a set-up connection (its decision recorded in the
/// attributes); Ok: where the authorizer sends it, if it says.
async fn authorized(accepted: &mut Accepted) -> Result<Option<Box<authz::Routing>>, Error> {
    let (route, attributes) = (&accepted.route, &mut accepted.attributes);
    if route.config.authorization.is_none() {
        return Ok(None);
    }
    // Boxed: only routes with authorization pay for the check's state.
    match Box::pin(authorize::check(route, attributes)).await {
        Ok((decision, routing)) => {
            attributes.authz = decision;
            Ok(routing)
        }
        Err((decision, error)) => {
            attributes.authz = Some(decision);
            Err(error)
        }
    }
}
