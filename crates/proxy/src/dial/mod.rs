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
pub mod tunnel;

use crate::attributes::Attributes;
use crate::error::{Error, Kind};
use crate::relay::Leg;
use cluster::{Cluster, Lease};

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
        return tunnel_through(cluster, settings, route, attributes, routing, handshakes).await;
    }
    // Before dialing: a header that cannot be sent refuses the connection, dialing nothing.
    let header = proxy_out::header(&cluster.config, attributes, routing)?;
    let target = routing.and_then(|r| r.address.as_deref());
    let (stream, lease) = match target {
        None => cluster.connect().await?,
        Some(address) => {
            let authorization = route.authorization.as_ref();
            cluster.connect_to(address, authorization).await?
        }
    };
    let sni = attributes.sni();
    let leg = cluster.originate(stream, header, sni, handshakes);
    Ok((leg.await?, lease))
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
) -> Result<(Leg, Lease), Error> {
    let value = |name: &str| placeholder(attributes, &route.name, name);
    let authority = match routing.and_then(|r| r.address.as_deref()) {
        None => settings.authority.render(value),
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
            address.to_string()
        }
    };
    let mut headers: Vec<(String, String)> = settings
        .headers
        .iter()
        .map(|(name, template)| (name.clone(), template.render(value)))
        .collect();
    if let Some(routing) = routing {
        headers.extend(routing.headers.iter().cloned());
    }
    cluster
        .tunnel(settings, &authority, &headers, attributes.sni(), handshakes)
        .await
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
