//! Reload: a new configuration applied to new connections by `config::diff`, leaving live
//! connections, unchanged sockets and unchanged clusters (with their health) alone; nothing
//! changes unless everything that can fail (binding, reading files) succeeded first.

use super::{Authorizers, Gateway, RunningListener, StartError};
use crate::accept;
use crate::accept::Listener;
use crate::dial::cluster::Cluster;
use crate::route::RouteTable;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
    last: std::sync::Mutex<Option<LastReload>>,
}

/// The last reload's outcome, for the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastReload {
    /// Seconds since the Unix epoch.
    pub at: u64,
    pub ok: bool,
    /// What changed, or why it was refused.
    pub detail: String,
}

impl ReloadStats {
    /// Counts a reload and keeps its outcome.
    pub fn record(&self, outcome: Result<&ReloadSummary, &str>) {
        let counter = if outcome.is_ok() {
            &self.ok
        } else {
            &self.failed
        };
        counter.fetch_add(1, Relaxed);
        let detail = match outcome {
            Ok(summary) => serde_json::to_string(summary).unwrap_or_default(),
            Err(why) => why.to_string(),
        };
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        *self.last.lock().unwrap() = Some(LastReload {
            at,
            ok: outcome.is_ok(),
            detail,
        });
    }

    pub fn last(&self) -> Option<LastReload> {
        self.last.lock().unwrap().clone()
    }
}

/// Running listeners by name.
type Listeners = HashMap<String, RunningListener>;
/// Running listeners in configuration order.
type InOrder = Vec<(String, RunningListener)>;

/// What the new listeners are built from.
struct Next<'a> {
    clusters: &'a HashMap<String, Arc<Cluster>>,
    authorizers: &'a super::Authorizers,
    ssh: HashMap<String, Arc<crate::terminate::ssh::SshServer>>,
}

impl Gateway {
    /// Applies a new configuration to new connections. Live connections keep their upstream;
    /// listeners whose socket settings did not change keep their socket (no connection
    /// attempt is refused); new listeners are bound before anything else changes, so a
    /// reload that cannot bind changes nothing. Removed listeners stop accepting and their
    /// live connections drain. Unchanged clusters keep their health state.
    pub fn reload(&self, config: &config::Config) -> Result<ReloadSummary, StartError> {
        let result = self.apply(config);
        match &result {
            Ok(summary) => {
                self.reloads.record(Ok(summary));
                tracing::info!(?summary, "configuration reloaded");
            }
            Err(e) => {
                self.reloads.record(Err(&e.to_string()));
                tracing::error!("reload failed, the previous configuration stays: {e}");
            }
        }
        result
    }

    fn apply(&self, config: &config::Config) -> Result<ReloadSummary, StartError> {
        let mut state = self.state.lock().unwrap();
        // What changes, by name: computed once, without touching a socket.
        let diff = config::diff(&state.config, config);
        for setting in &diff.restart_required {
            tracing::warn!(
                setting,
                "a change of `{setting}` takes effect at the next restart"
            );
        }
        // First everything that can fail: binding new and changed listeners, reading files.
        let changes = &diff.listeners;
        let needs_socket = |l: &&config::Listener| {
            changes.added.contains(&l.name) || changes.rebound.contains(&l.name)
        };
        let bound = bind_all(config.listeners.iter().filter(needs_socket))?;
        let identities = identities_for(config, &diff.identities.unchanged, &self.identities)?;
        let authorizers = authorizers_for(config, &diff.authorizers.unchanged, &state.authorizers)?;
        let ssh = ssh_servers(config)?;

        // Nothing fails from here on: the new configuration applies whole, or not at all.
        for retired in self.identities.replace(identities) {
            retired.stop();
        }
        let mut summary = ReloadSummary {
            clusters_added: diff.clusters.added.clone(),
            clusters_replaced: diff.clusters.replaced.clone(),
            clusters_removed: diff.clusters.removed.clone(),
            ..Default::default()
        };
        let clusters = self.swap_clusters(&state.clusters, config, &diff);
        let old = state.listeners.drain(..).collect();
        let new = Next {
            clusters: &clusters,
            authorizers: &authorizers,
            ssh,
        };
        let (listeners, old) = self.swap_listeners(config, old, bound, new, &mut summary);
        for (name, old) in old {
            self.retire_listener(&name, old, config);
            summary.listeners_removed.push(name);
        }
        self.context.global.set(config.max_connections);
        (self.context.splice).store(config.relay.splice, Relaxed);
        state.listeners = listeners;
        state.clusters = clusters;
        state.authorizers = authorizers;
        state.config = config.clone();
        Ok(summary)
    }

    /// The clusters of the new configuration (unchanged ones kept); the retired ones stop,
    /// and their connections drain when the configuration says so.
    fn swap_clusters(
        &self,
        old: &HashMap<String, Arc<Cluster>>,
        config: &config::Config,
        diff: &config::Diff,
    ) -> HashMap<String, Arc<Cluster>> {
        let clusters = self.clusters_for(config, old, &diff.clusters.unchanged);
        let retired: Vec<Arc<Cluster>> = old
            .iter()
            .filter(|(name, old)| !clusters.get(*name).is_some_and(|new| Arc::ptr_eq(new, old)))
            .map(|(_, old)| old.clone())
            .collect();
        for cluster in &retired {
            cluster.stop();
        }
        if config.reload.removed_cluster_connections == config::RemovedConnections::Close
            && !retired.is_empty()
        {
            self.drain_connections(config.drain.clone(), move |live| {
                live.upstream()
                    .is_some_and(|u| retired.iter().any(|c| Arc::ptr_eq(c, &u.cluster)))
            });
        }
        clusters
    }

    /// Every listener of the new configuration: an unchanged socket gets the new settings
    /// for its new connections, a new or rebound one a new accept loop. Returns them, and
    /// the old listeners no longer configured.
    fn swap_listeners(
        &self,
        config: &config::Config,
        mut old: Listeners,
        bound: Vec<(&config::Listener, Bound)>,
        mut new: Next<'_>,
        summary: &mut ReloadSummary,
    ) -> (InOrder, Listeners) {
        let mut bound: HashMap<&str, Bound> = bound
            .into_iter()
            .map(|(l, s)| (l.name.as_str(), s))
            .collect();
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let ssh = new.ssh.remove(&l.name);
            let running = match (old.remove(&l.name), bound.remove(l.name.as_str())) {
                (Some(old), None) => {
                    let previous = old.current.borrow().clone();
                    let state = listener_state(
                        l,
                        new.clusters,
                        &self.identities,
                        new.authorizers,
                        ssh,
                        Some(&previous),
                    );
                    old.current.send_replace(Arc::new(state));
                    summary.listeners_updated.push(l.name.clone());
                    old
                }
                (old, Some(socket)) => {
                    let previous = old.as_ref().map(|o| o.current.borrow().clone());
                    match old {
                        Some(old) => {
                            old.stop.cancel();
                            summary.listeners_rebound.push(l.name.clone());
                        }
                        None => summary.listeners_added.push(l.name.clone()),
                    }
                    let (clusters, authorizers) = (new.clusters, new.authorizers);
                    self.run_listener(l, socket, clusters, authorizers, ssh, previous.as_deref())
                }
                (None, None) => unreachable!("a new listener is always bound"),
            };
            listeners.push((l.name.clone(), running));
        }
        (listeners, old)
    }

    /// A listener no longer configured: it stops accepting, and its connections (those
    /// accepted until now) get the drain window, then close.
    fn retire_listener(&self, name: &str, old: RunningListener, config: &config::Config) {
        old.stop.cancel();
        tracing::info!(listener = %name, "listener removed: stopped accepting; its connections drain");
        let registry = &self.context.registry;
        let newest = registry.snapshot().last().map_or(0, |l| l.attributes.id);
        let listener_name = name.to_string();
        self.drain_connections(config.drain.clone(), move |live| {
            *live.attributes.listener == *listener_name && live.attributes.id <= newest
        });
    }

    /// The clusters for `config`: an old cluster the diff finds `unchanged` is kept (with
    /// its health state); the others are started.
    pub(super) fn clusters_for(
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
                        let replaces = old.get(&c.name).map(|o| &**o);
                        Cluster::start(c, stop, recovered, &self.identities, replaces)
                    }
                };
                (c.name.clone(), cluster)
            })
            .collect()
    }
}

/// The identities for `config`: one the diff finds `unchanged` keeps running (with its
/// material); others are started (files read now: an unusable file fails the start or
/// reload).
pub(super) fn identities_for(
    config: &config::Config,
    unchanged: &[String],
    running: &tls::Identities,
) -> Result<HashMap<String, Arc<tls::Identity>>, StartError> {
    config
        .identities
        .iter()
        .map(|i| {
            let identity = match running.get(&i.name) {
                Some(existing) if unchanged.contains(&i.name) => existing,
                _ => tls::start_identity(i).map_err(|source| StartError::Identity {
                    name: i.name.clone(),
                    source,
                })?,
            };
            Ok((i.name.clone(), identity))
        })
        .collect()
}

/// The authorization services for `config`: those the diff finds `unchanged` are kept
/// (their connection and counts; their decision cache is emptied), others are created
/// (they connect at their first check), with the counts of the one they replace.
pub(super) fn authorizers_for(
    config: &config::Config,
    unchanged: &[String],
    running: &Authorizers,
) -> Result<Authorizers, StartError> {
    config
        .authorizers
        .iter()
        .map(|a| {
            let authorizer = match running.get(&a.name) {
                Some(existing) if unchanged.contains(&a.name) => {
                    existing.flush_cache(); // a reload may change who is allowed
                    existing.clone()
                }
                replaced => {
                    let stats = replaced.map(|r| r.stats.clone());
                    Arc::new(authz::ExtAuthz::new(a, stats).map_err(StartError::Authorizer)?)
                }
            };
            Ok((a.name.clone(), authorizer))
        })
        .collect()
}

pub(super) async fn futures_ready(identities: &[Arc<tls::Identity>]) {
    for identity in identities {
        identity.ready().await;
    }
}

/// A listener's settings for new connections; counters continue from `previous`.
pub(super) fn listener_state(
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
pub(super) fn ssh_servers(
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
/// A listening socket, bound and registered with the runtime: all that can fail about a
/// listener is done before anything changes.
pub(super) struct Bound {
    pub socket: tokio::net::TcpListener,
    pub address: std::net::SocketAddr,
}

pub(super) fn bind_all<'a>(
    listeners: impl Iterator<Item = &'a config::Listener>,
) -> Result<Vec<(&'a config::Listener, Bound)>, StartError> {
    listeners
        .map(|l| {
            let error = |source| StartError::Bind {
                listener: l.name.clone(),
                address: l.address,
                source,
            };
            let socket = accept::bind(l).map_err(error)?;
            let socket = tokio::net::TcpListener::from_std(socket).map_err(error)?;
            let address = socket.local_addr().map_err(error)?;
            Ok((l, Bound { socket, address }))
        })
        .collect()
}
