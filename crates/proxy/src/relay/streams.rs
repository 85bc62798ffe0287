//! The relay between any two byte streams (TLS legs, tunnels): the contract of the plain
//! relay — half-close passed on, no buffer while idle, the first error names its side — over
//! `AsyncRead + AsyncWrite` instead of sockets.

use super::{Counters, Pending, SCRATCH, Step};
use crate::error::{Error, Side};
use std::future::Future;
use std::io::{self, ErrorKind};
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Relays between any two byte streams (TLS legs): the same contract as [`relay`] —
/// half-close passed on (for TLS: close_notify, then FIN), no buffer held while idle (reads
/// go to the per-thread scratch; only what the receiver does not take is kept), the first
/// error ends both directions and names its side.
pub fn relay_streams<'a, D, U>(
    downstream: &'a mut D,
    upstream: &'a mut U,
    counters: &'a Counters,
) -> StreamRelay<'a, D, U>
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    StreamRelay {
        downstream,
        upstream,
        counters,
        to_upstream: StreamDirection::default(),
        to_downstream: StreamDirection::default(),
    }
}

pub struct StreamRelay<'a, D, U> {
    downstream: &'a mut D,
    upstream: &'a mut U,
    counters: &'a Counters,
    to_upstream: StreamDirection,
    to_downstream: StreamDirection,
}

#[derive(Default)]
struct StreamDirection {
    state: Flow,
    /// Bytes read but not yet taken by the receiver.
    pending: Option<Box<Pending>>,
    /// Written since the last flush (a TLS writer may hold records back until flushed).
    unflushed: bool,
}

#[derive(Default, PartialEq, Eq)]
enum Flow {
    #[default]
    Open,
    /// The source ended; the receiver's write side is being shut down.
    ShuttingDown,
    Done,
}

impl<D, U> Future for StreamRelay<'_, D, U>
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let counters = this.counters;
        let up = this.to_upstream.poll(
            cx,
            &mut *this.downstream,
            &mut *this.upstream,
            (Side::Downstream, Side::Upstream),
            &counters.upstream_bytes,
            counters,
        );
        if let Poll::Ready(Err(e)) = up {
            return Poll::Ready(Err(e));
        }
        let down = this.to_downstream.poll(
            cx,
            &mut *this.upstream,
            &mut *this.downstream,
            (Side::Upstream, Side::Downstream),
            &counters.downstream_bytes,
            counters,
        );
        if let Poll::Ready(Err(e)) = down {
            return Poll::Ready(Err(e));
        }
        if this.to_upstream.state == Flow::Done && this.to_downstream.state == Flow::Done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

impl StreamDirection {
    fn poll<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut R,
        dst: &mut W,
        (src_side, dst_side): (Side, Side),
        counter: &AtomicU64,
        counters: &Counters,
    ) -> Poll<Result<(), Error>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let write_error = |e: io::Error| Error::io(dst_side, &e);
        loop {
            match self.state {
                Flow::Done => return Poll::Ready(Ok(())),
                Flow::ShuttingDown => {
                    // A receiver that is already gone has nothing left to tell.
                    match ready!(Pin::new(&mut *dst).poll_shutdown(cx)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::NotConnected => {}
                        Err(e) => return Poll::Ready(Err(write_error(e))),
                    }
                    self.state = Flow::Done;
                    return Poll::Ready(Ok(()));
                }
                Flow::Open => {}
            }
            if let Some(pending) = &mut self.pending {
                while pending.written < pending.bytes.len() {
                    let n = ready!(
                        Pin::new(&mut *dst).poll_write(cx, &pending.bytes[pending.written..])
                    )
                    .map_err(write_error)?;
                    if n == 0 {
                        return Poll::Ready(Err(write_error(ErrorKind::WriteZero.into())));
                    }
                    pending.written += n;
                }
                self.pending = None;
                self.unflushed = true;
            }
            if self.unflushed {
                ready!(Pin::new(&mut *dst).poll_flush(cx)).map_err(write_error)?;
                self.unflushed = false;
            }
            let step = read_and_write(cx, src, dst);
            match step {
                Step::NotReady => return Poll::Pending,
                Step::Eof => self.state = Flow::ShuttingDown,
                Step::Written(n) => {
                    counters.record(counter, n);
                    self.unflushed = true;
                }
                Step::Pending(n, rest) => {
                    counters.record(counter, n);
                    self.pending = Some(rest);
                }
                Step::ReadFailed(e) => return Poll::Ready(Err(Error::io(src_side, &e))),
                Step::WriteFailed(e) => return Poll::Ready(Err(write_error(e))),
            }
        }
    }
}

/// One read from a stream into the thread's scratch buffer, written straight on to the
/// other (what it does not take yet is returned as `Step::Pending`).
#[inline]
fn read_and_write<R, W>(cx: &mut Context<'_>, src: &mut R, dst: &mut W) -> Step<Box<Pending>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    SCRATCH.with_borrow_mut(|buf| {
        let mut read = ReadBuf::new(buf);
        match Pin::new(&mut *src).poll_read(cx, &mut read) {
            Poll::Pending => Step::NotReady,
            // A TLS peer that closes without close_notify has still ended its stream.
            Poll::Ready(Err(e)) if e.kind() == ErrorKind::UnexpectedEof => Step::Eof,
            Poll::Ready(Err(e)) => Step::ReadFailed(e),
            Poll::Ready(Ok(())) if read.filled().is_empty() => Step::Eof,
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                let rest = |from: usize| {
                    Step::Pending(
                        n,
                        Box::new(Pending {
                            bytes: buf[from..n].to_vec(),
                            written: 0,
                        }),
                    )
                };
                match Pin::new(&mut *dst).poll_write(cx, &buf[..n]) {
                    Poll::Ready(Ok(w)) if w == n => Step::Written(n),
                    Poll::Ready(Ok(w)) => rest(w),
                    Poll::Pending => rest(0),
                    Poll::Ready(Err(e)) => Step::WriteFailed(e),
                }
            }
        }
    })
}
