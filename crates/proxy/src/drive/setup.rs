//! Setting a connection up: the stages every connection that arrives as a byte stream
//! passes before its driver takes over — the PROXY header, inspection of its first bytes,
//! the route, TLS termination where the route says so, and a FIX Logon inside TLS (which
//! chooses the route again).

use crate::accept::admission::Slot;
use crate::accept::{Context, Listener};
use crate::attributes::{Attributes, Protocol};
use crate::end::{self, refuse};
use crate::error::{Error, Kind};
use crate::inspect;
use crate::relay::Leg;
use crate::route::Route;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use telemetry::trace::SpanKind;
use tokio::net::TcpStream;

/// A connection that knows its route, its TLS terminated where the route says so.
pub(crate) struct Accepted {
    pub downstream: Leg,
    pub attributes: Box<Attributes>,
    pub route: Arc<Route>,
    /// Bytes read before routing (a FIX Logon inside TLS), for the upstream first.
    pub replay: Option<Box<[u8]>>,
}

/// The PROXY header stage (a trusted balancer's header names the client), then the client
/// counted under the listener's per-source limit. False: refused (logged, counted).
pub(crate) async fn client_named(
    downstream: &TcpStream,
    attributes: &mut Box<Attributes>,
    slot: &mut Slot,
    context: &Context,
) -> bool {
    let log = context.access_log.as_ref();
    let expects_header = slot.listener.config.proxy_protocol.is_some();
    let phase = expects_header.then(|| attributes.span.child("proxy_header", SpanKind::Internal));
    if !crate::proxy_header::read(downstream, attributes, &slot.listener, log).await {
        return false;
    }
    if let Some(mut span) = phase.flatten() {
        span.set("client.address", attributes.source.ip().to_string());
        span.set("client.port", attributes.source.port());
    }
    match slot.admit_source(attributes.source.ip()) {
        Ok(()) => true,
        Err(refusal) => {
            let reason = refusal.reason();
            attributes.span.with(|s| {
                s.fail(
                    reason,
                    "refused: too many connections from this source".into(),
                )
            });
            tracing::warn!(id = attributes.id, listener = %slot.listener.name, source = %attributes.source, reason = refusal.reason(), "connection refused: {}", refusal.reason().replace('_', " "));
            false
        }
    }
}

/// The stages before authorization, in order, from the PROXY header on. `None`: the
/// connection was refused (counted, logged).
pub(crate) async fn accept(
    downstream: TcpStream,
    mut attributes: Box<Attributes>,
    slot: &mut Slot,
    context: &Context,
) -> Option<Accepted> {
    // Boxed: short-lived, its state would size the connection's task for its whole life.
    if !Box::pin(client_named(&downstream, &mut attributes, slot, context)).await {
        return None;
    }
    let listener = &*slot.listener;
    let log = context.access_log.as_ref();
    let inspects = listener.config.inspect.is_some_and(|i| i.tls)
        || listener.config.protocol != config::ListenerProtocol::Tcp;
    let mut phase = inspects
        .then(|| attributes.span.child("inspect", SpanKind::Internal))
        .flatten();
    let inspected = Box::pin(inspect_first_bytes(&downstream, &mut attributes, listener)).await;
    if let Err(error) = inspected {
        end::trace::failed(phase.as_mut(), &error);
        drop(phase);
        listener.stats.inspection_failed.fetch_add(1, Relaxed);
        end::refused(*attributes, None, error, log);
        return None;
    }
    let logon_inside_tls =
        listener.config.protocol == config::ListenerProtocol::Fix && attributes.protocol.is_none();
    drop(phase);
    let found = match logon_inside_tls {
        false => listener.routes.find(&attributes),
        true => listener.routes.find_before_logon(&attributes),
    };
    let Some(mut route) = found.cloned() else {
        listener.stats.no_route.fetch_add(1, Relaxed);
        refuse::refuse(downstream, &attributes, "no route for this session").await;
        end::refused(*attributes, None, Error::internal(Kind::NoRoute), log);
        return None;
    };
    let mut downstream = match &route.terminate {
        None => Leg::Plain(downstream),
        Some(server) => {
            let mut phase = attributes.span.child("tls handshake", SpanKind::Internal);
            let handshake =
                crate::terminate::tls::handshake(downstream, &route, server, &context.handshakes);
            match Box::pin(handshake).await {
                Ok((leg, session)) => {
                    if let Some(span) = &mut phase {
                        crate::end::trace::tls_session(span, &session);
                    }
                    attributes.session = Some(session);
                    leg
                }
                Err(error) => {
                    end::trace::failed(phase.as_mut(), &error);
                    drop(phase);
                    listener.stats.tls_handshake_failed.fetch_add(1, Relaxed);
                    end::refused(*attributes, Some(&route), error, log);
                    return None;
                }
            }
        }
    };
    // A FIX Logon inside TLS, read now; the route is chosen again with it. What was read
    // goes upstream first. (Boxed: most connections never get here.)
    let mut replay = None;
    if logon_inside_tls {
        let read = logon_inside(&mut downstream, &mut attributes, listener, &mut route);
        match Box::pin(read).await {
            Ok(bytes) => replay = Some(bytes),
            Err(error) => {
                end::refused(*attributes, Some(&route), error, log);
                return None;
            }
        }
    }
    Some(Accepted {
        downstream,
        attributes,
        route,
        replay,
    })
}

/// What the client's first bytes say, without taking them: the TLS ClientHello where the
/// listener inspects it, then the listener's protocol (MQ channel, FIX Logon).
async fn inspect_first_bytes(
    downstream: &TcpStream,
    attributes: &mut Attributes,
    listener: &Listener,
) -> Result<(), Error> {
    if let Some(inspect) = listener.config.inspect.filter(|i| i.tls) {
        attributes.tls = inspect::tls(downstream, inspect.timeout).await?;
    }
    if listener.config.protocol != config::ListenerProtocol::Tcp {
        inspect::protocol::read(downstream, &listener.config, attributes).await?;
    }
    Ok(())
}

/// The FIX Logon inside a terminated TLS session: read (counted when it fails), then the
/// route chosen again with it among routes with the same TLS settings (a Logout when there
/// is none). The bytes read, for the venue.
async fn logon_inside(
    downstream: &mut Leg,
    attributes: &mut Attributes,
    listener: &Listener,
    route: &mut Arc<Route>,
) -> Result<Box<[u8]>, Error> {
    let settings = &listener.config;
    let timeout = settings
        .inspect
        .map_or(config::DEFAULT_INSPECTION_TIMEOUT, |i| i.timeout);
    let read = inspect::fix_logon_from(downstream, timeout, settings.fix.max_logon_size).await;
    let (logon, bytes) = read.inspect_err(|_| {
        listener.stats.inspection_failed.fetch_add(1, Relaxed);
    })?;
    attributes.protocol = Some(Box::new(Protocol::Fix(logon)));
    match listener.routes.find(attributes) {
        Some(r) if r.config.terminate == route.config.terminate => {
            *route = r.clone();
            Ok(bytes.into_boxed_slice())
        }
        _ => {
            listener.stats.no_route.fetch_add(1, Relaxed);
            if let Some(logon) = attributes.fix() {
                let why = "no route for this session";
                refuse::logout(downstream, attributes.id, logon, why).await;
            }
            Err(Error::internal(Kind::NoRoute))
        }
    }
}
