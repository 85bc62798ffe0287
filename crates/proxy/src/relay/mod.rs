//! Bytes both ways between two sockets, exactly.
//!
//! - Half-close: a FIN from one side is passed on as a FIN (shutdown of our write) and the
//!   other direction keeps flowing until it ends too.
//! - No buffer is held while a connection is idle: each direction waits for readability with
//!   no memory, reads into a per-thread scratch buffer and writes straight on. Only when the
//!   receiver cannot take everything does the rest move to an owned buffer, freed once
//!   written. An idle connection costs its sockets and this future, nothing more.
//! - Errors: the first read/write error ends both directions and says which side failed.

pub mod h2_stream;
pub(crate) mod leg;
mod splice;
mod streams;

pub use leg::{Leg, TunnelIo};
pub use splice::pipes;
pub use streams::{StreamRelay, relay_streams};

use crate::error::{Error, Kind, Side};
use crate::socket;
use socket2::SockRef;
use std::cell::RefCell;
use std::future::Future;
use std::io::{self, ErrorKind, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

const SCRATCH_SIZE: usize = 256 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// Byte counts and the time of the last byte, readable from other tasks while the relay runs.
#[derive(Debug)]
pub struct Counters {
    start: Instant,
    /// Client → server.
    pub upstream_bytes: AtomicU64,
    /// Server → client.
    pub downstream_bytes: AtomicU64,
    last_activity_ms: AtomicU64,
}

impl Counters {
    pub fn new() -> Self {
        Counters {
            start: Instant::now(),
            upstream_bytes: AtomicU64::new(0),
            downstream_bytes: AtomicU64::new(0),
            last_activity_ms: AtomicU64::new(0),
        }
    }

    /// When the connection was accepted.
    pub fn started(&self) -> Instant {
        self.start
    }

    pub fn last_activity(&self) -> Instant {
        self.start + std::time::Duration::from_millis(self.last_activity_ms.load(Relaxed))
    }

    pub(crate) fn record(&self, counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Relaxed);
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_activity_ms.store(ms, Relaxed);
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

/// An abort on one side is passed on as an abort on the other: a reset (TCP RST, HTTP/2
/// RST_STREAM) or an I/O error from one leg makes the other leg's end a reset too.
pub(crate) fn pass_on_abort(result: &Result<(), Error>, downstream: &mut Leg, upstream: &mut Leg) {
    if let Err(Error {
        side,
        kind: Kind::Reset | Kind::Io(_),
    }) = result
    {
        match side {
            Side::Upstream => downstream.abort(),
            Side::Downstream => upstream.abort(),
            Side::Internal => {}
        }
    }
}

/// Relays until both directions have ended (Ok) or one failed (Err, naming the side).
///
/// A hand-written future rather than two `async fn`s joined: it holds no readiness futures,
/// only which directions are done and, under backpressure, a boxed rest — a few dozen bytes
/// per idle connection. Readiness wakers live in tokio's per-socket slots.
/// `splice`: forward through a pipe with splice(2) (no copy into user space) whenever one
/// is to be had, else by the scratch buffer.
pub fn relay<'a>(
    downstream: &'a TcpStream,
    upstream: &'a TcpStream,
    counters: &'a Counters,
    splice: bool,
) -> Relay<'a> {
    Relay {
        downstream,
        upstream,
        counters,
        to_upstream: Direction::new(splice),
        to_downstream: Direction::new(splice),
    }
}

pub struct Relay<'a> {
    downstream: &'a TcpStream,
    upstream: &'a TcpStream,
    counters: &'a Counters,
    to_upstream: Direction,
    to_downstream: Direction,
}

struct Direction {
    done: bool,
    /// Forward with splice(2) when a pipe is to be had (in the padding beside `done`: the
    /// relay stays as small as it was).
    splice: bool,
    /// Bytes read but not yet taken by the receiver.
    pending: Option<Box<Rest>>,
}

/// Bytes read but not yet taken by the receiver, and how many of them it took so far.
struct Pending {
    bytes: Vec<u8>,
    written: usize,
}

/// What the receiver of a plain relay has not taken yet.
enum Rest {
    /// Copied aside from the scratch buffer.
    Copied(Pending),
    /// Still in a pipe (splice): `left` bytes.
    Piped { pipe: splice::Pipe, left: usize },
}

impl Future for Relay<'_> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let counters = this.counters;
        if !this.to_upstream.done {
            let ends = Ends {
                src: this.downstream,
                dst: this.upstream,
                src_side: Side::Downstream,
                dst_side: Side::Upstream,
                counter: &counters.upstream_bytes,
            };
            if let Poll::Ready(Err(e)) = this.to_upstream.poll(cx, &ends, counters) {
                return Poll::Ready(Err(e));
            }
        }
        if !this.to_downstream.done {
            let ends = Ends {
                src: this.upstream,
                dst: this.downstream,
                src_side: Side::Upstream,
                dst_side: Side::Downstream,
                counter: &counters.downstream_bytes,
            };
            if let Poll::Ready(Err(e)) = this.to_downstream.poll(cx, &ends, counters) {
                return Poll::Ready(Err(e));
            }
        }
        if this.to_upstream.done && this.to_downstream.done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

struct Ends<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    src_side: Side,
    dst_side: Side,
    counter: &'a AtomicU64,
}

enum Step<P> {
    Eof,
    NotReady,
    Written(usize),
    /// Read `usize` bytes; the receiver did not take all of them yet.
    Pending(usize, P),
    ReadFailed(io::Error),
    WriteFailed(io::Error),
}

impl Direction {
    fn new(splice: bool) -> Direction {
        Direction {
            done: false,
            splice,
            pending: None,
        }
    }

    /// Moves bytes until the source has none, the receiver is full, or the source ended.
    /// Ready(Ok) only when this direction is finished (`done`).
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        ends: &Ends<'_>,
        counters: &Counters,
    ) -> Poll<Result<(), Error>> {
        loop {
            if let Some(pending) = &mut self.pending {
                ready!(flush(cx, ends, pending))?;
                if let Some(pending) = self.pending.take()
                    && let Rest::Piped { pipe, .. } = *pending
                {
                    pipe.give_back();
                }
            }
            ready!(ends.src.poll_read_ready(cx)).map_err(|e| Error::io(ends.src_side, &e))?;
            let step = match self.splice.then(splice::Pipe::take).flatten() {
                Some(pipe) => splice_and_forward(ends, pipe),
                None => read_and_forward(ends),
            };
            match step {
                Step::Eof => {
                    socket::shutdown_write(ends.dst);
                    self.done = true;
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; the next poll_read_ready registers for the next edge.
                Step::NotReady => {}
                Step::Written(n) => counters.record(ends.counter, n),
                Step::Pending(n, rest) => {
                    counters.record(ends.counter, n);
                    self.pending = Some(rest);
                }
                Step::ReadFailed(e) => return Poll::Ready(Err(Error::io(ends.src_side, &e))),
                Step::WriteFailed(e) => return Poll::Ready(Err(Error::io(ends.dst_side, &e))),
            }
        }
    }
}

/// One read from the source into the thread's scratch buffer, written straight on to the
/// receiver (what it does not take yet is returned as `Step::Pending`).
#[inline]
fn read_and_forward(ends: &Ends<'_>) -> Step<Box<Rest>> {
    SCRATCH.with_borrow_mut(|buf| {
        // A read shorter than the buffer drained the socket: say so (WouldBlock inside
        // try_io) so tokio clears the readiness now, instead of one more recv() that
        // would only return EAGAIN. A newer edge is never lost: tokio keeps readiness
        // that arrived after this read.
        let mut step = Step::NotReady;
        let _ = ends.src.try_io(Interest::READABLE, || {
            step = match (&*SockRef::from(ends.src)).read(buf) {
                Ok(0) => Step::Eof,
                Ok(n) => forward(ends.dst, buf, n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Step::NotReady,
                Err(e) => Step::ReadFailed(e),
            };
            match &step {
                Step::NotReady => Err(ErrorKind::WouldBlock.into()),
                Step::Written(n) | Step::Pending(n, _) if *n < buf.len() => {
                    Err(ErrorKind::WouldBlock.into())
                }
                _ => Ok(()),
            }
        });
        step
    })
}

/// Writes `n` freshly read bytes on; what the receiver does not take is copied aside.
fn forward(dst: &TcpStream, buf: &[u8], n: usize) -> Step<Box<Rest>> {
    let rest = |from: usize| {
        Step::Pending(
            n,
            Box::new(Rest::Copied(Pending {
                bytes: buf[from..n].to_vec(),
                written: 0,
            })),
        )
    };
    match dst.try_write(&buf[..n]) {
        Ok(w) if w == n => Step::Written(n),
        Ok(w) => rest(w),
        Err(e) if e.kind() == ErrorKind::WouldBlock => rest(0),
        Err(e) => Step::WriteFailed(e),
    }
}

/// One splice from the source into `pipe`, then on to the receiver; what it does not take
/// stays in the pipe (`Step::Pending`). Unlike a short read, a short splice does not mean
/// the socket is drained (the pipe's slots may be full): readiness is cleared only by
/// EAGAIN itself.
fn splice_and_forward(ends: &Ends<'_>, pipe: splice::Pipe) -> Step<Box<Rest>> {
    use std::os::fd::AsRawFd;
    let mut filled = Ok(0);
    let _ = ends.src.try_io(Interest::READABLE, || {
        filled = pipe.fill_from(ends.src.as_raw_fd());
        match &filled {
            Err(e) if e.kind() == ErrorKind::WouldBlock => Err(ErrorKind::WouldBlock.into()),
            _ => Ok(()),
        }
    });
    let n = match filled {
        Ok(0) => return give_back(pipe, Step::Eof),
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock => return give_back(pipe, Step::NotReady),
        Err(e) => return give_back(pipe, Step::ReadFailed(e)),
    };
    match drain(ends.dst, &pipe, n) {
        Ok(w) if w == n => give_back(pipe, Step::Written(n)),
        Ok(w) => Step::Pending(n, Box::new(Rest::Piped { pipe, left: n - w })),
        Err(e) => Step::WriteFailed(e),
    }
}

fn give_back(pipe: splice::Pipe, step: Step<Box<Rest>>) -> Step<Box<Rest>> {
    pipe.give_back();
    step
}

/// From the pipe on to `dst`, as much of `len` as it takes now (0 when it takes nothing:
/// its write readiness is then cleared, so the next poll waits for room).
fn drain(dst: &TcpStream, pipe: &splice::Pipe, len: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    match dst.try_io(Interest::WRITABLE, || pipe.drain_to(dst.as_raw_fd(), len)) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
        other => other,
    }
}

/// Writes the rest the receiver did not take; the only time a direction owns a buffer (or
/// a pipe).
fn flush(cx: &mut Context<'_>, ends: &Ends<'_>, pending: &mut Rest) -> Poll<Result<(), Error>> {
    loop {
        let left = match pending {
            Rest::Copied(p) => p.bytes.len() - p.written,
            Rest::Piped { left, .. } => *left,
        };
        if left == 0 {
            return Poll::Ready(Ok(()));
        }
        ready!(ends.dst.poll_write_ready(cx)).map_err(|e| Error::io(ends.dst_side, &e))?;
        let wrote = match pending {
            Rest::Copied(p) => match ends.dst.try_write(&p.bytes[p.written..]) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                other => other,
            },
            Rest::Piped { pipe, left } => drain(ends.dst, pipe, *left),
        };
        let n = wrote.map_err(|e| Error::io(ends.dst_side, &e))?;
        match pending {
            Rest::Copied(p) => p.written += n,
            Rest::Piped { left, .. } => *left -= n,
        }
    }
}
