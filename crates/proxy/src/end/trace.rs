//! A connection's span: started at accept with what is known then (the TCP peer, the
//! listener), described at the end with everything the stages learnt, and ended by the one
//! ending. Semantic-convention names where they exist (`client.*`, `server.*`,
//! `network.*`, `error.type`), `causeway.*` for the rest; never a password, key or token.

use crate::attributes::{Attributes, SpanSlot};
use crate::end::registry::Live;
use crate::error::Error;
use crate::route::Route;
use std::sync::atomic::Ordering::Relaxed;
use telemetry::trace::{Span, SpanContext, SpanKind, Tracer};

/// Starts the SERVER span of a connection (`parent`: a trusted caller's context).
pub(crate) fn start(
    tracer: Option<&Tracer>,
    attributes: &mut Attributes,
    name: &'static str,
    parent: Option<&SpanContext>,
) {
    let Some(tracer) = tracer else { return };
    let mut span = tracer.start_span(name, SpanKind::Server, parent);
    if span.is_recording() {
        span.set("network.transport", "tcp");
        span.set("network.peer.address", attributes.source.ip().to_string());
        span.set("network.peer.port", attributes.source.port());
        span.set("server.address", attributes.destination.ip().to_string());
        span.set("server.port", attributes.destination.port());
        span.set("causeway.listener", attributes.listener.to_string());
        span.set("causeway.connection.id", attributes.id);
    }
    attributes.span = SpanSlot::new(span);
}

/// Ends a connection's span with what it came to: route, upstream, bytes each way, close
/// reason (`error.type` when it failed).
pub(crate) fn end(live: &Live, route: Option<&Route>, result: &Result<(), Error>) {
    let Some(mut span) = live.attributes.span.take() else {
        return;
    };
    if span.is_recording() {
        describe(&mut span, live, route);
        match result {
            Ok(()) => span.set("causeway.close_reason", "closed"),
            Err(e) => {
                span.set("causeway.close_reason", e.code());
                span.set("causeway.close_side", e.side.as_str());
                span.fail(e.code(), e.to_string());
            }
        }
    }
}

fn describe(span: &mut Span, live: &Live, route: Option<&Route>) {
    let (a, c) = (&live.attributes, &live.counters);
    span.set("client.address", a.source.ip().to_string());
    span.set("client.port", a.source.port());
    let route = live.upstream().map(|u| &*u.route).or(route);
    if let Some(route) = route {
        span.set("causeway.route", route.config.name.clone());
        span.set("causeway.cluster", route.cluster.name().to_string());
    }
    if let Some(u) = live.upstream() {
        span.set("causeway.cluster", u.cluster.name().to_string());
        span.set("causeway.endpoint", u.endpoint.address.to_string());
    }
    span.set("causeway.bytes.upstream", c.upstream_bytes.load(Relaxed));
    span.set(
        "causeway.bytes.downstream",
        c.downstream_bytes.load(Relaxed),
    );
    if let Some(decision) = a.authz {
        span.set("causeway.authz", decision.as_str());
    }
    if let Some(proxy) = &a.proxy {
        span.set("causeway.proxy_protocol.peer", proxy.balancer.to_string());
    }
    if let Some(sni) = a.sni() {
        span.set("causeway.tls.sni", sni.to_string());
    }
    if let Some(peer) = a.session.as_ref().and_then(|s| s.peer.as_ref())
        && let Some(id) = &peer.spiffe_id
    {
        span.set("causeway.tls.peer.spiffe_id", id.clone());
    }
    protocol(span, a);
}

/// What the listener's protocol said: FIX CompIDs, the MQ channel, the SSH login, a
/// tunnel's target. (Never the FIX password.)
fn protocol(span: &mut Span, a: &Attributes) {
    if let Some(logon) = a.fix() {
        span.set("causeway.fix.sender_comp_id", logon.sender_comp_id.clone());
        span.set("causeway.fix.target_comp_id", logon.target_comp_id.clone());
    }
    if let Some(mq) = a.mq() {
        span.set("causeway.mq.channel", mq.channel.clone());
        if let Some(qm) = &mq.queue_manager {
            span.set("causeway.mq.queue_manager", qm.clone());
        }
    }
    if let Some(login) = a.ssh() {
        span.set("causeway.ssh.user", login.user.clone());
        span.set("causeway.ssh.auth_method", login.method);
        if let Some(target) = &login.target {
            span.set("causeway.ssh.target", target.clone());
        }
        if let Some(channel) = &login.channel {
            span.set("causeway.ssh.channel", channel.kind);
        }
    }
    if let Some(target) = a.tunnel() {
        span.set("causeway.tunnel.host", target.host.clone());
        span.set("causeway.tunnel.port", target.port);
    }
}

/// A phase that failed: its span says why.
pub(crate) fn failed(phase: Option<&mut Span>, error: &Error) {
    if let Some(span) = phase {
        span.fail(error.code(), error.to_string());
    }
}

/// The TLS handshake's span: what was negotiated, and who the client proved to be.
pub(crate) fn tls_session(span: &mut Span, session: &crate::attributes::TlsSession) {
    span.set("tls.protocol.name", "tls");
    let version = session.version.trim_start_matches("TLSv").replace('_', ".");
    span.set("tls.protocol.version", version);
    span.set("tls.cipher", session.cipher.clone());
    if let Some(sni) = &session.sni {
        span.set("tls.client.server_name", sni.clone());
    }
    if let Some(alpn) = &session.alpn {
        span.set("tls.next_protocol", alpn.clone());
    }
    if let Some(peer) = &session.peer {
        if let Some(id) = &peer.spiffe_id {
            span.set("causeway.tls.peer.spiffe_id", id.clone());
        }
        span.set("tls.client.subject", peer.subject.clone());
    }
}

/// For a recorded connection span: every `span_max_duration`, the span is ended and
/// continued in a new one linked to it. Never ends.
pub(crate) fn continuations(attributes: &Attributes) -> Option<impl Future<Output = ()> + '_> {
    let mut every = None;
    attributes.span.with(|s| every = s.max_duration());
    let every = every?;
    Some(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            attributes.span.with(Span::continue_in_new);
        }
    })
}
