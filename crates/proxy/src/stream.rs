//! One leg of a connection: the plain socket, or TLS over it (terminated from the client,
//! or originated to the server). Plain legs take the relay's zero-copy-state fast path;
//! TLS legs the generic one.

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

pub enum Leg {
    Plain(TcpStream),
    /// Boxed: the TLS state is large, and most legs are plain.
    Tls(Box<TlsStream<TcpStream>>),
    /// A tunnel through an HTTP CONNECT proxy (or accepted from one), with what must live as
    /// long as it (an HTTP/2 pool's stream count).
    Tunnel(
        Box<TokioIo<Upgraded>>,
        Option<Box<dyn std::any::Any + Send + Sync>>,
    ),
}

impl Leg {
    /// The socket underneath, for socket options and resets; none for a tunnel (a stream of
    /// a shared connection).
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Leg::Plain(s) => Some(s),
            Leg::Tls(s) => Some(s.get_ref().0),
            Leg::Tunnel(..) => None,
        }
    }
}

impl AsyncRead for Leg {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Leg::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Leg::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Leg::Tunnel(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Leg {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Leg::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Leg::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Leg::Tunnel(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Leg::Plain(s) => Pin::new(s).poll_flush(cx),
            Leg::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Leg::Tunnel(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Leg::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Leg::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Leg::Tunnel(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
