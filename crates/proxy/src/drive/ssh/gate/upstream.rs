//! The upstream session of an authenticated client: registered as a live connection, the
//! cluster chosen (the route's or the authorizer's), dialed over the ordinary dial stage
//! and logged in to with the credential the gateway holds, its host key verified first.

use super::Gate;
use crate::dial::cluster::Cluster;
use crate::end::registry::{Live, Upstream};
use crate::error::{Error, Kind, Side};
use crate::route::Route;
use ssh::credentials::HostKeyPolicy;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

impl Gate {
    /// Once authenticated: registered as a live connection, then the upstream dialed and
    /// logged in to. Err: what to tell the client before disconnecting.
    pub(super) async fn connect_upstream(&mut self) -> Result<(), (Error, String)> {
        let live = self.register();
        let admitted = self.admitted.as_ref().expect("authenticated");
        let (route, routing) = (&admitted.route, admitted.routing.as_deref());
        let stats = &self.listener.stats.ssh;
        let (cluster, policy) = self.upstream_cluster(route, routing)?;
        let dialed = crate::dial::dial(
            &cluster,
            &route.config,
            &live.attributes,
            routing,
            &self.context.handshakes,
        )
        .await;
        let (leg, lease) = dialed.map_err(|error| {
            stats.upstream_failed(error.code());
            (error, "upstream unavailable".to_string())
        })?;
        // known_hosts names the SSH server: through a tunnel, where the tunnel goes (never
        // the proxy's name: a key pinned for it would be trusted for any server behind).
        let server = match &cluster.config.tunnel {
            Some(tunnel) => {
                crate::dial::tunnel_authority(tunnel, &route.config, &live.attributes, routing)
                    .map_err(|error| {
                        stats.upstream_failed(error.code());
                        (error, "upstream unavailable".to_string())
                    })?
            }
            None => lease.endpoint.address.clone(),
        };
        let (host, port) = split_host_port(&server);
        let user = upstream_user(route, routing, &live);
        let login = ssh::upstream::Login {
            host,
            port,
            user: &user,
            credential: &self.server.routes[&route.config.name].credential,
            policy,
        };
        let timeout = (cluster.config.connect_timeout).max(std::time::Duration::from_secs(10));
        let client = self.server.client.clone();
        let connected = ssh::upstream::connect(leg, login, client, timeout).await;
        live.set_upstream(Upstream {
            route: route.clone(),
            cluster: cluster.clone(),
            endpoint: lease.endpoint.clone(),
        });
        self.shared.outcome.lock().unwrap().lease = Some(lease);
        let handle = connected.map_err(|e| {
            stats.upstream_failed(e.code().into());
            tracing::warn!(id = live.attributes.id, route = %route.config.name, cluster = %cluster.name(), "ssh upstream: {e}");
            let told = match &e {
                ssh::upstream::UpstreamError::HostKeyMismatch { .. } => {
                    "the upstream server could not be verified"
                }
                _ => "upstream unavailable",
            };
            let error = Error::new(Side::Upstream, Kind::SshUpstream(e.code()));
            (error, told.to_string())
        })?;
        let (handle, gone) = handle;
        let handle = Arc::new(handle);
        self.upstream = Some(handle.clone());
        let mut outcome = self.shared.outcome.lock().unwrap();
        outcome.upstream = Some(handle);
        drop(outcome);
        // Watched: an upstream that drops the session ends the client's too, channels
        // open or not.
        let ended = self.shared.upstream_ended.clone();
        tokio::spawn(async move {
            gone.await;
            ended.cancel();
        });
        Ok(())
    }

    /// The authenticated client as a live connection: registered, counted, and handed to
    /// the connection's task (which ends it).
    fn register(&mut self) -> Arc<Live> {
        let admitted = self.admitted.as_ref().expect("authenticated");
        let route = &admitted.route;
        let live = Arc::new(Live::ssh_session(admitted.attributes.clone()));
        let registration = self.context.registry.register(live.clone());
        route.connections.fetch_add(1, Relaxed);
        (self.listener.stats.sessions).count(&route.config.name, &live.attributes, false);
        {
            let mut outcome = self.shared.outcome.lock().unwrap();
            outcome.registration = Some(registration);
            outcome.route = Some(route.clone());
        }
        self.live = Some(live.clone());
        self.shared.live.send_replace(Some(live.clone()));
        live
    }

    /// The cluster the session goes to (the route's, or the one the authorizer named) and
    /// how its host keys are verified; a cluster without host keys is never logged in to.
    fn upstream_cluster(
        &self,
        route: &Route,
        routing: Option<&authz::Routing>,
    ) -> Result<(Arc<Cluster>, Arc<HostKeyPolicy>), (Error, String)> {
        let refused = |error| (error, "no upstream for this session".to_string());
        let cluster = match routing.and_then(|r| r.cluster.as_deref()) {
            None => route.cluster.clone(),
            Some(name) => (self.listener.routes.cluster(name).cloned())
                .ok_or_else(|| refused(Error::internal(Kind::BadDynamicTarget)))?,
        };
        let Some(policy) = self.server.host_keys.get(cluster.name()).cloned() else {
            self.listener
                .stats
                .ssh
                .upstream_failed("no_host_keys".into());
            let why = format!(
                "cluster `{}` has no SSH host keys to verify",
                cluster.name()
            );
            return Err(refused(Error::internal(Kind::Ssh(why))));
        };
        Ok((cluster, policy))
    }
}

/// Who the gateway logs in as upstream: the authorizer's choice, else the route's
/// `upstream_user`, else the client's own user.
fn upstream_user(route: &Route, routing: Option<&authz::Routing>, live: &Live) -> String {
    let configured = route
        .config
        .ssh
        .as_ref()
        .and_then(|s| s.upstream_user.clone());
    (routing.and_then(|r| r.ssh_user.clone()))
        .or(configured)
        .unwrap_or_else(|| live.attributes.ssh().expect("an ssh login").user.clone())
}

fn split_host_port(address: &str) -> (&str, u16) {
    match address.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse().unwrap_or(22),
        ),
        None => (address, 22),
    }
}
