//! The terminator end: a route with `connect` serves HTTP/1.1 (hyper) or HTTP/2 (h2; chosen
//! by ALPN, or by the client's preface on plaintext) on the accepted connection. Each CONNECT
//! request — or POST, where the route accepts them (HTTP/2) — is a tunnel, authorized and
//! dialed as a connection of its own: only to destinations the route allows, never an open
//! proxy.

use super::setup::Accepted;
use crate::accept::admission::{self, Slot};
use crate::accept::{Context, Listener};
use crate::attributes::{Attributes, Protocol, TunnelTarget, next_id};
use crate::authorize;
use crate::dial::cluster::{Cluster, Lease};
use crate::dial::proxy_out;
use crate::end;
use crate::end::registry::{Live, Upstream};
use crate::error::Error;
use crate::relay::{self, Leg, TunnelIo};
use crate::route::Route;
use bytes::Bytes;
use http::{Method, Response, StatusCode, request::Parts};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use telemetry::trace::{SpanContext, SpanKind};

mod destination;
mod http2;

use destination::{Destination, connect_first};

/// How long a client may take to send its request head (or the HTTP/2 preface).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection a terminator serves, shared by its tunnels.
struct Terminator {
    outer: Arc<Live>,
    route: Arc<Route>,
    listener: Arc<Listener>,
    context: Arc<Context>,
}

/// A tunnel the terminator agreed to open: admitted, authorized, its destination dialed.
struct Opened {
    /// Its place in the listener's and the gateway's connection counts, held while it lives.
    _slot: Slot,
    attributes: Attributes,
    cluster: Arc<Cluster>,
    lease: Lease,
    upstream: Leg,
}

/// Serves tunnels on one accepted connection until it ends or the gateway closes it.
pub(crate) async fn serve(accepted: Accepted, listener: Arc<Listener>, context: Arc<Context>) {
    let Accepted {
        downstream,
        attributes,
        route,
        ..
    } = accepted;
    let registration = context.registry.register(Arc::new(Live::new(*attributes)));
    let outer = registration.live.clone();
    let terminator = Arc::new(Terminator {
        outer: outer.clone(),
        route,
        listener,
        context,
    });
    let served = async {
        match speaks_http2(&downstream).await {
            Ok(true) => terminator.serve_http2(downstream).await,
            Ok(false) => terminator.serve_http1(downstream).await,
            Err(e) => tracing::debug!(id = outer.attributes.id, error = %e, "no HTTP request"),
        }
    };
    tokio::select! {
        () = served => {}
        _ = outer.close_requested() => {}
    }
}

/// A tunnel refused with `status`: its span (ended as the attributes go) says why.
fn refused(attributes: &Attributes, why: &'static str, status: StatusCode) -> StatusCode {
    attributes.span.with(|span| {
        span.set("http.response.status_code", status.as_u16());
        span.fail(why, format!("tunnel refused: {status}"));
    });
    status
}

/// HTTP/2 by ALPN over TLS, by the client's preface over plaintext (prior knowledge).
async fn speaks_http2(downstream: &Leg) -> Result<bool, Error> {
    match downstream {
        Leg::Tls(s) => Ok(s.get_ref().1.alpn_protocol() == Some(b"h2")),
        Leg::Plain(s) => crate::inspect::http2_preface(s, HEADER_TIMEOUT).await,
        Leg::Tunnel(_) => Ok(false),
    }
}

fn reply(status: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}

impl Terminator {
    async fn serve_http1(self: &Arc<Self>, downstream: Leg) {
        let service = hyper::service::service_fn(|request| {
            let terminator = self.clone();
            async move { Ok::<_, Infallible>(terminator.http1_request(request).await) }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(self.settings().max_header_size)
            .serve_connection(TokioIo::new(downstream), service)
            .with_upgrades()
            .await;
        if let Err(e) = served {
            tracing::debug!(id = self.outer.attributes.id, error = %e, "tunnel connection ended");
        }
    }

    async fn http1_request(
        self: Arc<Self>,
        request: hyper::Request<Incoming>,
    ) -> Response<Empty<Bytes>> {
        // POST tunnels need a streamed body both ways: HTTP/2 only.
        if request.method() != Method::CONNECT {
            return reply(StatusCode::METHOD_NOT_ALLOWED);
        }
        let mut request = request;
        let upgrade = hyper::upgrade::on(&mut request);
        let (parts, _) = request.into_parts();
        let opened = self.open(&parts).await;
        // The request's head is not needed any more: not held for the tunnel's life.
        drop(parts);
        let opened = match opened {
            Ok(opened) => opened,
            Err(status) => return reply(status),
        };
        let context = self.context.clone();
        context.connections.spawn(async move {
            let upgraded = match upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => return tracing::debug!(error = %e, "the tunnel was not opened"),
            };
            // The connection is ours again; bytes the client sent behind its request go first.
            let Ok(parts) = upgraded.downcast::<TokioIo<Leg>>() else {
                return tracing::warn!("the CONNECT connection could not be taken back");
            };
            let downstream = Leg::tunnel(TunnelIo::Http1 {
                connection: parts.io.into_inner(),
                early: parts.read_buf,
            });
            self.relay(opened, downstream).await;
        });
        reply(StatusCode::OK)
    }

    fn settings(&self) -> &config::ConnectTerminator {
        self.route.config.connect.as_ref().expect("a connect route")
    }

    /// One tunnel request: checked, authorized, dialed; an error status otherwise.
    async fn open(&self, request: &Parts) -> Result<Opened, StatusCode> {
        let (route, listener) = (&self.route, &self.listener);
        let authority = request.uri.authority().ok_or(StatusCode::BAD_REQUEST)?;
        // A destination is a host and a port, nothing more (no `user@`).
        let protocols::connect::Target { host, port } =
            protocols::connect::target(authority.as_str()).map_err(|_| StatusCode::BAD_REQUEST)?;
        let mut attributes = self.tunnel_attributes(request, host, port);
        // Admitted like any connection: the gateway's and the listener's limits count it.
        let global = &self.context.global;
        let slot = admission::admit(listener, global, None, attributes.source.ip())
            .map_err(|refusal| {
                tracing::warn!(id = attributes.id, route = %route.config.name, authority = %authority, reason = refusal.reason(), "tunnel refused: {}", refusal.reason().replace('_', " "));
                refused(&attributes, refusal.reason(), StatusCode::SERVICE_UNAVAILABLE)
            })?;
        let refuse_destination = |attributes: &Attributes, status: &StatusCode| {
            tracing::warn!(id = attributes.id, route = %route.config.name, authority = %authority, %status, "tunnel destination refused");
            if *status == StatusCode::FORBIDDEN {
                listener.stats.authz_denied.fetch_add(1, Relaxed);
            }
            refused(attributes, "destination_refused", *status);
        };
        let named_cluster = (self.named_cluster(host, port))
            .inspect_err(|status| refuse_destination(&attributes, status))?;
        match Box::pin(authorize::check(route, &attributes)).await {
            Ok((decision, _)) => attributes.authz = decision,
            Err((decision, _)) => {
                tracing::info!(id = attributes.id, route = %route.config.name, authority = %authority, decision = decision.as_str(), "tunnel not authorized");
                listener.stats.authz_denied.fetch_add(1, Relaxed);
                return Err(refused(&attributes, "denied", StatusCode::FORBIDDEN));
            }
        }
        // Looked up only now: a client the authorizer refuses makes the gateway resolve
        // nothing (lookups hold threads; docs/robustness.md).
        let (cluster, destination) = match named_cluster {
            Some(named) => (named, Destination::Cluster),
            None => {
                let addresses = self.allowed_addresses(host, port).await;
                let addresses =
                    addresses.inspect_err(|status| refuse_destination(&attributes, status))?;
                (route.cluster.clone(), Destination::Addresses(addresses))
            }
        };
        match self.dial(&cluster, &destination, &attributes).await {
            Ok((upstream, lease)) => {
                route.connections.fetch_add(1, Relaxed);
                let _slot = slot;
                Ok(Opened {
                    _slot,
                    attributes,
                    cluster,
                    lease,
                    upstream,
                })
            }
            Err(error) => {
                tracing::warn!(id = attributes.id, route = %route.config.name, authority = %authority, reason = error.code(), "tunnel destination unreachable: {error}");
                let status = StatusCode::BAD_GATEWAY;
                attributes
                    .span
                    .with(|s| s.set("http.response.status_code", status.as_u16()));
                attributes
                    .span
                    .with(|s| s.fail(error.code(), error.to_string()));
                Err(status)
            }
        }
    }

    /// A tunnel is a connection of its own: the outer one's attributes (TLS session, client
    /// identity), its client address as a trusted edge says it, its target.
    fn tunnel_attributes(&self, request: &Parts, host: &str, port: u16) -> Attributes {
        let mut attributes = self.outer.attributes.clone();
        attributes.id = next_id();
        attributes.span = Default::default();
        attributes.authz = None;
        let peer = (attributes.session.as_ref())
            .and_then(|s| s.peer.as_ref())
            .and_then(|p| p.spiffe_id.as_deref());
        // Anyone can write a header: it is believed only from a listed edge.
        if let Some(address) = (self.settings().client_address_header.as_ref())
            .filter(|h| h.trusts(peer))
            .and_then(|h| request.headers.get(&h.name))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
        {
            attributes.source = address;
        }
        let target = TunnelTarget {
            host: host.to_string(),
            port,
        };
        attributes.protocol = Some(Box::new(Protocol::Tunnel(target)));
        let peer = peer.map(str::to_string);
        self.start_span(request, &mut attributes, peer.as_deref());
        attributes
    }

    /// The tunnel's SERVER span: a child of the edge's CONNECT span when the edge is one
    /// this terminator trusts (as for `client_address_header`); from anyone else a trace of
    /// its own, linked to what the sender claimed.
    fn start_span(&self, request: &Parts, attributes: &mut Attributes, peer: Option<&str>) {
        let Some(tracer) = self.context.tracer.as_ref() else {
            return;
        };
        let header = |name| request.headers.get(name).and_then(|v| v.to_str().ok());
        let sent = header("traceparent")
            .and_then(|parent| SpanContext::from_headers(parent, header("tracestate")));
        let trusted =
            (self.settings().client_address_header.as_ref()).is_some_and(|h| h.trusts(peer));
        let parent = sent.as_ref().filter(|_| trusted);
        end::trace::start(Some(tracer), attributes, "tunnel", parent);
        attributes.span.with(|span| {
            if let (Some(claimed), None) = (&sent, parent) {
                span.link(claimed.clone());
            }
            if let Some(outer) = self.outer.attributes.span.context() {
                span.link(outer);
            }
            span.set("http.request.method", "CONNECT");
        });
    }

    /// The tunnel's destination: the named cluster's endpoints, or the address asked for
    /// with the cluster's settings; its PROXY header and TLS as the cluster says.
    async fn dial(
        &self,
        cluster: &Cluster,
        destination: &Destination,
        attributes: &Attributes,
    ) -> Result<(Leg, Lease), Error> {
        let mut span = attributes.span.child("connect", SpanKind::Client);
        let dialed = async {
            let (stream, lease) = match destination {
                Destination::Cluster => cluster.connect_traced(span.as_mut()).await?,
                Destination::Addresses(addresses) => connect_first(cluster, addresses).await?,
            };
            let header = proxy_out::header(&cluster.config, attributes, None)?;
            let handshakes = &self.context.handshakes;
            let leg = cluster
                .originate(stream, header, attributes.sni(), handshakes)
                .await?;
            Ok((leg, lease))
        }
        .await;
        crate::dial::traced(span, dialed)
    }

    /// Relays an opened tunnel until it ends (or the connection it came in on is closed),
    /// then ends it like any connection.
    async fn relay(&self, opened: Opened, mut downstream: Leg) {
        let Opened {
            _slot,
            attributes,
            cluster,
            lease,
            mut upstream,
        } = opened;
        let (route, context) = (&self.route, &self.context);
        let registration = context.registry.register(Arc::new(Live::new(attributes)));
        let live = registration.live.clone();
        live.set_upstream(Upstream {
            route: route.clone(),
            cluster,
            endpoint: lease.endpoint.clone(),
        });
        let work = async {
            tokio::select! {
                r = relay::relay_streams(&mut downstream, &mut upstream, &live.counters) => r,
                reason = self.outer.close_requested() => Err(Error::internal(reason.kind())),
            }
        };
        let result = end::supervise(&live, route, std::pin::pin!(work)).await;
        relay::pass_on_abort(&result, &mut downstream, &mut upstream);
        end::finish(registration, route, &result, context.access_log.as_ref());
        drop(lease);
    }
}
