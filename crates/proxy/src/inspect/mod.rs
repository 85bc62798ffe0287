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
/// byte the socket holds, up to `max`, and runs again only once the socket holds as many
/// bytes as it said it needs: a client dripping bytes one by one costs one look per step
/// of `look`'s (a TLS record, say), not one per byte.
pub(crate) async fn peek_until<T>(
    stream: &TcpStream,
    timeout: Duration,
    max: usize,
    mut look: impl FnMut(&[u8]) -> Look<T>,
) -> Result<T, Error> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 2048.min(max)];
    let mut want = 1;
    let eof = || Error::new(Side::Downstream, Kind::Io(io::ErrorKind::UnexpectedEof));
    loop {
        let ready = match timeout_at(deadline, stream.ready(Interest::READABLE)).await {
            Err(_) => return Err(Error::new(Side::Downstream, Kind::InspectionTimeout)),
            Ok(Err(e)) => return Err(Error::io(Side::Downstream, &e)),
            Ok(Ok(ready)) => ready,
        };
        let mut outcome = None;
        let peeked = stream.try_io(Interest::READABLE, || {
            if queued(stream)? < want {
                if ready.is_read_closed() {
                    outcome = Some(Err(eof())); // no more is coming
                    return Ok(());
                }
                // Not enough yet: wait (WouldBlock clears the readiness) for more.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = peek(stream, &mut buf)?;
            if n == 0 {
                outcome = Some(Err(eof()));
                return Ok(());
            }
            match look(&buf[..n]) {
                Look::Done(found) => outcome = Some(Ok(found)),
                Look::Fail(error) => outcome = Some(Err(error)),
                Look::NeedMore(needed) if n + needed > max => {
                    outcome = Some(Err(Error::new(
                        Side::Downstream,
                        Kind::Malformed("first bytes larger than allowed"),
                    )));
                }
                Look::NeedMore(needed) => {
                    want = n + needed;
                    if buf.len() < want {
                        buf.resize(want.max(2 * n).min(max), 0);
                    }
                }
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

/// How many bytes the socket holds (FIONREAD): known without copying them.
fn queued(stream: &TcpStream) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, valid for the call; the
    // descriptor is open for as long as `stream` is borrowed.
    if unsafe { libc::ioctl(stream.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A connected pair: the gateway's side and the client's.
    async fn pair() -> (TcpStream, TcpStream) {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(server.local_addr().unwrap())
            .await
            .unwrap();
        client.set_nodelay(true).unwrap();
        (server.accept().await.unwrap().0, client)
    }

    /// A ClientHello dripped byte by byte is parsed once per record completed, not once per
    /// byte (the parse starts from the first byte each time: quadratic otherwise).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dripped_client_hello_is_parsed_once_per_record() {
        let (ours, mut client) = pair().await;
        let hello = tls::build_client_hello(Some("drip.example"), &[], 400, 100);
        let records = hello.len().div_ceil(105);
        let sent = hello.clone();
        let writer = tokio::spawn(async move {
            for byte in sent {
                client.write_all(&[byte]).await.unwrap();
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            client
        });
        let mut looks = 0;
        let found = peek_until(&ours, Duration::from_secs(10), MAX_PEEK, |bytes| {
            looks += 1;
            match tls::client_hello(bytes) {
                Ok(hello) => Look::Done(hello.sni),
                Err(tls::Error::Incomplete { needed }) => Look::NeedMore(needed),
                Err(e) => panic!("{e}"),
            }
        })
        .await
        .unwrap();
        assert_eq!(found.as_deref(), Some("drip.example"));
        // Each record: once for its header, once for its body (and a first look).
        assert!(
            looks <= 2 * records + 1,
            "{looks} looks for {records} records"
        );
        let _client = writer.await.unwrap();
    }

    /// A client that half-closes before its ClientHello is complete ends the wait at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_closing_mid_hello_ends_the_wait() {
        let (ours, mut client) = pair().await;
        let hello = tls::build_client_hello(Some("a.example"), &[], 0, 16384);
        client.write_all(&hello[..hello.len() / 2]).await.unwrap();
        client.shutdown().await.unwrap();
        let started = Instant::now();
        let looked = tokio::time::timeout(Duration::from_secs(2), tls_hello(&ours)).await;
        let looked = looked.expect("ended without waiting for the inspection timeout");
        let eof = Error::new(Side::Downstream, Kind::Io(io::ErrorKind::UnexpectedEof));
        assert_eq!(looked.err(), Some(eof));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    async fn tls_hello(stream: &TcpStream) -> Result<Tls, Error> {
        tls(stream, Duration::from_secs(5)).await
    }
}
