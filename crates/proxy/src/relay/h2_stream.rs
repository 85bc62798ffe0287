//! One HTTP/2 stream as a byte stream: the tunnel of a CONNECT (or POST) request, either end.
//!
//! Driven on the h2 crate directly rather than through hyper's upgrade, for what hyper hides:
//! - an abort is passed on as an abort: `RST_STREAM(CONNECT_ERROR)` when the other leg was
//!   reset (RFC 9113 §8.5), and a `RST_STREAM` received reads as a connection reset, so the
//!   relay resets the TCP connection on the other side (hyper reads CANCEL as a clean end);
//! - END_STREAM is our half-close, both ways;
//! - flow control is released as the bytes are taken, so a slow reader holds back its own
//!   stream, not the connection.

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes of one tunnel HTTP/2 keeps queued for sending: enough to keep a fast path full.
pub(crate) const MAX_SEND_BUFFER: usize = 1024 * 1024;
/// DATA frames we accept: larger than HTTP/2's 16 KiB default, so a bulk tunnel costs fewer
/// frames (and wake-ups) per byte; peers that ignore it just send smaller ones.
pub(crate) const MAX_FRAME: u32 = 256 * 1024;

pub struct H2Stream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received but not yet read.
    unread: Bytes,
    /// Our END_STREAM or RST_STREAM has gone out.
    send_closed: bool,
}

impl H2Stream {
    pub fn new(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        H2Stream {
            send,
            recv,
            unread: Bytes::new(),
            send_closed: false,
        }
    }

    /// Resets the stream: the other end sees its connection aborted, not ended.
    pub fn abort(&mut self) {
        self.send.send_reset(Reason::CONNECT_ERROR);
        self.send_closed = true;
    }
}

/// A stream error as the relay understands it: a reset is a reset, whatever its code.
fn io_error(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e.into_io().expect("an I/O error");
    }
    match e.reason() {
        Some(_) => io::Error::new(io::ErrorKind::ConnectionReset, e),
        None => io::Error::other(e),
    }
}

impl AsyncRead for H2Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.unread.is_empty() {
            match ready!(self.recv.poll_data(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(data)) => self.unread = data,
                // A reset after the peer's END_STREAM is no news for this direction.
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => {
                    return Poll::Ready(Ok(()));
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
        let n = self.unread.len().min(buf.remaining());
        let taken = self.unread.split_to(n);
        buf.put_slice(&taken);
        // Window back to the sender only now that the bytes are ours to write on.
        let _ = self.recv.flow_control().release_capacity(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for H2Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if self.send_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // Reserve only with bytes in hand: an idle reservation would pin connection window.
        self.send.reserve_capacity(buf.len());
        loop {
            let capacity = self.send.capacity();
            if capacity > 0 {
                let n = capacity.min(buf.len());
                self.send
                    .send_data(Bytes::copy_from_slice(&buf[..n]), false)
                    .map_err(io_error)?;
                return Poll::Ready(Ok(n));
            }
            match ready!(self.send.poll_capacity(cx)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
                None => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection's task writes frames out as soon as they are queued.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.send_closed {
            self.send_closed = true;
            self.send.reserve_capacity(0);
            self.send.send_data(Bytes::new(), true).map_err(io_error)?;
        }
        Poll::Ready(Ok(()))
    }
}
