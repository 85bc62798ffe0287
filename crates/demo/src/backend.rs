//! Backends on loopback: TCP servers that run a handler for each connection and can be
//! stopped and started again on the same port (an upstream that fails and recovers), with
//! the greeting echo servers `causeway demo` and `causeway echo` run.

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

/// A TCP server that can be stopped (listener closed, connections dropped) and started
/// again on the same port, to play a failing and recovering upstream.
pub struct Backend {
    pub address: SocketAddr,
    handler: Handler,
    accepted: Arc<AtomicU64>,
    active: Arc<AtomicU64>,
    running: Option<watch::Sender<bool>>,
    tasks: TaskTracker,
}

impl Backend {
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

    /// A server on `address` behind a PROXY-protocol sender: it reads the header, writes a
    /// line `SOURCE DESTINATION TLVS` (TLVS: `type=value` pairs joined by `,`, or `-`),
    /// started by `NAME: ` when `name` is not empty, then echoes. A connection without a
    /// valid header is closed.
    pub async fn proxy_reporter_at(address: SocketAddr, name: &str) -> Backend {
        let prefix = if name.is_empty() {
            String::new()
        } else {
            format!("{name}: ")
        };
        Backend::start_at(address, move |mut stream| {
            let prefix = prefix.clone();
            async move {
                let Some(header) = read_proxy_header(&mut stream).await else {
                    return;
                };
                let line = format!("{prefix}{}\n", describe(&header));
                if stream.write_all(line.as_bytes()).await.is_ok() {
                    echo(stream).await;
                }
            }
        })
        .await
    }

    /// A server on 127.0.0.1 (a free port) running `handler` for each connection.
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

/// Reads a PROXY header byte by byte (so nothing after it is consumed); `None` when the
/// connection ends first or the header is invalid.
async fn read_proxy_header(stream: &mut TcpStream) -> Option<protocols::proxy::ProxyHeader> {
    let mut buf = Vec::new();
    loop {
        match protocols::proxy::parse(&buf) {
            Ok(header) => return Some(header),
            Err(protocols::proxy::Error::Incomplete) => {
                let mut byte = [0u8; 1];
                match stream.read(&mut byte).await {
                    Ok(1) => buf.push(byte[0]),
                    _ => return None,
                }
            }
            Err(_) => return None,
        }
    }
}

/// `SOURCE DESTINATION TLVS`, `-` for what the header does not carry.
fn describe(header: &protocols::proxy::ProxyHeader) -> String {
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
    format!("{source} {destination} {tlvs}")
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
