//! The terminator end: a route with `connect` serves HTTP/1.1 and HTTP/2 on the (usually
//! TLS-terminated) connection; each CONNECT request is a tunnel, authorized and dialed as a
//! connection of its own — only to destinations the route allows, never an open proxy.

use crate::attributes::Attributes;
use crate::authorize;
use crate::connection::{finish, next_id};
use crate::error::Error;
use crate::listener::Context;
use crate::listener::Listener;
use crate::proxy_out;
use crate::registry::{Live, Upstream};
use crate::relay;
use crate::routing::Route;
use crate::stream::Leg;
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

type Reply = Response<Empty<Bytes>>;

fn reply(status: StatusCode) -> Result<Reply, Infallible> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    Ok(response)
}

/// Serves tunnels on one accepted connection until it ends or the gateway closes it.
pub(crate) async fn serve(
    downstream: Leg,
    attributes: Attributes,
    route: Arc<Route>,
    listener: Arc<Listener>,
    context: Arc<Context>,
) {
    let registration = context.registry.register(Arc::new(Live::new(attributes)));
    let outer = registration.live.clone();
    let service = {
        let outer = outer.clone();
        hyper::service::service_fn(move |request| {
            tunnel(
                request,
                outer.clone(),
                route.clone(),
                listener.clone(),
                context.clone(),
            )
        })
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Long-lived tunnels by the thousand on one connection: no stream cap (hyper's default
    // is 200, which would leave the 201st tunnel waiting), windows as large as the edge's.
    builder
        .http2()
        .max_concurrent_streams(u32::MAX)
        .initial_stream_window_size(config::DEFAULT_TUNNEL_WINDOW)
        .initial_connection_window_size(config::DEFAULT_TUNNEL_WINDOW.saturating_mul(4));
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(downstream), service);
    tokio::select! {
        served = connection => if let Err(e) = served {
            tracing::debug!(id = outer.attributes.id, error = %e, "tunnel connection ended");
        },
        _ = outer.close_requested() => {}
    }
}

/// One CONNECT request: checked, authorized, dialed; 200 and the relay, or an error status.
async fn tunnel(
    request: hyper::Request<Incoming>,
    outer: Arc<Live>,
    route: Arc<Route>,
    listener: Arc<Listener>,
    context: Arc<Context>,
) -> Result<Reply, Infallible> {
    let settings = route.config.connect.as_ref().expect("a connect route");
    if request.method() != Method::CONNECT {
        return reply(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Some(authority) = request.uri().authority().cloned() else {
        return reply(StatusCode::BAD_REQUEST);
    };
    let Some(port) = authority.port_u16() else {
        return reply(StatusCode::BAD_REQUEST);
    };
    let host = authority.host();

    // The tunnel is a connection of its own: the outer one's attributes (TLS session, client
    // identity), its client address as the edge says it.
    let mut attributes = outer.attributes.clone();
    attributes.id = next_id();
    attributes.authz = None;
    if let Some(address) = settings
        .client_address_header
        .as_ref()
        .and_then(|h| request.headers().get(h))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        attributes.source = address;
    }

    // A cluster by name, or an allowed address dialed with the route's cluster settings.
    let named = listener
        .routes
        .cluster(host)
        .filter(|c| c.name() == host)
        .cloned();
    if named.is_none() && !settings.allows(host, port) {
        tracing::warn!(id = attributes.id, route = %route.config.name, authority = %authority, "tunnel destination not allowed");
        listener.stats.authz_denied.fetch_add(1, Relaxed);
        return reply(StatusCode::FORBIDDEN);
    }
    match Box::pin(authorize::check(&route, &attributes)).await {
        Ok((decision, _)) => attributes.authz = decision,
        Err((decision, _)) => {
            tracing::info!(id = attributes.id, route = %route.config.name, authority = %authority, decision, "tunnel not authorized");
            listener.stats.authz_denied.fetch_add(1, Relaxed);
            return reply(StatusCode::FORBIDDEN);
        }
    }
    let cluster = named.unwrap_or_else(|| route.cluster.clone());
    let dialed = match cluster.name() == host {
        true => cluster.connect().await,
        false => cluster.dial(authority.as_str()).await,
    };
    let upstream = match dialed {
        Ok((stream, lease)) => {
            let header = proxy_out::header(&cluster.config, &attributes, None);
            cluster
                .originate(stream, header, attributes.sni(), &context.handshakes)
                .await
                .map(|leg| (leg, lease))
        }
        Err(e) => Err(e),
    };
    let (upstream, lease) = match upstream {
        Ok(pair) => pair,
        Err(error) => {
            tracing::warn!(id = attributes.id, route = %route.config.name, authority = %authority, reason = error.code(), "tunnel destination unreachable: {error}");
            return reply(StatusCode::BAD_GATEWAY);
        }
    };
    route.connections.fetch_add(1, Relaxed);
    let upgrade = hyper::upgrade::on(request);
    let tracked = context.clone();
    tracked.connections.spawn(async move {
        let downstream = match upgrade.await {
            Ok(upgraded) => Leg::Tunnel(Box::new(TokioIo::new(upgraded)), None),
            Err(e) => {
                tracing::debug!(error = %e, "the tunnel was not opened");
                return;
            }
        };
        let registration = context.registry.register(Arc::new(Live::new(attributes)));
        let live = registration.live.clone();
        live.set_upstream(Upstream {
            route: route.clone(),
            cluster,
            endpoint: lease.endpoint.clone(),
        });
        let (mut downstream, mut upstream) = (downstream, upstream);
        let result = tokio::select! {
            r = relay::relay_streams(&mut downstream, &mut upstream, &live.counters) => r,
            reason = live.close_requested() => Err(Error::internal(reason.kind())),
            reason = outer.close_requested() => Err(Error::internal(reason.kind())),
        };
        drop(registration);
        finish(&live, &route, &lease, &result, &context);
    });
    reply(StatusCode::OK)
}
