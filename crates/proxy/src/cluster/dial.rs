//! Opening a TCP connection to an endpoint address (`ip:port` or `host:port`).

use std::io;
use tokio::net::{TcpStream, lookup_host};

pub(crate) async fn connect(address: &str) -> io::Result<TcpStream> {
    if let Ok(addr) = address.parse::<std::net::SocketAddr>() {
        return TcpStream::connect(addr).await;
    }
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{address} did not resolve"),
    );
    for addr in lookup_host(address).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}
