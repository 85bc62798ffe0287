//! One SSH connection from accept to its access-log line: the handshake and authentication
//! within the listener's `auth_timeout`, then the session until either side ends it, the
//! route's timeouts, or the gateway (drain, reload) asks it to close.

use super::gate::{Gate, Outcome, Shared};
use crate::accept::{Context, Listener};
use crate::attributes::Attributes;
use crate::end::registry::Live;
use crate::error::{Error, Kind, Side};
use crate::terminate::ssh_limits::admit_unauthenticated;
use ssh::russh::{self, Disconnect};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};

/// The close reason's code when the upstream server ends the session
/// (`upstream_ssh_session_closed`).
const UPSTREAM_CLOSED: &str = "session_closed";

/// How long each goodbye (to the client, to the upstream) may take.
const GOODBYE: std::time::Duration = std::time::Duration::from_secs(2);

/// Shuts the client's socket down (both ways) when dropped, whatever the session task
/// still holds: a refused or ended connection is closed on time.
struct Closer(Option<socket2::Socket>);

impl Closer {
    fn of(stream: &TcpStream) -> Closer {
        Closer(socket2::SockRef::from(stream).try_clone().ok())
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        if let Some(socket) = &self.0 {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }
}

pub(crate) async fn serve(
    downstream: TcpStream,
    attributes: Box<Attributes>,
    listener: &Arc<Listener>,
    context: &Arc<Context>,
) {
    let log = context.access_log.as_ref();
    let Some(server) = listener.ssh.clone() else {
        return;
    };
    // Unauthenticated connections are bounded per listener and per source.
    let source = attributes.source.ip();
    let unauthenticated = match admit_unauthenticated(
        &listener.stats.ssh.pre_auth,
        &server.settings,
        source,
    ) {
        Ok(place) => place,
        Err(reason) => {
            tracing::warn!(id = attributes.id, %source, reason, "ssh connection refused before authentication");
            return;
        }
    };
    let deadline = Instant::now() + server.settings.auth_timeout;
    // russh runs the session in a task of its own that outlives a refusal (a disconnect
    // before key exchange never goes out): the socket is shut down when we are done.
    let _closer = Closer::of(&downstream);
    let shared = Arc::new(Shared {
        outcome: Mutex::new(Outcome::default()),
        live: watch::channel(None).0,
        ended: Default::default(),
        upstream_ended: Default::default(),
        setting_up: Default::default(),
        result: Default::default(),
        started: Default::default(),
    });
    // However the connection ends, its channel relays end with it.
    let _ended = shared.ended.clone().drop_guard();
    let gate = Gate::new(
        server.clone(),
        listener.clone(),
        context.clone(),
        (*attributes).clone(),
        shared.clone(),
    );
    // The version exchange is awaited here: a client that never speaks is bounded too.
    let started = timeout_at(
        deadline,
        russh::server::run_stream(server.config.clone(), downstream, gate),
    )
    .await;
    let running = match started {
        Ok(Ok(running)) => running,
        Ok(Err(e)) => {
            let error = Error::new(Side::Downstream, Kind::Ssh(e.to_string()));
            return refused(&attributes, &shared, error, listener, context);
        }
        Err(_) => {
            let error = Error::new(Side::Downstream, Kind::InspectionTimeout);
            return refused(&attributes, &shared, error, listener, context);
        }
    };
    let handle = running.handle();
    let mut running = std::pin::pin!(running);

    let live = match authenticated(running.as_mut(), &handle, &shared, deadline).await {
        Ok(live) => live,
        Err(error) => return refused(&attributes, &shared, error, listener, context),
    };
    drop(unauthenticated);
    let route = shared
        .outcome
        .lock()
        .unwrap()
        .route
        .clone()
        .expect("admitted");
    // The route's timeouts, re-checks and the gateway's close requests, as for any
    // connection.
    let session_ended = AtomicBool::new(false);
    let session = async {
        tokio::select! {
            ended = &mut running => {
                session_ended.store(true, Ordering::Relaxed);
                ended.map_err(|e| Error::new(Side::Downstream, Kind::Ssh(e.to_string())))
            }
            () = shared.upstream_ended.cancelled() => {
                Err(Error::new(Side::Upstream, Kind::SshUpstream(UPSTREAM_CLOSED)))
            }
        }
    };
    let result = crate::end::supervise(&live, &route, std::pin::pin!(session)).await;
    let result = match shared.outcome.lock().unwrap().error.take() {
        Some(error) => Err(error),
        None => result,
    };
    let session_ended = session_ended.load(Ordering::Relaxed);
    let mut outcome = goodbye(&handle, &shared, &result, running, session_ended).await;
    let registration = outcome.registration.take().expect("registered");
    crate::end::finish(registration, &route, &result, log);
    // The endpoint's count of this connection, held until the end.
    drop(outcome.lease);
}

/// Waits until the client is authenticated and registered as a live connection, within
/// the deadline. Err: why the connection is refused (a refused login, whatever the client
/// did next; silence; a broken session).
async fn authenticated<E: std::fmt::Display>(
    mut running: Pin<&mut impl Future<Output = Result<(), E>>>,
    handle: &russh::server::Handle,
    shared: &Shared,
    deadline: Instant,
) -> Result<Arc<Live>, Error> {
    let mut live_changes = shared.live.subscribe();
    loop {
        tokio::select! {
            ended = &mut running => {
                let mut outcome = shared.outcome.lock().unwrap();
                let error = match (outcome.error.take(), &outcome.attributes, ended) {
                    (Some(error), _, _) => error,
                    (None, Some(_), _) => Error::new(Side::Downstream, Kind::SshAuthFailed),
                    (None, None, Err(e)) => Error::new(Side::Downstream, Kind::Ssh(e.to_string())),
                    (None, None, Ok(())) => Error::new(Side::Downstream, Kind::Ssh("closed before logging in".into())),
                };
                return Err(error);
            }
            _ = sleep_until(deadline), if shared.live.borrow().is_none() => {
                let error = Error::new(Side::Downstream, Kind::SshAuthFailed);
                // A login being decided or an upstream being dialed gives up...
                shared.end(&Err(error.clone()));
                let told = handle.disconnect(Disconnect::ByApplication, "authentication timed out".into(), String::new());
                let _ = tokio::time::timeout(GOODBYE, told).await;
                // ...and its outcome is taken once it gave up (bounded).
                let _ = tokio::time::timeout(GOODBYE, shared.setting_up.lock()).await;
                return Err(error);
            }
            _ = live_changes.changed() => {
                if let Some(live) = live_changes.borrow().clone() {
                    return Ok(live);
                }
            }
        }
    }
}

/// Once the session ended: its relays stopped first (one stuck on a window would keep
/// either session from taking the disconnects), the client told why when the gateway ended
/// it, the upstream told goodbye — each bounded. What the session left, for its ending.
async fn goodbye<E>(
    handle: &russh::server::Handle,
    shared: &Shared,
    result: &Result<(), Error>,
    running: Pin<&mut impl Future<Output = Result<(), E>>>,
    session_ended: bool,
) -> Outcome {
    shared.end(result);
    if let Err(e) = result {
        let why = match (e.side, &e.kind) {
            (_, Kind::SshUpstream(UPSTREAM_CLOSED)) => "the upstream server closed the session",
            (Side::Upstream, _) => "upstream unavailable",
            _ => "closed by the gateway",
        };
        let told = handle.disconnect(Disconnect::ByApplication, why.into(), String::new());
        let _ = tokio::time::timeout(GOODBYE, told).await;
    }
    if !session_ended {
        // The session writes the goodbye before the socket is shut down, and a handler
        // still setting up (a dial, a login) gives up first: what it left is then known.
        let _ = tokio::time::timeout(GOODBYE, running).await;
    }
    let mut outcome = std::mem::take(&mut *shared.outcome.lock().unwrap());
    if let Some(upstream) = outcome.upstream.take() {
        let told = upstream.disconnect(Disconnect::ByApplication, "", "");
        let _ = tokio::time::timeout(GOODBYE, told).await;
    }
    outcome
}

/// A connection that never got past authentication: logged with the last login tried.
fn refused(
    attributes: &Attributes,
    shared: &Shared,
    error: Error,
    listener: &Listener,
    context: &Context,
) {
    let outcome = std::mem::take(&mut *shared.outcome.lock().unwrap());
    if matches!(error.kind, Kind::SshAuthFailed) {
        listener
            .stats
            .ssh_auth_failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    // The login won the race with the deadline: registered, so ended like one.
    if let (Some(registration), Some(route)) = (outcome.registration, &outcome.route) {
        crate::end::finish(
            registration,
            route,
            &Err(error),
            context.access_log.as_ref(),
        );
        return;
    }
    let attributes = outcome.attributes.unwrap_or_else(|| attributes.clone());
    crate::end::refused(
        attributes,
        outcome.route.as_ref(),
        error,
        context.access_log.as_ref(),
    );
}
