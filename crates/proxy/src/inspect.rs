//! Looking at a client's first bytes before routing, without taking them: the TLS
//! inspector peeks (MSG_PEEK) until the ClientHello is complete, so the bytes stay in the
//! socket and the relay later forwards them untouched. Bounded by a deadline and a size.

use crate::attributes::Tls;
use crate::error::{Error, Kind, Side};
use protocols::tls;
use std::io;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Duration, Instant, timeout_at};

/// Largest peek: a ClientHello at its size limit plus the headers of the records carrying it.
const MAX_PEEK: usize = tls::MAX_CLIENT_HELLO + 5 * (tls::MAX_CLIENT_HELLO / 16384 + 2);

/// Waits for the ClientHello (or proof that this is not TLS) until `timeout`.
pub(crate) async fn tls(stream: &TcpStream, timeout: Duration) -> Result<Tls, Error> {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 2048];
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
            match tls::client_hello(&buf[..n]) {
                Ok(hello) => outcome = Some(Ok(Tls::Hello(Box::new(hello)))),
                Err(tls::Error::NotTls) => outcome = Some(Ok(Tls::NotTls)),
                Err(tls::Error::Invalid(why)) => {
                    outcome = Some(Err(Error::new(Side::Downstream, Kind::Malformed(why))))
                }
                Err(tls::Error::Incomplete { needed }) if n == buf.len() => {
                    // The buffer was the limit, not the socket: look again with more room.
                    if n + needed > MAX_PEEK {
                        outcome = Some(Err(Error::new(
                            Side::Downstream,
                            Kind::Malformed("ClientHello too large"),
                        )));
                    } else {
                        buf.resize((n + needed).max(2 * n).min(MAX_PEEK), 0);
                    }
                }
                // All there is so far: wait (WouldBlock clears the readiness) for more.
                Err(tls::Error::Incomplete { .. }) => return Err(io::ErrorKind::WouldBlock.into()),
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
