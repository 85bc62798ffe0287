//! HTTP CONNECT tunnels, both ends. The edge carries a connection inside a tunnel through a
//! CONNECT proxy (another Causeway, or Envoy): HTTP/1.1, one connection per tunnel, or
//! HTTP/2, tunnels as streams over a pool of connections ([`client`]). The terminator
//! accepts tunnels and dials each one's destination, only where allowed ([`server`]).
//!
//! Both drive hyper's connection-level API with upgrades, which keeps the bytes that arrive
//! right after the 200 response (a server-first protocol's banner) — hyper-util's `Tunnel`
//! connector would lose them.

pub mod client;
pub mod server;

use crate::attributes::Attributes;

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
