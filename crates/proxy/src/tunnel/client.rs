//! The edge end: opening a tunnel through a cluster's CONNECT proxies.

use crate::cluster::{Cluster, Lease};
use crate::error::{Error, Kind, Side};
use crate::stream::Leg;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

type Request = http::Request<Empty<Bytes>>;

/// HTTP/2 connections to a cluster's proxies, shared by its tunnels.
/// Counts for metrics.
#[derive(Debug, Default)]
pub struct TunnelStats {
    /// Tunnels the proxies opened.
    pub opened: AtomicU64,
    /// Tunnels that could not be opened (refused, unreachable, HTTP errors).
    pub failed: AtomicU64,
    /// Tunnels open now.
    pub active: AtomicU64,
    /// HTTP/2 connections opened to the proxies.
    pub connections: AtomicU64,
}

/// Counts a tunnel as active for as long as its leg lives.
struct Active(Arc<Pool>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.stats.active.fetch_sub(1, Relaxed);
    }
}

#[derive(Debug, Default)]
pub struct Pool {
    pub stats: TunnelStats,
    /// An async lock, held while a new connection is dialed: tunnels that arrive meanwhile
    /// wait for it rather than each dialing their own.
    connections: tokio::sync::Mutex<Vec<Arc<Pooled>>>,
}

#[derive(Debug)]
struct Pooled {
    sender: http2::SendRequest<Empty<Bytes>>,
    endpoint: Arc<crate::cluster::Endpoint>,
    /// Tunnels open on this connection now.
    streams: AtomicUsize,
}

/// One stream of a pooled connection, given back when the tunnel ends.
struct StreamSlot(Arc<Pooled>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Relaxed);
    }
}

/// The request that opens a tunnel to `authority`.
fn request(
    settings: &config::Tunnel,
    authority: &str,
    headers: &[(String, String)],
) -> Result<Request, Error> {
    let bad = |_| Error::internal(Kind::BadDynamicTarget);
    let mut builder = if settings.use_post {
        http::Request::post(format!("http://{authority}{}", settings.path))
    } else {
        http::Request::connect(authority)
    };
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder.body(Empty::new()).map_err(bad)
}

/// The tunnel, once the proxy answered 2xx; its status in the error otherwise.
async fn upgrade(response: hyper::Response<hyper::body::Incoming>) -> Result<Leg, Error> {
    let status = response.status();
    if !status.is_success() {
        return Err(Error::new(
            Side::Upstream,
            Kind::TunnelRefused(status.as_u16()),
        ));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| Error::new(Side::Upstream, Kind::Tunnel(e.to_string())))?;
    Ok(Leg::Tunnel(Box::new(TokioIo::new(upgraded)), None))
}

fn failed(e: hyper::Error) -> Error {
    Error::new(Side::Upstream, Kind::Tunnel(e.to_string()))
}

impl Cluster {
    /// A tunnel to `authority` with `headers`, through one of this cluster's proxies.
    pub async fn tunnel(
        &self,
        settings: &config::Tunnel,
        authority: &str,
        headers: &[(String, String)],
        downstream_sni: Option<&str>,
        handshakes: &tls::HandshakeStats,
    ) -> Result<(Leg, Lease), Error> {
        let stats = &self.tunnels.stats;
        match self
            .open_tunnel(settings, authority, headers, downstream_sni, handshakes)
            .await
        {
            Ok((Leg::Tunnel(io, keep), lease)) => {
                stats.opened.fetch_add(1, Relaxed);
                stats.active.fetch_add(1, Relaxed);
                let active = Active(self.tunnels.clone());
                Ok((Leg::Tunnel(io, Some(Box::new((keep, active)))), lease))
            }
            Ok(other) => Ok(other),
            Err(e) => {
                stats.failed.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    async fn open_tunnel(
        &self,
        settings: &config::Tunnel,
        authority: &str,
        headers: &[(String, String)],
        downstream_sni: Option<&str>,
        handshakes: &tls::HandshakeStats,
    ) -> Result<(Leg, Lease), Error> {
        let request = request(settings, authority, headers)?;
        match settings.protocol {
            config::TunnelProtocol::Http1 => {
                let (stream, lease) = self.connect().await?;
                let leg = self
                    .originate(stream, None, downstream_sni, handshakes)
                    .await?;
                let (mut sender, connection) =
                    http1::handshake(TokioIo::new(leg)).await.map_err(failed)?;
                tokio::spawn(connection.with_upgrades());
                let response = sender.send_request(request).await.map_err(failed)?;
                Ok((upgrade(response).await?, lease))
            }
            config::TunnelProtocol::Http2 => {
                let pooled = self.pooled(settings, downstream_sni, handshakes).await?;
                let mut sender = pooled.sender.clone();
                let lease = Lease::new(pooled.endpoint.clone());
                let slot = StreamSlot(pooled);
                let response = sender.send_request(request).await.map_err(failed)?;
                let Leg::Tunnel(io, _) = upgrade(response).await? else {
                    unreachable!("upgrade gives a tunnel")
                };
                Ok((Leg::Tunnel(io, Some(Box::new(slot))), lease))
            }
        }
    }

    /// A pooled HTTP/2 connection with a free stream: the least busy open one, or a new one
    /// while the pool has room.
    async fn pooled(
        &self,
        settings: &config::Tunnel,
        downstream_sni: Option<&str>,
        handshakes: &tls::HandshakeStats,
    ) -> Result<Arc<Pooled>, Error> {
        let max_streams = settings.max_concurrent_streams as usize;
        let mut connections = self.tunnels.connections.lock().await;
        connections.retain(|c| !c.sender.is_closed());
        let least = connections
            .iter()
            .min_by_key(|c| c.streams.load(Relaxed))
            .cloned();
        if let Some(c) = least
            && (c.streams.load(Relaxed) < max_streams
                || connections.len() >= settings.max_connections)
        {
            c.streams.fetch_add(1, Relaxed);
            return Ok(c);
        }
        let (stream, lease) = self.connect().await?;
        let leg = self
            .originate(stream, None, downstream_sni, handshakes)
            .await?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .initial_stream_window_size(settings.window)
            .initial_connection_window_size(settings.window.saturating_mul(4))
            .max_concurrent_reset_streams(1024);
        if let Some(every) = settings.keepalive {
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(every)
                .keep_alive_timeout(every)
                .keep_alive_while_idle(true);
        }
        let (sender, connection) = builder.handshake(TokioIo::new(leg)).await.map_err(failed)?;
        self.tunnels.stats.connections.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "tunnel connection ended");
            }
        });
        let pooled = Arc::new(Pooled {
            sender,
            endpoint: lease.endpoint.clone(),
            streams: AtomicUsize::new(1),
        });
        connections.push(pooled.clone());
        Ok(pooled)
    }
}
