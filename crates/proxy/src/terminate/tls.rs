//! TLS termination: the handshake of a route that terminates TLS, bounded by its timeout;
//! the session's details and the client's verified identity (SPIFFE ID, DNS names) go into
//! the connection's attributes.

use crate::attributes::TlsSession;
use crate::error::{Error, Kind, Side};
use crate::relay::Leg;
use crate::route::Route;
use std::sync::Arc;
use tokio::net::TcpStream;

/// The TLS handshake of a terminating route, bounded by its timeout; the session's
/// details and the client's verified identity for the attributes.
pub(crate) async fn handshake(
    downstream: TcpStream,
    route: &Route,
    server: &Arc<rustls::ServerConfig>,
    handshakes: &tls::HandshakeStats,
) -> Result<(Leg, Box<TlsSession>), Error> {
    // The client certificate itself, only for an authorizer that asks for it.
    let keep_certificate = route
        .authorizer
        .as_ref()
        .is_some_and(|a| a.config.include_peer_certificate);
    let acceptor = tokio_rustls::TlsAcceptor::from(server.clone());
    let timeout = route
        .config
        .terminate
        .as_ref()
        .map_or(std::time::Duration::from_secs(10), |t| t.handshake_timeout);
    let started = std::time::Instant::now();
    let reason = match tokio::time::timeout(timeout, acceptor.accept(downstream)).await {
        Ok(Ok(stream)) => {
            handshakes.succeeded("downstream", started.elapsed());
            let session = stream.get_ref().1;
            let details = Box::new(TlsSession {
                sni: session.server_name().map(str::to_string),
                alpn: session
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
                version: session
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default(),
                cipher: session
                    .negotiated_cipher_suite()
                    .map(|c| format!("{:?}", c.suite()))
                    .unwrap_or_default(),
                peer: session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|cert| tls::PeerIdentity::from_certificate(cert).ok()),
                peer_certificate_pem: session
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .filter(|_| keep_certificate)
                    .map(|cert| tls::peer::to_pem(cert)),
            });
            return Ok((Leg::Tls(Box::new(stream.into())), details));
        }
        Ok(Err(e)) => tls::failure_reason(&e),
        Err(_) => "timeout",
    };
    handshakes.record("downstream", reason);
    Err(Error::new(Side::Downstream, Kind::Tls(reason)))
}

/// TLS series: handshakes (terminated and originated) by result; each identity's
/// certificate expiry, rotations and failed loads.
pub(crate) fn report(
    handshakes: &tls::HandshakeStats,
    identities: &[Arc<tls::Identity>],
    out: &mut telemetry::Out<'_>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    for ((side, result), count) in handshakes.snapshot() {
        let labels = vec![("side", side.into()), ("result", result.into())];
        out.counter("causeway_tls_handshakes_total", labels, count);
    }
    for (side, latency) in [
        ("downstream", &handshakes.downstream_latency),
        ("upstream", &handshakes.upstream_latency),
    ] {
        let labels = vec![("side", side.into())];
        out.histogram("causeway_tls_handshake_duration_seconds", labels, latency);
    }
    for identity in identities {
        let l = || vec![("identity", identity.name.to_string())];
        if let Some(left) = identity.current().and_then(|m| m.seconds_left()) {
            out.gauge("causeway_tls_certificate_expiry_seconds", l(), left);
            // The same as a time, so an alert reads `… - time() < 14 * 86400`.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            let at = now.map_or(0.0, |n| n.as_secs_f64()) + left;
            out.gauge(
                "causeway_tls_certificate_expiry_timestamp_seconds",
                l(),
                at.round(),
            );
        }
        let s = &identity.stats;
        out.counter(
            "causeway_tls_identity_rotations_total",
            l(),
            s.rotations.load(Relaxed),
        );
        out.counter(
            "causeway_tls_identity_load_failures_total",
            l(),
            s.failures.load(Relaxed),
        );
    }
}
