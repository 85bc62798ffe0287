//! The terminator's HTTP/2 side: one connection, many tunnels, each a stream — bounded in
//! number and header size, watched by PINGs, closed once it has carried nothing for a while.

use super::{Terminator, reply};
use crate::relay::h2_stream::{self, H2Stream};
use crate::relay::{Leg, TunnelIo};
use bytes::Bytes;
use http::{Method, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a connection that is closing gets to say so (GOAWAY) before it is dropped.
const GOODBYE: Duration = Duration::from_secs(1);

/// Why the watchdog ended a connection.
enum Ended {
    Idle,
    NoPingAnswer,
}

/// A tunnel in flight (being opened or relayed) on a connection, counted while it lives.
struct InFlight(watch::Sender<usize>);

impl InFlight {
    fn new(count: &watch::Sender<usize>) -> InFlight {
        count.send_modify(|n| *n += 1);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

impl Terminator {
    pub(super) async fn serve_http2(self: &Arc<Self>, downstream: Leg) {
        let settings = self.settings();
        let window = config::DEFAULT_TUNNEL_WINDOW;
        // Windows as large as the edge's; streams and header lists bounded by the route.
        let handshake = h2::server::Builder::new()
            .initial_window_size(window)
            .initial_connection_window_size(window.saturating_mul(4))
            .max_concurrent_streams(settings.max_concurrent_streams)
            .max_header_list_size(u32::try_from(settings.max_header_size).unwrap_or(u32::MAX))
            .max_send_buffer_size(h2_stream::MAX_SEND_BUFFER)
            .max_frame_size(h2_stream::MAX_FRAME)
            .max_concurrent_reset_streams(1024)
            .handshake::<_, Bytes>(downstream);
        let mut connection = match tokio::time::timeout(super::HEADER_TIMEOUT, handshake).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return tracing::debug!(error = %e, "HTTP/2 handshake failed"),
            Err(_) => return tracing::debug!("HTTP/2 handshake timed out"),
        };
        let in_flight = watch::Sender::new(0usize);
        let watchdog = watchdog(
            connection.ping_pong(),
            in_flight.subscribe(),
            settings.keepalive,
            settings.connection_idle_timeout,
        );
        let id = self.outer.attributes.id;
        let ended = tokio::select! {
            () = self.accept_streams(&mut connection, &in_flight) => return,
            () = self.context.stop_accepting.cancelled() => None,
            ended = watchdog => Some(ended),
        };
        match ended {
            None => {
                // Draining: the listener stopped accepting, so this connection takes no new
                // tunnel either (GOAWAY: the edge opens its next ones elsewhere); the open
                // ones go on until they end or the drain closes them.
                tracing::debug!(id, "draining: GOAWAY on the tunnel connection");
                connection.graceful_shutdown();
                return self.accept_streams(&mut connection, &in_flight).await;
            }
            Some(Ended::Idle) => tracing::debug!(id, "tunnel connection idle: closed"),
            Some(Ended::NoPingAnswer) => {
                tracing::info!(id, "tunnel connection dropped: no answer to PING")
            }
        }
        // Say goodbye (GOAWAY) and let the peer see it, briefly.
        connection.graceful_shutdown();
        let _ = tokio::time::timeout(GOODBYE, async {
            while let Some(Ok(_)) = connection.accept().await {}
        })
        .await;
    }

    async fn accept_streams(
        self: &Arc<Self>,
        connection: &mut h2::server::Connection<Leg, Bytes>,
        in_flight: &watch::Sender<usize>,
    ) {
        while let Some(accepted) = connection.accept().await {
            match accepted {
                Ok((request, respond)) => {
                    let terminator = self.clone();
                    let counted = InFlight::new(in_flight);
                    self.context.connections.spawn(async move {
                        terminator.http2_request(request, respond).await;
                        drop(counted);
                    });
                }
                Err(e) => {
                    tracing::debug!(id = self.outer.attributes.id, error = %e, "tunnel connection ended");
                    break;
                }
            }
        }
    }

    async fn http2_request(
        self: Arc<Self>,
        request: http::Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
    ) {
        let accept_post = self.settings().accept_post;
        let (parts, body) = request.into_parts();
        let opening = async {
            match parts.method {
                Method::CONNECT => self.open(&parts).await,
                Method::POST if accept_post => self.open(&parts).await,
                _ => Err(StatusCode::METHOD_NOT_ALLOWED),
            }
        };
        // A client that resets its stream while the tunnel is being opened (authorized,
        // dialed) no longer wants it: stop there, dial nothing more.
        let opened = tokio::select! {
            opened = opening => opened,
            reset = std::future::poll_fn(|cx| respond.poll_reset(cx)) => {
                let reason = reset.map_or_else(|e| e.to_string(), |r| format!("{r:?}"));
                return tracing::debug!(id = self.outer.attributes.id, reason, "tunnel reset before it opened");
            }
        };
        // The request's head is not needed any more: not held for the tunnel's life.
        drop(parts);
        let opened = match opened {
            Ok(opened) => opened,
            Err(status) => {
                let _ = respond.send_response(reply(status).map(|_| ()), true);
                return;
            }
        };
        let send = match respond.send_response(reply(StatusCode::OK).map(|_| ()), false) {
            Ok(send) => send,
            Err(e) => return tracing::debug!(error = %e, "the tunnel was not opened"),
        };
        let downstream = Leg::tunnel(TunnelIo::Http2(H2Stream::new(send, body)));
        self.relay(opened, downstream).await;
    }
}

/// Ends when the connection should close: it has carried no tunnel for `idle`, or a PING
/// (one every `keepalive`) went unanswered for `keepalive`.
async fn watchdog(
    pings: Option<h2::PingPong>,
    mut in_flight: watch::Receiver<usize>,
    keepalive: Duration,
    idle: Duration,
) -> Ended {
    let idle = async {
        loop {
            let _ = in_flight.wait_for(|n| *n == 0).await;
            let busy = in_flight.wait_for(|n| *n > 0);
            if tokio::time::timeout(idle, busy).await.is_err() {
                return Ended::Idle;
            }
        }
    };
    let alive = async {
        let Some(mut pings) = pings else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(keepalive).await;
            let answer = tokio::time::timeout(keepalive, pings.ping(h2::Ping::opaque())).await;
            if !matches!(answer, Ok(Ok(_))) {
                return Ended::NoPingAnswer;
            }
        }
    };
    tokio::select! {
        ended = idle => ended,
        ended = alive => ended,
    }
}
