//! Test backends on 127.0.0.1: echo servers that say who they are, or any handler.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

type Handler =
    Arc<dyn Fn(TcpStream) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A TCP server on 127.0.0.1 that can be stopped (listener closed, connections dropped)
/// and started again on the same port, to play a failing and recovering upstream.
pub struct Backend {
    pub address: SocketAddr,
    handler: Handler,
    accepted: Arc<AtomicU64>,
    active: Arc<AtomicU64>,
    running: Option<watch::Sender<bool>>,
    tasks: TaskTracker,
}

impl Backend {
    /// An echo server on 127.0.0.1 that first writes `name` and a newline.
    pub async fn echo(name: &str) -> Backend {
        Backend::echo_at("127.0.0.1:0".parse().unwrap(), name).await
    }

    /// An echo server on `address` that first writes `name` and a newline.
    pub async fn echo_at(address: SocketAddr, name: &str) -> Backend {
        let greeting = format!("{name}\n");
        Backend::start_at(address, move |mut stream| {
            let greeting = greeting.clone();
            async move {
                if stream.write_all(greeting.as_bytes()).await.is_ok() {
                    echo(stream).await;
                }
            }
        })
        .await
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
        Backend::proxy_reporter_at("127.0.0.1:0".parse().unwrap(), "").await
    }

    /// A [`Backend::proxy_reporter`] on `address`; a non-empty `name` starts its line
    /// (`NAME: SOURCE DESTINATION TLVS`).
    pub async fn proxy_reporter_at(address: SocketAddr, name: &str) -> Backend {
        let prefix = if name.is_empty() {
            String::new()
        } else {
            format!("{name}: ")
        };
        Backend::start_at(address, move |mut stream| {
            let prefix = prefix.clone();
            async move {
                let mut buf = Vec::new();
                let header = loop {
                    match protocols::proxy::parse(&buf) {
                        Ok(header) => break header,
                        Err(protocols::proxy::Error::Incomplete) => {
                            let mut byte = [0u8; 1];
                            match stream.read(&mut byte).await {
                                Ok(1) => buf.push(byte[0]),
                                _ => return,
                            }
                        }
                        Err(_) => return,
                    }
                };
                let (source, destination) = match header.addresses {
                    Some((s, d)) => (s.to_string(), d.to_string()),
                    None => ("-".into(), "-".into()),
                };
                let tlvs: Vec<String> = header
                    .tlvs
                    .iter()
                    .map(|(k, v)| format!("0x{k:02x}={}", String::from_utf8_lossy(v)))
                    .collect();
                let tlvs = if tlvs.is_empty() {
                    "-".to_string()
                } else {
                    tlvs.join(",")
                };
                let line = format!("{prefix}{source} {destination} {tlvs}\n");
                if stream.write_all(line.as_bytes()).await.is_ok() {
                    echo(stream).await;
                }
            }
        })
        .await
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
        Backend::start_at("127.0.0.1:0".parse().unwrap(), handler).await
    }

    /// A server on `address` running `handler` for each connection. Panics if it cannot bind.
    pub async fn start_at<F, Fut>(address: SocketAddr, handler: F) -> Backend
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |s| Box::pin(handler(s)));
        let mut backend = Backend {
            address,
            handler,
            accepted: Arc::default(),
            active: Arc::default(),
            running: None,
            tasks: TaskTracker::new(),
        };
        backend.resume().await;
        backend
    }

    /// Connections accepted so far (health checks included).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Relaxed)
    }

    /// Connections open now.
    pub fn active(&self) -> u64 {
        self.active.load(Relaxed)
    }

    /// Closes the listening socket and every connection; when this returns the port refuses.
    pub async fn stop(&mut self) {
        self.signal_stop();
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    fn signal_stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.send(false);
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&mut self) {
        assert!(self.running.is_none(), "backend already running");
        let listener = TcpListener::bind(self.address)
            .await
            .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", self.address));
        self.address = listener.local_addr().unwrap();
        let (running, stopped) = watch::channel(true);
        self.running = Some(running);
        let (handler, accepted, active, tasks) = (
            self.handler.clone(),
            self.accepted.clone(),
            self.active.clone(),
            self.tasks.clone(),
        );
        self.tasks.spawn(async move {
            loop {
                let mut stop = stopped.clone();
                let stream = tokio::select! {
                    _ = stop.changed() => return,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                accepted.fetch_add(1, Relaxed);
                active.fetch_add(1, Relaxed);
                let (handler, active) = (handler.clone(), active.clone());
                tasks.spawn(async move {
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = handler(stream) => {}
                    }
                    active.fetch_sub(1, Relaxed);
                });
            }
        });
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

/// Echoes everything until the peer's FIN, then sends a FIN back (TLS: close_notify).
pub async fn echo(mut stream: impl AsyncRead + AsyncWrite + Unpin) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}
