//! The load modes. Each opens real TCP connections to `target`, checks that every byte
//! comes back, and returns its figures.

mod connection_rate;
mod idle_hold;
mod ping_pong;
mod sftp;
mod throughput;

pub use connection_rate::{ConnectionRate, ConnectionRateResult};
pub use idle_hold::{IdleHold, IdleHoldResult};
pub use ping_pong::{PingPong, PingPongResult};
pub use sftp::SftpTransfer;
pub use throughput::{Throughput, ThroughputResult};

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Where a mode connects, and how: plain TCP, or TLS 1.3 through `tls`; what a new
/// connection says first when the target must read it to route (connection rate).
#[derive(Clone)]
pub struct Target {
    pub address: SocketAddr,
    pub tls: Option<crate::tls::Client>,
    pub first_message: Option<std::sync::Arc<[u8]>>,
}

impl Target {
    pub fn plain(address: SocketAddr) -> Target {
        Target {
            address,
            tls: None,
            first_message: None,
        }
    }

    /// The target as one more client sees it: a TLS client gets a session store of its own.
    pub fn another_client(&self) -> Target {
        Target {
            address: self.address,
            tls: self.tls.as_ref().map(|c| c.another()),
            first_message: self.first_message.clone(),
        }
    }
}

/// A connection to a target, plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }
}

/// Connects (TCP_NODELAY) and, for a TLS target, completes the handshake.
pub async fn open(target: &Target) -> crate::Result<Conn> {
    let tcp = connect(target.address).await?;
    Ok(match &target.tls {
        None => Conn::Plain(tcp),
        Some(client) => Conn::Tls(Box::new(client.handshake(tcp).await?)),
    })
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

pub(crate) async fn connect(target: SocketAddr) -> crate::Result<TcpStream> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect to {target}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}
