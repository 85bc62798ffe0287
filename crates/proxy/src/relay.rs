//! Bytes both ways between two sockets, exactly.
//!
//! - Half-close: a FIN from one side is passed on as a FIN (shutdown of our write) and the
//!   other direction keeps flowing until it ends too.
//! - No buffer is held while a connection is idle: each direction waits for readability with
//!   no memory, reads into a per-thread scratch buffer and writes straight on. Only when the
//!   receiver cannot take everything does the rest move to an owned buffer, freed once
//!   written. An idle connection costs its sockets and this future, nothing more.
//! - Errors: the first read/write error ends both directions and says which side failed.

use crate::error::{Error, Side};
use crate::socket;
use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::net::TcpStream;
use tokio::time::Instant;

const SCRATCH_SIZE: usize = 64 * 1024;

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

    pub fn last_activity(&self) -> Instant {
        self.start + std::time::Duration::from_millis(self.last_activity_ms.load(Relaxed))
    }

    fn record(&self, counter: &AtomicU64, n: usize) {
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

/// Relays until both directions have ended (Ok) or one failed (Err, naming the side).
pub async fn relay(
    downstream: &TcpStream,
    upstream: &TcpStream,
    counters: &Counters,
) -> Result<(), Error> {
    let to_upstream = one_way(
        downstream,
        upstream,
        Side::Downstream,
        Side::Upstream,
        counters,
        &counters.upstream_bytes,
    );
    let to_downstream = one_way(
        upstream,
        downstream,
        Side::Upstream,
        Side::Downstream,
        counters,
        &counters.downstream_bytes,
    );
    tokio::try_join!(to_upstream, to_downstream).map(|_| ())
}

enum Step {
    Eof,
    NotReady,
    Written(usize),
    /// Read `usize` bytes; these are what the receiver did not take yet.
    Pending(usize, Vec<u8>),
    ReadFailed(io::Error),
    WriteFailed(io::Error),
}

async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    src_side: Side,
    dst_side: Side,
    counters: &Counters,
    counter: &AtomicU64,
) -> Result<(), Error> {
    loop {
        src.readable().await.map_err(|e| Error::io(src_side, &e))?;
        let step = SCRATCH.with_borrow_mut(|buf| match src.try_read(buf) {
            Ok(0) => Step::Eof,
            Ok(n) => match dst.try_write(&buf[..n]) {
                Ok(w) if w == n => Step::Written(n),
                Ok(w) => Step::Pending(n, buf[w..n].to_vec()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => Step::Pending(n, buf[..n].to_vec()),
                Err(e) => Step::WriteFailed(e),
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => Step::NotReady,
            Err(e) => Step::ReadFailed(e),
        });
        match step {
            Step::Eof => {
                socket::shutdown_write(dst);
                return Ok(());
            }
            Step::NotReady => {}
            Step::Written(n) => counters.record(counter, n),
            Step::Pending(n, rest) => {
                counters.record(counter, n);
                write_all(dst, &rest)
                    .await
                    .map_err(|e| Error::io(dst_side, &e))?;
            }
            Step::ReadFailed(e) => return Err(Error::io(src_side, &e)),
            Step::WriteFailed(e) => return Err(Error::io(dst_side, &e)),
        }
    }
}

/// Waits for the receiver to take the rest; the only time a direction owns a buffer.
async fn write_all(dst: &TcpStream, mut rest: &[u8]) -> io::Result<()> {
    while !rest.is_empty() {
        dst.writable().await?;
        match dst.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
