//! A running gateway: listeners bound, clusters checking health, connections tracked; hot
//! reload that leaves live connections and unchanged sockets alone; and the graceful
//! shutdown that lets live connections finish.

mod report;
pub mod snapshot;

use crate::accept::{self, Context, Listener, ListenerStats};
use crate::dial::cluster::Cluster;
use crate::end::access_log::AccessLog;
use crate::end::registry::{CloseReason, Registry};
use crate::route::RouteTable;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listener `{listener}` cannot listen on {address}: {source}")]
    Bind {
        listener: String,
        address: SocketAddr,
        source: io::Error,
    },
    #[error("cannot open the access log {path}: {source}")]
    AccessLog { path: String, source: io::Error },
    #[error("identity `{name}`: {source}")]
    Identity { name: String, source: tls::TlsError },
    #[error("{0}")]
    Authorizer(String),
    #[error("listener `{listener}`: {why}")]
    Ssh { listener: String, why: String },
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every connection ended by itself before the spread began.
    pub drained: bool,
    /// Connections still open when the spread began, and closed.
    pub closed: usize,
}

/// What a reload changed, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReloadSummary {
    pub listeners_added: Vec<String>,
    pub listeners_removed: Vec<String>,
    /// Rebound because their address or socket settings changed.
    pub listeners_rebound: Vec<String>,
    /// Same socket; new routes or limits.
    pub listeners_updated: Vec<String>,
    pub clusters_added: Vec<String>,
    pub clusters_removed: Vec<String>,
    pub clusters_replaced: Vec<String>,
}

#[derive(Debug, Default)]
pub struct ReloadStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// One listener while it runs: the socket's accept loop, and the version of its settings
/// that new connections get (swapped by a reload).
struct RunningListener {
    /// The accept loop applies a new version's socket options to its socket.
    current: watch::Sender<Arc<Listener>>,
    address: SocketAddr,
    stop: CancellationToken,
    accept_loop: JoinHandle<()>,
}

struct State {
    config: config::Config,
    listeners: Vec<(String, RunningListener)>,
    clusters: HashMap<String, Arc<Cluster>>,
    authorizers: Authorizers,
}

type Authorizers = HashMap<String, Arc<authz::ExtAuthz>>;

pub struct Gateway {
    state: Mutex<State>,
    context: Arc<Context>,
    identities: Arc<tls::Identities>,
    stop_health_checks: CancellationToken,
    draining: AtomicBool,
    pub reloads: ReloadStats,
}

impl Gateway {
    /// Binds every listener and starts serving. Must be called inside a tokio runtime.
    pub fn start(config: &config::Config) -> Result<Gateway, StartError> {
        let access_log = match &config.access_log {
            Some(settings) => Some(AccessLog::start(settings).map_err(|source| {
                StartError::AccessLog {
                    path: settings
                        .path
                        .as_ref()
                        .map_or("stdout".into(), |p| p.display().to_string()),
                    source,
                }
            })?),
            None => None,
        };
        let gateway = Gateway {
            state: Mutex::new(State {
                config: config.clone(),
                listeners: Vec::new(),
                clusters: HashMap::new(),
                authorizers: HashMap::new(),
            }),
            context: Arc::new(Context {
                stop_accepting: CancellationToken::new(),
                registry: Default::default(),
                connections: TaskTracker::new(),
                access_log,
                global: Default::default(),
                handshakes: Default::default(),
            }),
            identities: Default::default(),
            stop_health_checks: CancellationToken::new(),
            draining: AtomicBool::new(false),
            reloads: ReloadStats::default(),
        };
        gateway
            .context
            .global
            .limit
            .store(config.max_connections.unwrap_or(0) as u64, Relaxed);
        if let (Some(log), Some(settings)) = (&gateway.context.access_log, &config.access_log)
            && let Some(interval) = settings.open_connections_interval
        {
            log.spawn_periodic(gateway.context.registry.clone(), interval);
        }
        let started = (|| {
            let mut state = gateway.state.lock().unwrap();
            gateway
                .identities
                .replace(identities_for(config, None, &gateway.identities)?);
            state.clusters = gateway.clusters_for(config, &HashMap::new(), &[]);
            state.authorizers = authorizers_for(config, None, &HashMap::new())?;
            let mut ssh = ssh_servers(config)?;
            for (l, socket) in bind_all(config.listeners.iter())? {
                let running = gateway.run_listener(
                    l,
                    socket,
                    &state.clusters,
                    &state.authorizers,
                    ssh.remove(&l.name),
                    None,
                )?;
                state.listeners.push((l.name.clone(), running));
            }
            Ok(())
        })();
        if let Err(e) = started {
            // Nothing may outlive a gateway that did not start.
            gateway.stop_health_checks.cancel();
            gateway.context.stop_accepting.cancel();
            return Err(e);
        }
        Ok(gateway)
    }

    /// Applies a new configuration to new connections. Live connections keep their upstream;
    /// listeners whose socket settings did not change keep their socket (no connection
    /// attempt is refused); new listeners are bound before anything else changes, so a
    /// reload that cannot bind changes nothing. Removed listeners stop accepting and their
    /// live connections drain. Unchanged clusters keep their health state.
    pub fn reload(&self, config: &config::Config) -> Result<ReloadSummary, StartError> {
        let result = self.apply(config);
        match &result {
            Ok(summary) => {
                self.reloads.ok.fetch_add(1, Relaxed);
                tracing::info!(?summary, "configuration reloaded");
            }
            Err(e) => {
                self.reloads.failed.fetch_add(1, Relaxed);
                tracing::error!("reload failed, the previous configuration stays: {e}");
            }
        }
        result
    }

    fn apply(&self, config: &config::Config) -> Result<ReloadSummary, StartError> {
        let mut state = self.state.lock().unwrap();
        let mut summary = ReloadSummary::default();
        // What changes, by name: computed once, without touching a socket.
        let diff = config::diff(&state.config, config);
        for setting in &diff.restart_required {
            tracing::warn!(
                setting,
                "a change of `{setting}` takes effect at the next restart"
            );
        }

        // First everything that can fail: binding new and changed listeners.
        let changes = &diff.listeners;
        let needs_socket = |l: &&config::Listener| {
            changes.added.contains(&l.name) || changes.rebound.contains(&l.name)
        };
        let bound = bind_all(config.listeners.iter().filter(needs_socket))?;
        let identities = identities_for(config, Some(&state.config), &self.identities)?;
        let authorizers = authorizers_for(config, Some(&state.config), &state.authorizers)?;
        let mut ssh = ssh_servers(config)?;

        // Nothing fails from here on.
        for retired in self.identities.replace(identities) {
            retired.stop();
        }
        let clusters = self.clusters_for(config, &state.clusters, &diff.clusters.unchanged);
        summary.clusters_added = diff.clusters.added;
        summary.clusters_replaced = diff.clusters.replaced;
        summary.clusters_removed = diff.clusters.removed;
        let mut retired = Vec::new();
        for (name, old) in &state.clusters {
            match clusters.get(name) {
                Some(new) if Arc::ptr_eq(new, old) => {}
                Some(_) => {
                    old.stop();
                    retired.push(old.clone());
                }
                None => {
                    old.stop();
                    retired.push(old.clone());
                }
            }
        }
        if config.reload.removed_cluster_connections == config::RemovedConnections::Close
            && !retired.is_empty()
        {
            self.drain_connections(config.drain.clone(), move |live| {
                live.upstream()
                    .is_some_and(|u| retired.iter().any(|c| Arc::ptr_eq(c, &u.cluster)))
            });
        }

        let mut old_listeners: HashMap<String, RunningListener> =
            state.listeners.drain(..).collect();
        let mut bound: HashMap<&str, std::net::TcpListener> = bound
            .into_iter()
            .map(|(l, s)| (l.name.as_str(), s))
            .collect();
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let old = old_listeners.remove(&l.name);
            let running = match (old, bound.remove(l.name.as_str())) {
                (Some(old), None) => {
                    let previous = old.current.borrow().clone();
                    old.current.send_replace(Arc::new(listener_state(
                        l,
                        &clusters,
                        &self.identities,
                        &authorizers,
                        ssh.remove(&l.name),
                        Some(&previous),
                    )));
                    summary.listeners_updated.push(l.name.clone());
                    old
                }
                (old, Some(socket)) => {
                    let previous = old.as_ref().map(|o| o.current.borrow().clone());
                    if let Some(old) = old {
                        old.stop.cancel();
                        summary.listeners_rebound.push(l.name.clone());
                    } else {
                        summary.listeners_added.push(l.name.clone());
                    }
                    let ssh = ssh.remove(&l.name);
                    self.run_listener(l, socket, &clusters, &authorizers, ssh, previous.as_deref())?
                }
                (None, None) => unreachable!("a new listener is always bound"),
            };
            listeners.push((l.name.clone(), running));
        }
        for (name, old) in old_listeners {
            old.stop.cancel();
            tracing::info!(listener = %name, "listener removed: stopped accepting; its connections drain");
            // Its connections (those accepted until now) get the drain window, then close.
            let newest = self
                .context
                .registry
                .snapshot()
                .last()
                .map_or(0, |l| l.attributes.id);
            let listener_name = name.clone();
            self.drain_connections(config.drain.clone(), move |live| {
                *live.attributes.listener == *listener_name && live.attributes.id <= newest
            });
            summary.listeners_removed.push(name);
        }
        self.context
            .global
            .limit
            .store(config.max_connections.unwrap_or(0) as u64, Relaxed);
        state.listeners = listeners;
        state.clusters = clusters;
        state.authorizers = authorizers;
        state.config = config.clone();
        Ok(summary)
    }

    /// The clusters for `config`: an old cluster the diff finds `unchanged` is kept (with
    /// its health state); the others are started.
    fn clusters_for(
        &self,
        config: &config::Config,
        old: &HashMap<String, Arc<Cluster>>,
        unchanged: &[String],
    ) -> HashMap<String, Arc<Cluster>> {
        config
            .clusters
            .iter()
            .map(|c| {
                let kept = old.get(&c.name).filter(|_| unchanged.contains(&c.name));
                let cluster = match kept {
                    Some(existing) => existing.clone(),
                    None => {
                        let stop = self.stop_health_checks.child_token();
                        let recovered = crate::end::failback::closer(self.context.registry.clone());
                        Cluster::start(c, stop, recovered, &self.identities)
                    }
                };
                (c.name.clone(), cluster)
            })
            .collect()
    }

    fn run_listener(
        &self,
        config: &config::Listener,
        socket: std::net::TcpListener,
        clusters: &HashMap<String, Arc<Cluster>>,
        authorizers: &Authorizers,
        ssh: Option<Arc<crate::terminate::ssh::SshServer>>,
        previous: Option<&Listener>,
    ) -> Result<RunningListener, StartError> {
        let error = |source| StartError::Bind {
            listener: config.name.clone(),
            address: config.address,
            source,
        };
        let socket = tokio::net::TcpListener::from_std(socket).map_err(error)?;
        let address = socket.local_addr().map_err(error)?;
        let (current, updates) = watch::channel(Arc::new(listener_state(
            config,
            clusters,
            &self.identities,
            authorizers,
            ssh,
            previous,
        )));
        let stop = self.context.stop_accepting.child_token();
        tracing::info!(listener = %config.name, %address, "listening");
        let accept_loop = tokio::spawn(accept::accept_loop(
            socket,
            updates,
            stop.clone(),
            self.context.clone(),
            crate::drive::serve,
        ));
        Ok(RunningListener {
            current,
            address,
            stop,
            accept_loop,
        })
    }

    /// The address a listener is bound to (its real port when configured with port 0).
    pub fn listener_address(&self, name: &str) -> Option<SocketAddr> {
        let state = self.state.lock().unwrap();
        state
            .listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.address)
    }

    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        let state = self.state.lock().unwrap();
        state
            .listeners
            .iter()
            .map(|(n, l)| (n.clone(), l.address))
            .collect()
    }

    /// Each listener's current settings (routes with their counters) and statistics.
    pub fn listener_states(&self) -> Vec<Arc<Listener>> {
        let state = self.state.lock().unwrap();
        state
            .listeners
            .iter()
            .map(|(_, l)| l.current.borrow().clone())
            .collect()
    }

    pub fn listener_stats(&self, name: &str) -> Option<Arc<ListenerStats>> {
        let state = self.state.lock().unwrap();
        state
            .listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.current.borrow().stats.clone())
    }

    pub fn cluster(&self, name: &str) -> Option<Arc<Cluster>> {
        self.state.lock().unwrap().clusters.get(name).cloned()
    }

    /// The identities in use (material, rotations, expiry).
    pub fn identities(&self) -> Vec<Arc<tls::Identity>> {
        self.identities.all()
    }

    /// The authorization services, by name.
    pub fn authorizers(&self) -> Vec<Arc<authz::ExtAuthz>> {
        let state = self.state.lock().unwrap();
        let mut all: Vec<_> = state.authorizers.values().cloned().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// TLS handshakes so far, by side and result.
    pub fn handshakes(&self) -> &tls::HandshakeStats {
        &self.context.handshakes
    }

    /// Waits until every identity has material to present or trust (a SPIRE agent streams
    /// its first SVID shortly after start), for at most `timeout`; names those still without.
    pub async fn identities_ready(&self, timeout: std::time::Duration) -> Vec<String> {
        let all = self.identities.all();
        let wait = futures_ready(&all);
        let _ = tokio::time::timeout(timeout, wait).await;
        all.iter()
            .filter(|i| i.current().is_none())
            .map(|i| i.name.to_string())
            .collect()
    }

    /// The configuration in effect.
    pub fn config(&self) -> config::Config {
        self.state.lock().unwrap().config.clone()
    }

    /// The live connections.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.context.registry
    }

    /// Connections being handled now, across all listeners.
    pub fn active_connections(&self) -> usize {
        self.context.connections.len()
    }

    /// Gives the connections matching `which` the drain window, then closes those left,
    /// spread like a shutdown's.
    fn drain_connections(
        &self,
        drain: config::Drain,
        which: impl Fn(&crate::end::registry::Live) -> bool + Send + 'static,
    ) {
        let registry = self.context.registry.clone();
        tokio::spawn(async move {
            tokio::time::sleep(drain.timeout - drain.spread).await;
            let remaining: Vec<_> = registry
                .snapshot()
                .into_iter()
                .filter(|l| which(l))
                .collect();
            if remaining.is_empty() {
                return;
            }
            let step = drain.spread / remaining.len() as u32;
            for live in remaining {
                live.request_close(CloseReason::Shutdown);
                tokio::time::sleep(step).await;
            }
        });
    }

    /// True from the moment a drain starts: the gateway is going away (/ready says 503).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }

    /// Reports draining from now on, ahead of `shutdown` (which does it too).
    pub fn begin_draining(&self) {
        self.draining.store(true, Relaxed);
    }

    /// Drains and stops, by the configuration's `drain` settings, counted from now:
    /// draining at once; accepting for `delay` more (so load balancers notice first); live
    /// connections then have until `timeout` to end by themselves, and those still open in
    /// the last `spread` of the window are closed one by one, oldest first, spread evenly,
    /// so their clients do not all reconnect in the same instant.
    pub async fn shutdown(&self) -> ShutdownReport {
        let started = tokio::time::Instant::now();
        self.draining.store(true, Relaxed);
        let (drain, listeners) = {
            let mut state = self.state.lock().unwrap();
            (
                state.config.drain.clone(),
                std::mem::take(&mut state.listeners),
            )
        };
        let live = self.context.connections.len();
        tracing::info!(connections = live, timeout = ?drain.timeout, delay = ?drain.delay, spread = ?drain.spread, "draining");

        tokio::time::sleep_until(started + drain.delay).await;
        self.context.stop_accepting.cancel();
        for (_, listener) in listeners {
            let _ = listener.accept_loop.await;
        }
        self.context.connections.close();

        let deadline = started + drain.timeout;
        let spread_from = deadline - drain.spread;
        let drained = tokio::time::timeout_at(spread_from, self.context.connections.wait())
            .await
            .is_ok();
        let mut closed = 0;
        if !drained {
            let remaining = self.context.registry.snapshot();
            closed = remaining.len();
            tracing::warn!(
                connections = closed,
                over = ?drain.spread,
                "drain window ending: closing the remaining connections"
            );
            let step = drain.spread / closed.max(1) as u32;
            for (i, live) in remaining.iter().enumerate() {
                tokio::time::sleep_until(spread_from + step * i as u32).await;
                live.request_close(CloseReason::Shutdown);
            }
            self.context.registry.close_all(CloseReason::Shutdown);
            self.context.connections.wait().await;
        }
        self.stop_health_checks.cancel();
        ShutdownReport { drained, closed }
    }
}

/// The identities for `config`: one whose configuration is unchanged since `old` keeps
/// running (with its material); others are started (files read now: an unusable file
/// fails the start or reload).
fn identities_for(
    config: &config::Config,
    old: Option<&config::Config>,
    running: &tls::Identities,
) -> Result<HashMap<String, Arc<tls::Identity>>, StartError> {
    config
        .identities
        .iter()
        .map(|i| {
            let unchanged = old
                .and_then(|o| o.identities.iter().find(|o| o.name == i.name))
                .is_some_and(|o| o == i);
            let identity = match running.get(&i.name) {
                Some(existing) if unchanged => existing,
                _ => tls::start_identity(i).map_err(|source| StartError::Identity {
                    name: i.name.clone(),
                    source,
                })?,
            };
            Ok((i.name.clone(), identity))
        })
        .collect()
}

/// The authorization services for `config`: unchanged ones are kept (their connection,
/// cache and counts), others are created (they connect at their first check).
fn authorizers_for(
    config: &config::Config,
    old: Option<&config::Config>,
    running: &Authorizers,
) -> Result<Authorizers, StartError> {
    config
        .authorizers
        .iter()
        .map(|a| {
            let unchanged = old
                .and_then(|o| o.authorizers.iter().find(|o| o.name == a.name))
                .is_some_and(|o| o == a);
            let authorizer = match running.get(&a.name) {
                Some(existing) if unchanged => existing.clone(),
                _ => Arc::new(authz::ExtAuthz::new(a).map_err(StartError::Authorizer)?),
            };
            Ok((a.name.clone(), authorizer))
        })
        .collect()
}

async fn futures_ready(identities: &[Arc<tls::Identity>]) {
    for identity in identities {
        identity.ready().await;
    }
}

/// A listener's settings for new connections; counters continue from `previous`.
fn listener_state(
    config: &config::Listener,
    clusters: &HashMap<String, Arc<Cluster>>,
    identities: &Arc<tls::Identities>,
    authorizers: &Authorizers,
    ssh: Option<Arc<crate::terminate::ssh::SshServer>>,
    previous: Option<&Listener>,
) -> Listener {
    Listener {
        ssh,
        config: config.clone(),
        name: Arc::from(config.name.as_str()),
        routes: RouteTable::new(
            &config.routes,
            clusters,
            identities,
            authorizers,
            previous.map(|p| &p.routes),
        ),
        stats: previous.map(|p| p.stats.clone()).unwrap_or_default(),
    }
}

/// The SSH servers of the SSH listeners, their key files read (again, on reload: rotated
/// host keys take effect for new connections).
fn ssh_servers(
    config: &config::Config,
) -> Result<HashMap<String, Arc<crate::terminate::ssh::SshServer>>, StartError> {
    config
        .listeners
        .iter()
        .filter(|l| l.ssh.is_some())
        .map(|l| {
            let server =
                crate::terminate::ssh::SshServer::load(l, &config.clusters).map_err(|why| {
                    StartError::Ssh {
                        listener: l.name.clone(),
                        why,
                    }
                })?;
            Ok((l.name.clone(), Arc::new(server)))
        })
        .collect()
}

/// Binds every listener given, or none: the first failure drops what was bound.
fn bind_all<'a>(
    listeners: impl Iterator<Item = &'a config::Listener>,
) -> Result<Vec<(&'a config::Listener, std::net::TcpListener)>, StartError> {
    listeners
        .map(|l| {
            accept::bind(l)
                .map(|s| (l, s))
                .map_err(|source| StartError::Bind {
                    listener: l.name.clone(),
                    address: l.address,
                    source,
                })
        })
        .collect()
}
