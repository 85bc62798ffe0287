//! A running gateway: listeners bound, clusters checking health, connections tracked; hot
//! reload that leaves live connections and unchanged sockets alone; and the graceful
//! shutdown that lets live connections finish.

mod drain;
mod reload;
mod report;
pub mod snapshot;
mod status;

pub use drain::ShutdownReport;
pub use reload::{LastReload, ReloadStats, ReloadSummary};
use reload::{
    authorizers_for, bind_all, futures_ready, identities_for, listener_state, ssh_servers,
};
pub use status::{Audience, Status};

use crate::accept::{self, Context, Listener, ListenerStats};
use crate::dial::cluster::Cluster;
use crate::end::access_log::AccessLog;
use crate::end::registry::Registry;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
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
    #[error("{0}")]
    Tracing(String),
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
    started: std::time::Instant,
}

/// The access log, with its OTLP sink when it asks for one (to the tracing collector).
fn start_access_log(
    settings: &config::AccessLog,
    tracing: Option<&config::Tracing>,
) -> Result<AccessLog, StartError> {
    let otlp = match (settings.otlp, tracing) {
        (false, _) => None,
        (true, Some(tracing)) => {
            Some(telemetry::trace::LogSink::start(tracing).map_err(StartError::Tracing)?)
        }
        (true, None) => {
            let why = "access_log.otlp sends the access log to the tracing collector: configure `tracing` (or OTEL_EXPORTER_OTLP_ENDPOINT)";
            return Err(StartError::Tracing(why.into()));
        }
    };
    AccessLog::start(settings, otlp).map_err(|source| StartError::AccessLog {
        path: (settings.path.as_ref()).map_or("stdout".into(), |p| p.display().to_string()),
        source,
    })
}

/// Opens and reads every file the configuration names — certificates, keys, bundles, CRLs,
/// SSH host keys and authorized_keys, the TLS files of authorizers and of the collector —
/// as a start would, binding and serving nothing (`causeway validate`). Call inside a tokio
/// runtime. The first problem, with its path.
pub fn check_files(config: &config::Config) -> Result<(), StartError> {
    reload::identities_for(config, &[], &Default::default())?;
    reload::authorizers_for(config, &[], &HashMap::new())?;
    reload::ssh_servers(config)?;
    if let Some(tracing) = &config.tracing {
        telemetry::trace::Tracer::start(tracing).map_err(StartError::Tracing)?;
    }
    Ok(())
}

impl Gateway {
    /// Binds every listener and starts serving. Must be called inside a tokio runtime.
    pub fn start(config: &config::Config) -> Result<Gateway, StartError> {
        let tracer = (config.tracing.as_ref())
            .map(telemetry::trace::Tracer::start)
            .transpose()
            .map_err(StartError::Tracing)?;
        let access_log = match &config.access_log {
            Some(settings) => Some(start_access_log(settings, config.tracing.as_ref())?),
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
                tracer,
                splice: Default::default(),
            }),
            identities: Default::default(),
            stop_health_checks: CancellationToken::new(),
            draining: AtomicBool::new(false),
            reloads: ReloadStats::default(),
            started: std::time::Instant::now(),
        };
        gateway.context.global.set(config.max_connections);
        (gateway.context.splice).store(config.relay.splice, std::sync::atomic::Ordering::Relaxed);
        if let (Some(log), Some(settings)) = (&gateway.context.access_log, &config.access_log)
            && let Some(interval) = settings.open_connections_interval
        {
            log.spawn_periodic(gateway.context.registry.clone(), interval);
        }
        let started = (|| {
            let mut state = gateway.state.lock().unwrap();
            gateway
                .identities
                .replace(identities_for(config, &[], &gateway.identities)?);
            state.clusters = gateway.clusters_for(config, &HashMap::new(), &[]);
            state.authorizers = authorizers_for(config, &[], &HashMap::new())?;
            let mut ssh = ssh_servers(config)?;
            for (l, socket) in bind_all(config.listeners.iter())? {
                let running = gateway.run_listener(
                    l,
                    socket,
                    &state.clusters,
                    &state.authorizers,
                    ssh.remove(&l.name),
                    None,
                );
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

    fn run_listener(
        &self,
        config: &config::Listener,
        bound: reload::Bound,
        clusters: &HashMap<String, Arc<Cluster>>,
        authorizers: &Authorizers,
        ssh: Option<Arc<crate::terminate::ssh::SshServer>>,
        previous: Option<&Listener>,
    ) -> RunningListener {
        let reload::Bound { socket, address } = bound;
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
        RunningListener {
            current,
            address,
            stop,
            accept_loop,
        }
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

    /// Opens the access-log file again (after logrotate moved it), before its next line.
    pub fn reopen_access_log(&self) {
        if let Some(log) = &self.context.access_log {
            log.reopen();
            tracing::info!("access log reopened");
        }
    }

    /// The live connections.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.context.registry
    }

    /// Connections being handled now, across all listeners.
    pub fn active_connections(&self) -> usize {
        self.context.connections.len()
    }
}
