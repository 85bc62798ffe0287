//! Socket options shared by both legs of a connection.

use config::SocketOptions;
use socket2::{SockRef, TcpKeepalive};
use std::io;
use std::net::Shutdown;
use tokio::net::TcpStream;

/// Sets TCP_NODELAY and keepalive. On a listening socket, Linux passes both on to every
/// accepted connection, which saves the syscalls per accept.
pub fn apply<'s>(socket: impl Into<SockRef<'s>>, options: &SocketOptions) -> io::Result<()> {
    let sock = socket.into();
    sock.set_tcp_nodelay(options.nodelay)?;
    match &options.keepalive {
        Some(k) => sock.set_tcp_keepalive(
            &TcpKeepalive::new()
                .with_time(k.time)
                .with_interval(k.interval)
                .with_retries(k.retries),
        ),
        None => sock.set_keepalive(false),
    }
}

/// Passes a FIN on: we will write no more. A peer that is already gone is not an error here;
/// the other direction will notice.
pub fn shutdown_write(stream: &TcpStream) {
    let _ = SockRef::from(stream).shutdown(Shutdown::Write);
}

/// Makes the coming close send a RST instead of a FIN, to pass on an abort.
pub fn reset_on_close(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO));
}
