//! The admin listeners' sockets and what a peer can make them hold: at most
//! [`MAX_CONNECTIONS`] connections each (more are closed at once and counted), request
//! headers within [`HEADER_TIMEOUT`], a connection for at most [`CONNECTION_LIFETIME`]. The
//! probe listener faces the network; a slow or greedy peer there must not take the
//! descriptors the gateway's own connections need.

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tower_service::Service;

pub const MAX_CONNECTIONS: usize = 64;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// Which admin listener: the label of its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Control,
    Probes,
}

impl Which {
    pub fn label(self) -> &'static str {
        match self {
            Which::Control => "control",
            Which::Probes => "probes",
        }
    }

    pub(crate) fn slots(self) -> &'static Slots {
        match self {
            Which::Control => &CONTROL,
            Which::Probes => &PROBES,
        }
    }
}

/// A listener's connection slots and what it refused.
pub struct Slots {
    free: Semaphore,
    pub refused: AtomicU64,
}

impl Slots {
    pub fn open(&self) -> usize {
        MAX_CONNECTIONS - self.free.available_permits()
    }
}

static CONTROL: Slots = Slots {
    free: Semaphore::const_new(MAX_CONNECTIONS),
    refused: AtomicU64::new(0),
};
static PROBES: Slots = Slots {
    free: Semaphore::const_new(MAX_CONNECTIONS),
    refused: AtomicU64::new(0),
};

/// Who sent a request: kept with it for the guard's log lines.
#[derive(Debug, Clone)]
pub enum Peer {
    Tcp(SocketAddr),
    /// The user id of the process on the other end of the unix socket.
    Unix(Option<u32>),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(address) => write!(f, "{address}"),
            Peer::Unix(Some(uid)) => write!(f, "unix socket uid {uid}"),
            Peer::Unix(None) => write!(f, "unix socket"),
        }
    }
}

pub(crate) async fn serve_tcp(
    address: SocketAddr,
    app: Router,
    which: Which,
) -> Result<SocketAddr, String> {
    let what = match which {
        Which::Control => "admin API",
        Which::Probes => "probe listener",
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("{what} cannot listen on {address}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => admit(stream, Peer::Tcp(peer), &app, which),
                Err(e) => pause_after(e).await,
            }
        }
    });
    tracing::info!(address = %bound, "{what} ready");
    Ok(bound)
}

pub(crate) fn serve_unix(path: &Path, app: Router) -> Result<(), String> {
    let listener = crate::unix::bind(path)?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let uid = stream.peer_cred().ok().map(|c| c.uid());
                    admit(stream, Peer::Unix(uid), &app, Which::Control);
                }
                Err(e) => pause_after(e).await,
            }
        }
    });
    tracing::info!(address = %format!("unix:{}", path.display()), "admin API ready");
    Ok(())
}

/// Out of descriptors (EMFILE) and the like: try again shortly rather than spin.
async fn pause_after(error: std::io::Error) {
    tracing::warn!("admin accept failed: {error}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serves the connection if a slot is free; closes it at once and counts it if not.
fn admit<S>(stream: S, peer: Peer, app: &Router, which: Which)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slots = which.slots();
    let Ok(slot) = slots.free.try_acquire() else {
        slots.refused.fetch_add(1, Relaxed);
        return;
    };
    let app = app.clone();
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(peer.clone());
            app.clone().call(request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        drop(slot);
    });
}
