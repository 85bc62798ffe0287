//! The load modes. Each opens real TCP connections to `target`, checks that every byte
//! comes back, and returns its figures.

mod connection_rate;
mod idle_hold;
mod ping_pong;
mod throughput;

pub use connection_rate::{ConnectionRate, ConnectionRateResult};
pub use idle_hold::{IdleHold, IdleHoldResult};
pub use ping_pong::{PingPong, PingPongResult};
pub use throughput::{Throughput, ThroughputResult};

use std::net::SocketAddr;
use tokio::net::TcpStream;

pub(crate) async fn connect(target: SocketAddr) -> crate::Result<TcpStream> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect to {target}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}
