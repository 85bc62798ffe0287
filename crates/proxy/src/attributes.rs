//! Everything known about one connection, in one typed value. Routing (and later
//! authorization, logs and tunnels) read it; inspection stages add to it.

use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Attributes {
    /// Connection id, unique within the process, for logs.
    pub id: u64,
    pub listener: Arc<str>,
    /// The client's address (later: as told by a PROXY header from a trusted balancer).
    pub source: SocketAddr,
    /// The address the client connected to.
    pub destination: SocketAddr,
    /// What the TLS inspector found, on listeners that inspect TLS.
    pub tls: Tls,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Tls {
    /// The listener does not inspect TLS.
    #[default]
    NotInspected,
    /// The client's first bytes are not a TLS handshake.
    NotTls,
    /// A ClientHello: server name and ALPN, read without terminating TLS. (Boxed: every
    /// connection carries its attributes, most of them without a ClientHello.)
    Hello(Box<protocols::tls::ClientHello>),
}

impl Tls {
    pub fn hello(&self) -> Option<&protocols::tls::ClientHello> {
        match self {
            Tls::Hello(hello) => Some(hello),
            _ => None,
        }
    }
}
