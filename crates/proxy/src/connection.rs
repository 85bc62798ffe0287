//! One connection's way through the gateway: attributes → route → dial → relay → close.

use crate::admission::Slot;
use crate::attributes::{Attributes, Mq, Protocol, ProxyInfo, Tls, TlsSession};
use crate::authorize;
use crate::end;
use crate::error::{Error, Kind, Side};
use crate::inspect;
use crate::listener::Context;
use crate::proxy_out;
use crate::registry::{Live, Upstream};
use crate::relay;
use crate::routing::Route;
use crate::session;
use crate::stream::Leg;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::net::TcpStream;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh connection's attributes: what is known at accept.
/// Boxed: an `async fn` keeps its arguments for its whole life, so a connection's task
/// would carry a second copy of them all along.
pub(crate) fn accepted(
    listener: &Arc<str>,
    source: SocketAddr,
    destination: SocketAddr,
) -> Box<Attributes> {
    Box::new(Attributes {
        id: next_id(),
        listener: listener.clone(),
        source,
        destination,
        tls: Tls::NotInspected,
        session: None,
        proxy: None,
        authz: None,
        protocol: None,
    })
}

pub(crate) async fn serve(
    downstream: TcpStream,
    mut attributes: Box<Attributes>,
    slot: Slot,
    context: Arc<Context>,
) {
    let listener = &slot.listener;
    if !proxy_header(&downstream, &mut attributes, listener, &context).await {
        return;
    }
    // Inspection next: what it finds is part of the attributes routing reads. Boxed, as
    // its state is large and short-lived.
    if let Some(inspect) = listener.config.inspect.filter(|i| i.tls) {
        match Box::pin(inspect::tls(&downstream, inspect.timeout)).await {
            Ok(tls) => attributes.tls = tls,
            Err(error) => {
                listener.stats.inspection_failed.fetch_add(1, Relaxed);
                return end::refused(*attributes, None, error, &context);
            }
        }
    }
    // The listener's protocol next: the MQ channel, the FIX Logon (peeked here; inside TLS
    // it is read once the handshake is done).
    if listener.config.protocol != config::ListenerProtocol::Tcp
        && let Err(error) = Box::pin(read_protocol(
            &downstream,
            &listener.config,
            &mut attributes,
        ))
        .await
    {
        listener.stats.inspection_failed.fetch_add(1, Relaxed);
        return end::refused(*attributes, None, error, &context);
    }
    let logon_inside_tls =
        listener.config.protocol == config::ListenerProtocol::Fix && attributes.protocol.is_none();
    let found = match logon_inside_tls {
        false => listener.routes.find(&attributes),
        true => listener.routes.find_before_logon(&attributes),
    };
    let Some(mut route) = found.cloned() else {
        listener.stats.no_route.fetch_add(1, Relaxed);
        session::refuse(downstream, &attributes, "no route for this session");
        return end::refused(*attributes, None, Error::internal(Kind::NoRoute), &context);
    };
    let mut downstream = match &route.terminate {
        None => Leg::Plain(downstream),
        Some(server) => {
            let keep_certificate = route
                .authorizer
                .as_ref()
                .is_some_and(|a| a.config.include_peer_certificate);
            let accepted = Box::pin(terminate(
                downstream,
                &route,
                server,
                keep_certificate,
                &context,
            ))
            .await;
            match accepted {
                Ok((leg, session)) => {
                    attributes.session = Some(session);
                    leg
                }
                Err(error) => {
                    listener.stats.tls_handshake_failed.fetch_add(1, Relaxed);
                    return end::refused(*attributes, Some(&route), error, &context);
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
            Err(error) => return end::refused(*attributes, Some(&route), error, &context),
        }
    }
    // A tunnel terminator: each tunnel is authorized and dialed as a connection of its own.
    if route.config.connect.is_some() {
        let listener = listener.clone();
        // Boxed: a terminator's connection holds an HTTP server; the others need none of it.
        let serve = crate::tunnel::server::serve(downstream, *attributes, route, listener, context);
        return Box::pin(serve).await;
    }
    // Authorization, before anything is dialed; the answer may choose the upstream.
    // (Only routes with authorization pay for the boxed check.)
    let mut routing = None;
    if route.config.authorization.is_some() {
        match Box::pin(authorize::check(&route, &attributes)).await {
            Ok((decision, answer)) => {
                attributes.authz = decision;
                routing = answer;
            }
            Err((decision, error)) => {
                attributes.authz = Some(decision);
                listener.stats.authz_denied.fetch_add(1, Relaxed);
                let why = match error.kind {
                    Kind::AuthzUnavailable => "authorization unavailable",
                    _ => "not authorized",
                };
                session::refuse(downstream, &attributes, why);
                return end::refused(*attributes, Some(&route), error, &context);
            }
        }
    }
    let registration = context.registry.register(Arc::new(Live::new(*attributes)));
    let live = &registration.live.clone();
    let (attributes, counters) = (&live.attributes, &live.counters);
    route.connections.fetch_add(1, Relaxed);
    if attributes.protocol.is_some() {
        let comp_ids = listener.config.fix.comp_id_metrics;
        (listener.stats.sessions).count(&route.config.name, attributes, comp_ids);
    }
    let cluster = match routing.as_deref().and_then(|r| r.cluster.as_deref()) {
        None => &route.cluster,
        Some(name) => match listener.routes.cluster(name) {
            Some(cluster) => cluster,
            None => {
                let error = Error::internal(Kind::BadDynamicTarget);
                tracing::warn!(id = attributes.id, route = %route.config.name, cluster = name, "the authorizer named a cluster that does not exist");
                return end::finish(registration, &route, None, &Err(error), &context);
            }
        },
    };

    // Boxed: the dial state is large and short-lived; kept inline it would size every
    // connection's task for its whole life.
    let dial = async {
        let (mut leg, lease) =
            dial(cluster, &route, attributes, routing.as_deref(), &context).await?;
        // What was read before routing (a Logon inside TLS) goes first.
        if let Some(bytes) = replay {
            use tokio::io::AsyncWriteExt;
            leg.write_all(&bytes)
                .await
                .map_err(|e| Error::io(Side::Upstream, &e))?;
        }
        Ok((leg, lease))
    };
    let dialed = tokio::select! {
        dialed = Box::pin(dial) => dialed,
        reason = live.close_requested() => Err(Error::internal(reason.kind())),
    };
    let (mut upstream, lease) = match dialed {
        Ok(pair) => pair,
        Err(error) => {
            session::refuse(downstream, attributes, "upstream unavailable");
            return end::finish(registration, &route, None, &Err(error), &context);
        }
    };
    let endpoint = &lease.endpoint;
    live.set_upstream(Upstream {
        route: route.clone(),
        cluster: cluster.clone(),
        endpoint: endpoint.clone(),
    });
    tracing::debug!(id = attributes.id, route = %route.config.name, endpoint = %endpoint.address, "connected upstream");

    let relay = async {
        match (&mut downstream, &mut upstream) {
            (Leg::Plain(down), Leg::Plain(up)) => relay::relay(down, up, counters).await,
            (down, up) => relay::relay_streams(down, up, counters).await,
        }
    };
    let result = end::supervise(live, &route, std::pin::pin!(relay)).await;
    relay::pass_on_abort(&result, &mut downstream, &mut upstream);
    end::finish(registration, &route, Some(&lease), &result, &context);
}

/// A trusted balancer's PROXY header, when the listener reads them: its client address is
/// the connection's. False: the connection was refused (logged and counted).
pub(crate) async fn proxy_header(
    downstream: &TcpStream,
    attributes: &mut Box<Attributes>,
    listener: &crate::listener::Listener,
    context: &Context,
) -> bool {
    let Some(settings) = &listener.config.proxy_protocol else {
        return true;
    };
    let peer = attributes.source;
    match Box::pin(inspect::proxy_header(downstream, settings, peer)).await {
        Ok(None) => true,
        Ok(Some(header)) => {
            if let Some((source, destination)) = header.addresses {
                attributes.source = source;
                attributes.destination = destination;
            }
            attributes.proxy = Some(Box::new(ProxyInfo {
                balancer: peer,
                version: header.version,
                tlvs: header.tlvs,
            }));
            true
        }
        Err(error) => {
            listener.stats.proxy_protocol_failed.fetch_add(1, Relaxed);
            end::refused((**attributes).clone(), None, error, context);
            false
        }
    }
}

/// Dials the cluster (the route's, or the one the authorizer chose): a tunnel through it,
/// or TCP with the cluster's PROXY header and TLS.
pub(crate) async fn dial(
    cluster: &crate::cluster::Cluster,
    route: &Route,
    attributes: &Attributes,
    routing: Option<&authz::Routing>,
    context: &Context,
) -> Result<(Leg, crate::cluster::Lease), Error> {
    if let Some(settings) = &cluster.config.tunnel {
        return tunnel_through(cluster, settings, route, attributes, routing, context).await;
    }
    let target = routing.and_then(|r| r.address.as_deref());
    let (stream, lease) = match target {
        None => cluster.connect().await?,
        Some(address) => {
            let authorization = route.config.authorization.as_ref();
            cluster.connect_to(address, authorization).await?
        }
    };
    let header = proxy_out::header(&cluster.config, attributes, routing);
    let sni = attributes.sni();
    let leg = cluster.originate(stream, header, sni, &context.handshakes);
    Ok((leg.await?, lease))
}

/// The FIX Logon inside a terminated TLS session: read (counted when it fails), then the
/// route chosen again with it among routes with the same TLS settings (a Logout when there
/// is none). The bytes read, for the venue.
async fn logon_inside(
    downstream: &mut Leg,
    attributes: &mut Attributes,
    listener: &crate::listener::Listener,
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
                session::logout(downstream, attributes.id, logon, why).await;
            }
            Err(Error::internal(Kind::NoRoute))
        }
    }
}

/// Reads what the listener's protocol says before routing: the MQ channel (the first
/// segment of a plaintext client, the SNI of a TLS one), the FIX Logon (peeked; not yet when
/// the client speaks TLS).
async fn read_protocol(
    stream: &TcpStream,
    settings: &config::Listener,
    a: &mut Attributes,
) -> Result<(), Error> {
    let timeout = settings
        .inspect
        .map_or(config::DEFAULT_INSPECTION_TIMEOUT, |i| i.timeout);
    let tls = a.tls.hello();
    match settings.protocol {
        config::ListenerProtocol::Tcp | config::ListenerProtocol::Ssh => {}
        config::ListenerProtocol::Mq => match tls {
            Some(hello) => {
                let decoded = hello
                    .sni
                    .as_deref()
                    .and_then(protocols::mq::channel_from_sni);
                if let Some(decoded) = decoded {
                    let channel = decoded
                        .map_err(|why| Error::new(Side::Downstream, Kind::Malformed(why)))?;
                    a.protocol = Some(Box::new(Protocol::Mq(Mq {
                        channel,
                        queue_manager: None,
                    })));
                }
            }
            None => {
                let initial = inspect::mq_initial(stream, timeout).await?;
                a.protocol = Some(Box::new(Protocol::Mq(Mq {
                    channel: initial.channel,
                    queue_manager: initial.queue_manager,
                })));
            }
        },
        config::ListenerProtocol::Fix if tls.is_some() => {}
        config::ListenerProtocol::Fix => {
            let max = settings.fix.max_logon_size;
            let logon = inspect::fix_logon(stream, timeout, max).await?;
            a.protocol = Some(Box::new(Protocol::Fix(logon)));
        }
    }
    Ok(())
}

/// A new connection id.
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Relaxed)
}

/// Opens the tunnel a tunnel cluster carries the connection in: the authority and headers
/// from the cluster's templates, or the authorizer's answer.
async fn tunnel_through(
    cluster: &crate::cluster::Cluster,
    settings: &config::Tunnel,
    route: &Route,
    attributes: &Attributes,
    routing: Option<&authz::Routing>,
    context: &Context,
) -> Result<(Leg, crate::cluster::Lease), Error> {
    let value = |name: &str| crate::tunnel::placeholder(attributes, &route.config.name, name);
    let authority = match routing.and_then(|r| r.address.as_deref()) {
        None => settings.authority.render(value),
        Some(address) => {
            let allowed = address.parse().is_ok_and(|a| {
                route
                    .config
                    .authorization
                    .as_ref()
                    .and_then(|a| a.dynamic_targets.as_ref())
                    .is_some_and(|t| t.allows(a))
            });
            if !allowed {
                return Err(Error::internal(Kind::BadDynamicTarget));
            }
            address.to_string()
        }
    };
    let mut headers: Vec<(String, String)> = settings
        .headers
        .iter()
        .map(|(name, template)| (name.clone(), template.render(value)))
        .collect();
    if let Some(routing) = routing {
        headers.extend(routing.headers.iter().cloned());
    }
    cluster
        .tunnel(
            settings,
            &authority,
            &headers,
            attributes.sni(),
            &context.handshakes,
        )
        .await
}

/// The TLS handshake of a terminating route, bounded by its timeout; the session's
/// details and the client's verified identity for the attributes.
async fn terminate(
    downstream: TcpStream,
    route: &Route,
    server: &Arc<rustls::ServerConfig>,
    keep_certificate: bool,
    context: &Context,
) -> Result<(Leg, Box<TlsSession>), Error> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server.clone());
    let timeout = route
        .config
        .terminate
        .as_ref()
        .map_or(std::time::Duration::from_secs(10), |t| t.handshake_timeout);
    let reason = match tokio::time::timeout(timeout, acceptor.accept(downstream)).await {
        Ok(Ok(stream)) => {
            context.handshakes.record("downstream", "ok");
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
    context.handshakes.record("downstream", reason);
    Err(Error::new(Side::Downstream, Kind::Tls(reason)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::Listener;
    use crate::routing::RouteTable;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    /// The connection task is most of what an idle connection costs in user space
    /// (bench/RESULTS.md measures the whole): keep it small.
    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let config = config::parse(
            "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{ cluster: c }]\nclusters:\n  - { name: c, endpoints: [{ address: \"127.0.0.1:1\" }] }\n",
            "t",
        )
        .unwrap();
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = server.local_addr().unwrap();
        let stream = TcpStream::connect(address).await.unwrap();
        let listener = Arc::new(Listener {
            config: config.listeners[0].clone(),
            name: "l".into(),
            routes: RouteTable::new(
                &[],
                &Default::default(),
                &Default::default(),
                &Default::default(),
                None,
            ),
            ssh: None,
            stats: Default::default(),
        });
        let context = Arc::new(Context {
            stop_accepting: CancellationToken::new(),
            registry: Default::default(),
            connections: TaskTracker::new(),
            access_log: None,
            global: Default::default(),
            handshakes: Default::default(),
        });
        let attributes = accepted(&listener.name, address, address);
        let slot = crate::admission::admit(
            &listener,
            &context.global,
            Some(&mut crate::admission::RateLimiter::new()),
            address.ip(),
        )
        .unwrap();
        let task = serve(stream, attributes, slot, context);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 720, "the connection future grew to {size} bytes");
        let counters = relay::Counters::new();
        let (a, b) = (
            TcpStream::connect(address).await.unwrap(),
            TcpStream::connect(address).await.unwrap(),
        );
        let relay = relay::relay(&a, &b, &counters);
        assert!(
            std::mem::size_of_val(&relay) <= 64,
            "the relay holds no buffers or readiness futures"
        );
    }
}
