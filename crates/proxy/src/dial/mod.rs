//! The dial stage: the connection's upstream, once it is authorized — a cluster's endpoint
//! (priorities, balancing, health, ejection, failover: [`cluster`]) reached over TCP with
//! the cluster's PROXY header ([`proxy_out`]) and TLS, or a tunnel through a CONNECT proxy
//! ([`tunnel`]: HTTP/1.1, or HTTP/2 streams over a pool of connections).
//!
//! Bytes that arrive right after a tunnel's 200 response (a server-first protocol's banner)
//! are kept: HTTP/1.1 takes them from hyper with the connection, HTTP/2 has them on the
//! stream — hyper-util's `Tunnel` connector would lose them.

pub mod cluster;
pub mod proxy_out;
pub(crate) mod resolve;
pub mod tunnel;

use crate::attributes::Attributes;
use crate::error::{Error, Kind};
use crate::relay::Leg;
use cluster::{Cluster, Lease};
use telemetry::trace::{Span, SpanKind};

/// Dials the cluster (the route's, or the one the authorizer chose): a tunnel through it,
/// or TCP with the cluster's PROXY header and TLS.
pub(crate) async fn dial(
    cluster: &Cluster,
    route: &config::Route,
    attributes: &Attributes,
    routing: Option<&authz::Routing>,
    handshakes: &tls::HandshakeStats,
) -> Result<(Leg, Lease), Error> {
    if let Some(settings) = &cluster.config.tunnel {
        let mut span = attributes.span.child("CONNECT", SpanKind::Client);
        let dialed = tunnel_through(
            cluster,
            settings,
            route,
            attributes,
            routing,
            handshakes,
            span.as_mut(),
        )
        .await;
        return traced(span, dialed);
    }
    let mut span = attributes.span.child("connect", SpanKind::Client);
    if let Some(span) = &mut span {
        span.set("causeway.cluster", cluster.name().to_string());
    }
    let dialed = async {
        // Before dialing: a header that cannot be sent refuses the connection, dialing
        // nothing.
        let header = proxy_out::header(&cluster.config, attributes, routing)?;
        let target = routing.and_then(|r| r.address.as_deref());
        let (stream, lease) = match target {
            None => cluster.connect_traced(span.as_mut()).await?,
            Some(address) => {
                let authorization = route.authorization.as_ref();
                cluster.connect_to(address, authorization).await?
            }
        };
        let sni = attributes.sni();
        let leg = cluster.originate(stream, header, sni, handshakes);
        Ok((leg.await?, lease))
    }
    .await;
    traced(span, dialed)
}

/// The dial's span ended with where it went, or why it could not.
pub(crate) fn traced(
    mut span: Option<Span>,
    dialed: Result<(Leg, Lease), Error>,
) -> Result<(Leg, Lease), Error> {
    if let Some(span) = &mut span {
        match &dialed {
            Ok((_, lease)) => {
                let address = &lease.endpoint.address;
                let (host, port) = address.rsplit_once(':').unwrap_or((address, ""));
                span.set("server.address", host.trim_matches(['[', ']']).to_string());
                if let Ok(port) = port.parse::<u16>() {
                    span.set("server.port", port);
                }
            }
            Err(error) => span.fail(error.code(), error.to_string()),
        }
    }
    dialed
}

/// Opens the tunnel a tunnel cluster carries the connection in: the authority and headers
/// from the cluster's templates, or the authorizer's answer.
async fn tunnel_through(
    cluster: &Cluster,
    settings: &config::Tunnel,
    route: &config::Route,
    attributes: &Attributes,
    routing: Option<&authz::Routing>,
    handshakes: &tls::HandshakeStats,
    span: Option<&mut Span>,
) -> Result<(Leg, Lease), Error> {
    let value = |name: &str| placeholder(attributes, &route.name, name);
    let authority = tunnel_authority(settings, route, attributes, routing)?;
    let mut headers: Vec<(String, String)> = settings
        .headers
        .iter()
        .map(|(name, template)| (name.clone(), template.render(value)))
        .collect();
    if let Some(routing) = routing {
        headers.extend(routing.headers.iter().cloned());
    }
    if let Some(span) = span {
        // The terminator (another Causeway, an Envoy) continues the trace from here.
        headers.retain(|(name, _)| !is_trace_header(name));
        headers.push(("traceparent".into(), span.context().traceparent()));
        if let Some(state) = &span.context().state {
            headers.push(("tracestate".into(), state.to_string()));
        }
        span.set("http.request.method", "CONNECT");
        span.set("causeway.tunnel.authority", authority.clone());
        span.set("causeway.cluster", cluster.name().to_string());
    }
    cluster
        .tunnel(settings, &authority, &headers, attributes.sni(), handshakes)
        .await
}

/// Where a tunnel goes (the CONNECT authority): the cluster's template, or the authorizer's
/// answer when the route allows it as a dynamic target.
pub(crate) fn tunnel_authority(
    settings: &config::Tunnel,
    route: &config::Route,
    attributes: &Attributes,
    routing: Option<&authz::Routing>,
) -> Result<String, Error> {
    let value = |name: &str| placeholder(attributes, &route.name, name);
    match routing.and_then(|r| r.address.as_deref()) {
        None => Ok(settings.authority.render(value)),
        Some(address) => {
            let allowed = address.parse().is_ok_and(|a| {
                route
                    .authorization
                    .as_ref()
                    .and_then(|a| a.dynamic_targets.as_ref())
                    .is_some_and(|t| t.allows(a))
            });
            if !allowed {
                return Err(Error::internal(Kind::BadDynamicTarget));
            }
            Ok(address.to_string())
        }
    }
}

fn is_trace_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("traceparent") || name.eq_ignore_ascii_case("tracestate")
}

/// The value of a template placeholder for a connection (docs/tunnels.md).
pub(crate) fn placeholder(a: &Attributes, route: &str, name: &str) -> Option<String> {
    Some(match name {
        "source" => a.source.to_string(),
        "source_ip" => a.source.ip().to_string(),
        "source_port" => a.source.port().to_string(),
        "destination" => a.destination.to_string(),
        "destination_port" => a.destination.port().to_string(),
        "sni" => a.sni()?.to_string(),
        "spiffe_id" => a.session.as_ref()?.peer.as_ref()?.spiffe_id.clone()?,
        "listener" => a.listener.to_string(),
        "route" => route.to_string(),
        _ => return None,
    })
}
