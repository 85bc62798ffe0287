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
}
