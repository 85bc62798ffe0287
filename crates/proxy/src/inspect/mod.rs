//! Looking at a client's first bytes before routing, without taking them: the inspectors
//! peek (MSG_PEEK) until what they look for is complete, so the bytes stay in the socket and
//! the relay later forwards them untouched. Bounded by a deadline and a size. (The PROXY
//! header, read before, is consumed once complete: it is not the client's.)

pub(crate) mod protocol;

use crate::attributes::Tls;
use crate::error::{Error, Kind, Side};
use protocols::{fix, mq, tls};
use std::io;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Duration, Instant, timeout_at};

/// Largest peek: a ClientHello at its size limit plus the headers of the records carrying it.
const MAX_PEEK: usize = tls::MAX_CLIENT_HELLO + 5 * (tls::MAX_CLIENT_HELLO / 16384 + 2);

/// What an inspector makes of the bytes peeked (or read) so far.
pub(crate) enum Look<T> {
    Done(T),
    /// At least this many more bytes are needed.
    NeedMore(usize),
    Fail(Error),
}

/// Peeks until `look` is done, the client closes, or `timeout` passes. `look` sees every
/// byte the socket holds, up to `max`.
pub(crate) async fn peek_until<T>(
    stream: &TcpStream,
    timeout: Duration,
    max: usize,
    mut look: impl FnMut(&[u8]) -> Look<T>,
) -> Result<T, Error> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 2048.min(max)];
    loop {
        match timeout_at(deadline, stream.readable()).await {
            Err(_) => return Err(Error::new(Side::Downstream, Kind::InspectionTimeout)),
            Ok(Err(e)) => return Err(Error::io(Side::Downstream, &e)),
            Ok(Ok(())) => {}
        }
        let mut outcome = None;
        let peeked = stream.try_io(Interest::READABLE, || {
            let n = peek(stream, &mut buf)?;
            if n == 0 {
                outcome = Some(Err(Error::new(
                    Side::Downstream,
                    Kind::Io(io::ErrorKind::UnexpectedEof),
                )));
                return Ok(());
            }
            match look(&buf[..n]) {
                Look::Done(found) => outcome = Some(Ok(found)),
                Look::Fail(error) => outcome = Some(Err(error)),
                Look::NeedMore(needed) if n == buf.len() => {
                    // The buffer was the limit, not the socket: look again with more room.
                    if n + needed > max {
                        outcome = Some(Err(Error::new(
                            Side::Downstream,
                            Kind::Malformed("first bytes larger than allowed"),
                        )));
                    } else {
                        buf.resize((n + needed).max(2 * n).min(max), 0);
                    }
                }
                // All there is so far: wait (WouldBlock clears the readiness) for more.
                Look::NeedMore(_) => return Err(io::ErrorKind::WouldBlock.into()),
            }
            Ok(())
        });
        match peeked {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => {
                return Err(Error::io(Side::Downstream, &e));
            }
            _ => {}
        }
        if let Some(outcome) = outcome {
            return outcome;
        }
    }
}

/// Waits for the ClientHello (or proof that this is not TLS) until `timeout`.
pub(crate) async fn tls(stream: &TcpStream, timeout: Duration) -> Result<Tls, Error> {
    peek_until(stream, timeout, MAX_PEEK, |bytes| {
        match tls::client_hello(bytes) {
            Ok(hello) => Look::Done(Tls::Hello(Box::new(hello))),
            Err(tls::Error::NotTls) => Look::Done(Tls::NotTls),
            Err(tls::Error::Invalid(why)) => {
                Look::Fail(Error::new(Side::Downstream, Kind::Malformed(why)))
            }
            Err(tls::Error::Incomplete { needed }) => Look::NeedMore(needed),
        }
    })
    .await
}

/// Waits for the FIX Logon, the first message, until `timeout`: framed and checked (a
/// wrong BodyLength or CheckSum, another message type, more than `max` bytes are refused).
pub(crate) async fn fix_logon(
    stream: &TcpStream,
    timeout: Duration,
    max: usize,
) -> Result<fix::Logon, Error> {
    peek_until(stream, timeout, max, |bytes| {
        fix_look(fix::logon(bytes, max))
    })
    .await
}

fn fix_look(found: Result<fix::Logon, fix::Error>) -> Look<fix::Logon> {
    match found {
        Ok(logon) => Look::Done(logon),
        Err(fix::Error::Incomplete { needed }) => Look::NeedMore(needed),
        Err(fix::Error::TooLarge) => Look::Fail(Error::new(
            Side::Downstream,
            Kind::Malformed("FIX Logon larger than allowed"),
        )),
        Err(fix::Error::Invalid(why)) => {
            Look::Fail(Error::new(Side::Downstream, Kind::Malformed(why)))
        }
    }
}

/// The FIX Logon inside a terminated TLS session: read (it cannot be peeked), so the bytes
/// read are returned too, to be sent upstream first.
pub(crate) async fn fix_logon_from<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
    max: usize,
) -> Result<(fix::Logon, Vec<u8>), Error> {
    let look = |bytes: &[u8]| fix_look(fix::logon(bytes, max));
    read_until(stream, Side::Downstream, timeout, max, look).await
}

/// The reading counterpart of [`peek_until`], for streams that cannot be peeked (TLS, or a
/// health check's own connection): reads until `look` is done, the peer closes, or `timeout`
/// passes; at most `max` bytes (and one more, for `look` to say it is too many). Errors name
/// `side`. Returns what `look` found and every byte read.
pub(crate) async fn read_until<S: tokio::io::AsyncRead + Unpin, T>(
    stream: &mut S,
    side: Side,
    timeout: Duration,
    max: usize,
    mut look: impl FnMut(&[u8]) -> Look<T>,
) -> Result<(T, Vec<u8>), Error> {
    use tokio::io::AsyncReadExt;
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::with_capacity(512);
    loop {
        match look(&buf) {
            Look::Done(found) => return Ok((found, buf)),
            Look::Fail(e) => return Err(e),
            Look::NeedMore(_) => {}
        }
        let mut chunk = [0u8; 2048];
        let room = (max + 1).saturating_sub(buf.len()).clamp(1, chunk.len());
        match timeout_at(deadline, stream.read(&mut chunk[..room])).await {
            Err(_) => return Err(Error::new(side, Kind::InspectionTimeout)),
            Ok(Err(e)) => return Err(Error::io(side, &e)),
            Ok(Ok(0)) => return Err(Error::new(side, Kind::Io(io::ErrorKind::UnexpectedEof))),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Waits for the first segment of a plaintext MQ client: INITIAL_DATA with its ID structure.
pub(crate) async fn mq_initial(
    stream: &TcpStream,
    timeout: Duration,
) -> Result<mq::Initial, Error> {
    peek_until(
        stream,
        timeout,
        mq::MAX_SEGMENT,
        |bytes| match mq::initial_data(bytes) {
            Ok(initial) => Look::Done(initial),
            Err(mq::Error::Incomplete { needed }) => Look::NeedMore(needed),
            Err(mq::Error::NotMq) => Look::Fail(Error::new(
                Side::Downstream,
                Kind::Malformed("neither TLS nor an MQ segment"),
            )),
            Err(mq::Error::Invalid(why)) => {
                Look::Fail(Error::new(Side::Downstream, Kind::Malformed(why)))
            }
        },
    )
    .await
}

/// Whether a plaintext HTTP client opens with the HTTP/2 preface (prior knowledge): peeked
/// only as far as it matches, so an HTTP/1.1 request is known by its first bytes.
pub(crate) async fn http2_preface(stream: &TcpStream, timeout: Duration) -> Result<bool, Error> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    peek_until(stream, timeout, PREFACE.len(), |bytes| {
        let n = bytes.len().min(PREFACE.len());
        match bytes[..n] == PREFACE[..n] {
            false => Look::Done(false),
            true if n == PREFACE.len() => Look::Done(true),
            true => Look::NeedMore(PREFACE.len() - n),
        }
    })
    .await
}

/// Reads and drops `n` bytes that were peeked already (so they are in the socket).
pub(crate) async fn consume(stream: &TcpStream, mut n: usize) -> Result<(), Error> {
    let mut sink = vec![0u8; n.min(64 * 1024)];
    while n > 0 {
        stream
            .readable()
            .await
            .map_err(|e| Error::io(Side::Downstream, &e))?;
        let len = n.min(sink.len());
        match stream.try_read(&mut sink[..len]) {
            Ok(0) => {
                return Err(Error::new(
                    Side::Downstream,
                    Kind::Io(io::ErrorKind::UnexpectedEof),
                ));
            }
            Ok(read) => n -= read,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::io(Side::Downstream, &e)),
        }
    }
    Ok(())
}

/// recv(2) with MSG_PEEK: the bytes stay in the socket.
fn peek(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the descriptor is open for as
    // long as `stream` is borrowed.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
