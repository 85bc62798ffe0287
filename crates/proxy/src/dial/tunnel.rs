//! The edge end: opening a tunnel through a cluster's CONNECT proxies.
//!
//! HTTP/1.1: one connection per tunnel, CONNECT on hyper, the connection itself taken back
//! once answered. HTTP/2: tunnels are streams over a pool of connections, on the h2 crate
//! ([`crate::relay::h2_stream`]), CONNECT or — for intermediaries that refuse CONNECT — POST.

use crate::dial::cluster::{Cluster, Lease};
use crate::error::{Error, Kind, Side};
use crate::relay::h2_stream::{self, H2Stream};
use crate::relay::leg::Tunnel;
use crate::relay::{Leg, TunnelIo};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Counts for metrics.
#[derive(Debug)]
pub struct TunnelStats {
    /// From dialing (or picking a pooled connection) to the proxy's 2xx.
    pub open_latency: telemetry::histogram::Histogram,
    /// Tunnels the proxies opened.
    pub opened: AtomicU64,
    /// Tunnels that could not be opened (refused, unreachable, HTTP errors).
    pub failed: AtomicU64,
    /// Tunnels open now.
    pub active: AtomicU64,
    /// HTTP/2 connections opened to the proxies.
    pub connections: AtomicU64,
}

impl Default for TunnelStats {
    fn default() -> Self {
        TunnelStats {
            open_latency: telemetry::histogram::Histogram::new(telemetry::histogram::LATENCY),
            opened: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            active: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        }
    }
}

/// Counts a tunnel as active for as long as its leg lives.
struct Active(Arc<Pool>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.stats.active.fetch_sub(1, Relaxed);
    }
}

/// HTTP/2 connections to a cluster's proxies, shared by its tunnels.
#[derive(Debug, Default)]
pub struct Pool {
    pub stats: TunnelStats,
    /// Locked only to pick a connection or reserve room for a new one, never while one is
    /// dialed: a proxy that hangs holds up only the tunnels waiting for that connection.
    state: std::sync::Mutex<PoolState>,
    /// Told when a connection being opened is ready, or has failed.
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct PoolState {
    connections: Vec<Arc<Pooled>>,
    /// Connections being dialed now; they count against `max_connections`.
    opening: usize,
}

/// What a tunnel does with the pool.
enum Choice {
    Use(Arc<Pooled>),
    Open(Opening),
    /// Every connection the pool may have is being opened: wait for one.
    Wait,
}

/// Room reserved for a connection being opened, given back (and waiters told) however the
/// opening ends — done, failed, or abandoned at the tunnel's timeout.
struct Opening(Arc<Pool>);

impl Drop for Opening {
    fn drop(&mut self) {
        self.0.state.lock().expect("pool lock").opening -= 1;
        self.0.changed.notify_waiters();
    }
}

#[derive(Debug)]
struct Pooled {
    sender: h2::client::SendRequest<Bytes>,
    endpoint: Arc<crate::dial::cluster::Endpoint>,
    /// Tunnels open on this connection now.
    streams: AtomicUsize,
    /// Set when the connection has ended (closed, failed, or no PING answer).
    closed: Arc<AtomicBool>,
}

/// One stream of a pooled connection, given back when the tunnel ends.
struct StreamSlot(Arc<Pooled>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Relaxed);
    }
}

/// The request (head) that opens a tunnel to `authority`.
fn request(
    settings: &config::Tunnel,
    authority: &str,
    headers: &[(String, String)],
) -> Result<http::Request<()>, Error> {
    let bad = |_| Error::internal(Kind::BadDynamicTarget);
    let mut builder = if settings.use_post {
        http::Request::post(format!("http://{authority}{}", settings.path))
    } else {
        http::Request::connect(authority)
    };
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder.body(()).map_err(bad)
}

/// A non-2xx answer ends the attempt, with the status in the close reason.
fn refused(status: http::StatusCode) -> Result<(), Error> {
    match status.is_success() {
        true => Ok(()),
        false => Err(Error::new(
            Side::Upstream,
            Kind::TunnelRefused(status.as_u16()),
        )),
    }
}

fn failed(e: impl std::fmt::Display) -> Error {
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
        let open = async {
            let request = request(settings, authority, headers)?;
            match settings.protocol {
                config::TunnelProtocol::Http1 => {
                    let request = request.map(|()| Empty::<Bytes>::new());
                    self.http1(request, downstream_sni, handshakes).await
                }
                config::TunnelProtocol::Http2 => {
                    self.http2(settings, request, downstream_sni, handshakes)
                        .await
                }
            }
        };
        // From dialing the proxy to its answer: a proxy that accepts and never answers
        // does not hold the client for good.
        let started = std::time::Instant::now();
        let opened = tokio::time::timeout(settings.answer_timeout, open)
            .await
            .unwrap_or_else(|_| Err(Error::new(Side::Upstream, Kind::TunnelTimeout)));
        match opened {
            Ok((io, slot, lease)) => {
                stats.opened.fetch_add(1, Relaxed);
                stats.open_latency.observe(started.elapsed());
                stats.active.fetch_add(1, Relaxed);
                let active = Active(self.tunnels.clone());
                let keep = Some(Box::new((slot, active)) as _);
                Ok((Leg::Tunnel(Box::new(Tunnel { io, keep })), lease))
            }
            Err(e) => {
                stats.failed.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }

    async fn http1(
        &self,
        request: http::Request<Empty<Bytes>>,
        downstream_sni: Option<&str>,
        handshakes: &tls::HandshakeStats,
    ) -> Result<(TunnelIo, Option<StreamSlot>, Lease), Error> {
        let (stream, lease) = self.connect().await?;
        let leg = self
            .originate(stream, None, downstream_sni, handshakes)
            .await?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(leg)).await.map_err(failed)?;
        tokio::spawn(connection.with_upgrades());
        let response = sender.send_request(request).await.map_err(failed)?;
        refused(response.status())?;
        let upgraded = hyper::upgrade::on(response).await.map_err(failed)?;
        // The connection is ours again: a plain (or TLS) leg whose abort is a real RST.
        let parts = upgraded
            .downcast::<TokioIo<Leg>>()
            .map_err(|_| failed("the CONNECT connection could not be taken back"))?;
        let io = TunnelIo::Http1 {
            connection: parts.io.into_inner(),
            early: parts.read_buf,
        };
        Ok((io, None, lease))
    }

    async fn http2(
        &self,
        settings: &config::Tunnel,
        request: http::Request<()>,
        downstream_sni: Option<&str>,
        handshakes: &tls::HandshakeStats,
    ) -> Result<(TunnelIo, Option<StreamSlot>, Lease), Error> {
        let pooled = self.pooled(settings, downstream_sni, handshakes).await?;
        let lease = Lease::new(pooled.endpoint.clone());
        let slot = StreamSlot(pooled);
        let mut sender = slot.0.sender.clone().ready().await.map_err(failed)?;
        let (response, send) = sender.send_request(request, false).map_err(failed)?;
        let response = response.await.map_err(failed)?;
        refused(response.status())?;
        let io = TunnelIo::Http2(H2Stream::new(send, response.into_body()));
        Ok((io, Some(slot), lease))
    }

    /// A pooled HTTP/2 connection with a free stream: the least busy open one, or a new one
    /// while the pool has room (dialed outside the pool's lock), or — the pool full — the
    /// least busy one anyway (the proxy's stream limit queues the tunnel).
    async fn pooled(
        &self,
        settings: &config::Tunnel,
        downstream_sni: Option<&str>,
        handshakes: &tls::HandshakeStats,
    ) -> Result<Arc<Pooled>, Error> {
        loop {
            // Registered before looking, so a connection ready meanwhile is not missed.
            let changed = self.tunnels.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            match self.choose(settings) {
                Choice::Use(pooled) => return Ok(pooled),
                Choice::Open(opening) => {
                    return self
                        .open_pooled(settings, downstream_sni, handshakes, opening)
                        .await;
                }
                Choice::Wait => changed.await,
            }
        }
    }

    fn choose(&self, settings: &config::Tunnel) -> Choice {
        let max_streams = settings.max_concurrent_streams as usize;
        let mut state = self.tunnels.state.lock().expect("pool lock");
        state.connections.retain(|c| !c.closed.load(Relaxed));
        let room = state.connections.len() + state.opening < settings.max_connections;
        let least = (state.connections.iter())
            .min_by_key(|c| c.streams.load(Relaxed))
            .cloned();
        match least {
            Some(c) if c.streams.load(Relaxed) < max_streams || !room => {
                c.streams.fetch_add(1, Relaxed);
                Choice::Use(c)
            }
            _ if room => {
                state.opening += 1;
                Choice::Open(Opening(self.tunnels.clone()))
            }
            _ => Choice::Wait,
        }
    }

    /// Dials a new pooled connection in the room `opening` reserved; it carries this
    /// tunnel's stream.
    async fn open_pooled(
        &self,
        settings: &config::Tunnel,
        downstream_sni: Option<&str>,
        handshakes: &tls::HandshakeStats,
        opening: Opening,
    ) -> Result<Arc<Pooled>, Error> {
        let (stream, lease) = self.connect().await?;
        let leg = self
            .originate(stream, None, downstream_sni, handshakes)
            .await?;
        // A stream window large enough for one bulk tunnel to run at full speed, a
        // connection window four times that so a few slow readers cannot stall the rest.
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(settings.window)
            .initial_connection_window_size(settings.window.saturating_mul(4))
            .max_send_buffer_size(h2_stream::MAX_SEND_BUFFER)
            .max_frame_size(h2_stream::MAX_FRAME)
            .max_concurrent_reset_streams(1024)
            .handshake::<_, Bytes>(leg)
            .await
            .map_err(failed)?;
        self.tunnels.stats.connections.fetch_add(1, Relaxed);
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(drive(connection, settings.keepalive, closed.clone()));
        let pooled = Arc::new(Pooled {
            sender,
            endpoint: lease.endpoint.clone(),
            streams: AtomicUsize::new(1),
            closed,
        });
        let mut state = self.tunnels.state.lock().expect("pool lock");
        state.connections.push(pooled.clone());
        drop(state);
        drop(opening);
        Ok(pooled)
    }
}

/// Runs a pooled connection until it ends; with `keepalive`, PINGs it that often and drops
/// it when an answer takes longer than that.
async fn drive(
    mut connection: h2::client::Connection<Leg, Bytes>,
    keepalive: Option<std::time::Duration>,
    closed: Arc<AtomicBool>,
) {
    let pings = connection.ping_pong();
    let keepalive = async {
        let (Some(every), Some(mut pings)) = (keepalive, pings) else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(every).await;
            let answer = tokio::time::timeout(every, pings.ping(h2::Ping::opaque())).await;
            if !matches!(answer, Ok(Ok(_))) {
                return;
            }
        }
    };
    tokio::select! {
        ended = &mut connection => if let Err(e) = ended {
            tracing::debug!(error = %e, "tunnel connection ended");
        },
        () = keepalive => tracing::warn!("tunnel connection dropped: no answer to PING"),
    }
    closed.store(true, Relaxed);
}
