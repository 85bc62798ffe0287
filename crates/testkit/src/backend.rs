//! Test backends on 127.0.0.1: the demo's stoppable servers ([`demo::Backend`]) with the
//! constructors only tests use (TLS echo, silent echo, free-port shorthands). A wrapper,
//! because inherent constructors cannot be added to another crate's type and the TLS echo
//! needs [`crate::tls_peer`], which the product binary must not link.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use demo::echo;

/// A [`demo::Backend`]: its address, counters, `stop` and `resume` are reached through it.
pub struct Backend(demo::Backend);

impl Deref for Backend {
    type Target = demo::Backend;

    fn deref(&self) -> &demo::Backend {
        &self.0
    }
}

impl DerefMut for Backend {
    fn deref_mut(&mut self) -> &mut demo::Backend {
        &mut self.0
    }
}

impl From<demo::Backend> for Backend {
    fn from(backend: demo::Backend) -> Backend {
        Backend(backend)
    }
}

impl Backend {
    /// An echo server on 127.0.0.1 that first writes `name` and a newline.
    pub async fn echo(name: &str) -> Backend {
        Backend::echo_at(any_port(), name).await
    }

    /// An echo server on `address` that first writes `name` and a newline.
    pub async fn echo_at(address: SocketAddr, name: &str) -> Backend {
        demo::Backend::echo_at(address, name).await.into()
    }

    /// A TLS echo server on 127.0.0.1: after the handshake it writes `name`, a space, the
    /// client certificate's SPIFFE ID (`-` without one) and a newline, then echoes.
    pub async fn tls_echo(name: &str, config: Arc<rustls::ServerConfig>) -> Backend {
        let name = name.to_string();
        Backend::start(move |stream| {
            let (name, config) = (name.clone(), config.clone());
            async move {
                let Some(mut tls) = crate::tls_peer::accept(stream, config).await else {
                    return;
                };
                let peer = crate::tls_peer::peer_spiffe_id(&tls).unwrap_or_else(|| "-".into());
                let greeting = format!("{name} {peer}\n");
                if tls.write_all(greeting.as_bytes()).await.is_ok() && tls.flush().await.is_ok() {
                    echo(tls).await;
                }
            }
        })
        .await
    }

    /// A server behind a PROXY-protocol sender: it reads the header, writes a line
    /// `SOURCE DESTINATION TLVS` (TLVS: `type=value` pairs joined by `,`, or `-`), then echoes.
    /// A connection without a valid header is closed.
    pub async fn proxy_reporter() -> Backend {
        Backend::proxy_reporter_at(any_port(), "").await
    }

    /// A [`Backend::proxy_reporter`] on `address`; a non-empty `name` starts its line
    /// (`NAME: SOURCE DESTINATION TLVS`).
    pub async fn proxy_reporter_at(address: SocketAddr, name: &str) -> Backend {
        demo::Backend::proxy_reporter_at(address, name).await.into()
    }

    /// An echo server that writes nothing of its own.
    pub async fn silent_echo() -> Backend {
        Backend::start(echo).await
    }

    /// A server on 127.0.0.1 running `handler` for each connection.
    pub async fn start<F, Fut>(handler: F) -> Backend
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        demo::Backend::start(handler).await.into()
    }

    /// A server on `address` running `handler` for each connection. Panics if it cannot bind.
    pub async fn start_at<F, Fut>(address: SocketAddr, handler: F) -> Backend
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        demo::Backend::start_at(address, handler).await.into()
    }
}

/// 127.0.0.1 on a port the system picks.
fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
