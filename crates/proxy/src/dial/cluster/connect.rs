//! Opening a TCP connection to an endpoint (`ip:port`, or `host:port` resolved each time).

use super::Endpoint;
use crate::dial::resolve::{Purpose, resolve};
use std::io;
use tokio::net::TcpStream;

pub(crate) async fn connect(endpoint: &Endpoint) -> io::Result<TcpStream> {
    if let Some(address) = endpoint.socket_address {
        return TcpStream::connect(address).await;
    }
    let address = endpoint.address.as_str();
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{address} did not resolve"),
    );
    for addr in resolve(address, Purpose::Endpoint).await? {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}
