//! One leg of a connection: the plain socket, TLS over it (terminated from the client, or
//! originated to the server), or a tunnel through an HTTP CONNECT proxy. Plain legs take the
//! relay's zero-copy-state fast path; the others the generic one.

use crate::relay::h2_stream::H2Stream;
use crate::socket;
use bytes::{Buf, Bytes};
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
    Tunnel(Box<Tunnel>),
}

/// A tunnel through an HTTP CONNECT proxy (or accepted from one).
pub struct Tunnel {
    pub io: TunnelIo,
    /// What must live as long as the tunnel (an HTTP/2 pool's stream count, metrics).
    pub keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

pub enum TunnelIo {
    /// HTTP/1.1: the connection itself once the CONNECT is answered, with the bytes that
    /// came in behind the answer (read first, never lost).
    Http1 { connection: Leg, early: Bytes },
    /// HTTP/2: one stream of a shared connection.
    Http2(H2Stream),
}

impl Leg {
    pub fn tunnel(io: TunnelIo) -> Leg {
        Leg::Tunnel(Box::new(Tunnel { io, keep: None }))
    }

    /// The socket underneath, for socket options; none for a tunnel.
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Leg::Plain(s) => Some(s),
            Leg::Tls(s) => Some(s.get_ref().0),
            Leg::Tunnel(..) => None,
        }
    }

    /// Makes the end of this leg an abort the peer sees as one: a TCP RST, or an HTTP/2
    /// RST_STREAM for a tunnel.
    pub fn abort(&mut self) {
        match self {
            Leg::Plain(s) => socket::reset_on_close(s),
            Leg::Tls(s) => socket::reset_on_close(s.get_ref().0),
            Leg::Tunnel(t) => match &mut t.io {
                TunnelIo::Http1 { connection, .. } => connection.abort(),
                TunnelIo::Http2(s) => s.abort(),
            },
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
            Leg::Tunnel(t) => match &mut t.io {
                TunnelIo::Http1 { early, .. } if !early.is_empty() => {
                    let n = early.len().min(buf.remaining());
                    buf.put_slice(&early[..n]);
                    early.advance(n);
                    Poll::Ready(Ok(()))
                }
                TunnelIo::Http1 { connection, .. } => Pin::new(connection).poll_read(cx, buf),
                TunnelIo::Http2(s) => Pin::new(s).poll_read(cx, buf),
            },
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
            Leg::Tunnel(t) => match &mut t.io {
                TunnelIo::Http1 { connection, .. } => Pin::new(connection).poll_write(cx, buf),
                TunnelIo::Http2(s) => Pin::new(s).poll_write(cx, buf),
            },
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Leg::Plain(s) => Pin::new(s).poll_flush(cx),
            Leg::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Leg::Tunnel(t) => match &mut t.io {
                TunnelIo::Http1 { connection, .. } => Pin::new(connection).poll_flush(cx),
                TunnelIo::Http2(s) => Pin::new(s).poll_flush(cx),
            },
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Leg::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Leg::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Leg::Tunnel(t) => match &mut t.io {
                TunnelIo::Http1 { connection, .. } => Pin::new(connection).poll_shutdown(cx),
                TunnelIo::Http2(s) => Pin::new(s).poll_shutdown(cx),
            },
        }
    }
}
