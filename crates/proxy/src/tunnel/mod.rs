//! HTTP CONNECT tunnels, both ends. The edge carries a connection inside a tunnel through a
//! CONNECT proxy (another Causeway, or Envoy): HTTP/1.1, one connection per tunnel, or
//! HTTP/2, tunnels as streams over a pool of connections ([`client`]). The terminator
//! accepts tunnels and dials each one's destination, only where allowed ([`server`]).
//!
//! Bytes that arrive right after the 200 response (a server-first protocol's banner) are
//! kept: HTTP/1.1 takes them from hyper with the connection, HTTP/2 has them on the stream —
//! hyper-util's `Tunnel` connector would lose them.

pub mod client;
pub mod h2_stream;
pub mod server;

use crate::attributes::Attributes;

/// Bytes of one tunnel HTTP/2 keeps queued for sending: enough to keep a fast path full.
const MAX_SEND_BUFFER: usize = 1024 * 1024;
/// DATA frames we accept: larger than HTTP/2's 16 KiB default, so a bulk tunnel costs fewer
/// frames (and wake-ups) per byte; peers that ignore it just send smaller ones.
const MAX_FRAME: u32 = 256 * 1024;

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
