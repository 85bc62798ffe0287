//! A cluster: endpoints grouped by priority, a load-balancing policy inside a priority,
//! active health checks, passive ejection, and failover/failback between priorities.

mod balancer;
mod connect;
mod endpoint;
mod health;
mod metrics;

pub use metrics::LiveBytes;

pub use endpoint::{Endpoint, EndpointStats, Lease};

use crate::error::{Error, Kind, Side};
use crate::relay::Leg;
use crate::socket;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use telemetry::trace::Span;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct Cluster {
    pub config: config::Cluster,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Endpoint indexes grouped by priority, most preferred group first.
    levels: Vec<Vec<usize>>,
    balancer: balancer::Balancer,
    /// TLS towards the endpoints, when the cluster originates it.
    pub tls: Option<tls::Origination>,
    /// HTTP/2 connections to the endpoints, when they are tunnel proxies.
    pub tunnels: Arc<crate::dial::tunnel::Pool>,
    /// How long the TCP connects that succeeded took.
    pub connect_latency: telemetry::histogram::Histogram,
    /// Bumped on every health transition, so waiters need no polling.
    health_generation: watch::Sender<u64>,
    stop: CancellationToken,
    recovered: Recovered,
}

/// Told when an endpoint of a cluster becomes healthy again (failback acts on it; the
/// cluster itself knows no connection).
#[derive(Clone)]
pub struct Recovered(pub Arc<OnRecovery>);

pub type OnRecovery = dyn Fn(&Cluster, &Endpoint) + Send + Sync;

impl Recovered {
    /// Nobody to tell (tests, tools).
    pub fn ignore() -> Self {
        Recovered(Arc::new(|_, _| {}))
    }
}

impl std::fmt::Debug for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recovered")
    }
}

impl Cluster {
    /// Builds the cluster and starts its health checks (they end with `stop`); `recovered`
    /// hears of every endpoint that becomes healthy again. An endpoint whose address the
    /// cluster it `replaces` had counts on from that one's counts.
    pub fn start(
        config: &config::Cluster,
        stop: CancellationToken,
        recovered: Recovered,
        identities: &Arc<tls::Identities>,
        replaces: Option<&Cluster>,
    ) -> Arc<Self> {
        let counted = |address: &str| {
            let previous = replaces?.endpoints.iter().find(|e| e.address == address)?;
            Some(previous.stats.clone())
        };
        let endpoints: Vec<Arc<Endpoint>> = (config.endpoints.iter())
            .map(|e| Arc::new(Endpoint::new(e, counted(&e.address))))
            .collect();
        let mut priorities: Vec<u32> = endpoints.iter().map(|e| e.priority).collect();
        priorities.sort_unstable();
        priorities.dedup();
        let levels = priorities
            .iter()
            .map(|p| {
                (0..endpoints.len())
                    .filter(|&i| endpoints[i].priority == *p)
                    .collect()
            })
            .collect();
        let cluster = Arc::new(Cluster {
            config: config.clone(),
            endpoints,
            levels,
            balancer: balancer::Balancer::new(config.load_balancing),
            tls: config
                .tls
                .as_ref()
                .map(|t| tls::Origination::new(t, identities)),
            tunnels: Default::default(),
            connect_latency: telemetry::histogram::Histogram::new(telemetry::histogram::LATENCY),
            health_generation: watch::Sender::new(0),
            stop,
            recovered,
        });
        if let Some(check) = &config.health_check {
            for index in 0..cluster.endpoints.len() {
                tokio::spawn(health::run(
                    cluster.clone(),
                    index,
                    check.clone(),
                    cluster.stop.clone(),
                ));
            }
        }
        cluster
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Failed over: no endpoint of the most preferred priority can take a connection, and a
    /// less preferred one exists.
    pub fn failed_over(&self) -> bool {
        let preferred_down = (self.levels.first())
            .is_some_and(|level| level.iter().all(|i| !self.endpoints[*i].is_available()));
        preferred_down && self.levels.len() > 1
    }

    pub fn endpoint(&self, address: &str) -> Option<&Arc<Endpoint>> {
        self.endpoints.iter().find(|e| e.address == address)
    }

    /// Changes on every health transition of any endpoint of this cluster.
    pub fn health_changes(&self) -> watch::Receiver<u64> {
        self.health_generation.subscribe()
    }

    /// Stops the health checks.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub(crate) fn health_changed(&self, index: usize, healthy: bool) {
        let endpoint = &self.endpoints[index];
        endpoint.set_healthy(healthy);
        endpoint.stats.health_transitions.fetch_add(1, Relaxed);
        tracing::warn!(
            cluster = %self.config.name,
            endpoint = %endpoint.address,
            priority = endpoint.priority,
            healthy,
            "endpoint health changed"
        );
        if healthy {
            (self.recovered.0)(self, endpoint);
        }
        self.health_generation.send_modify(|g| *g += 1);
    }

    /// The next endpoint to try: an available one of the most preferred priority that has
    /// one, chosen by the balancer; when none is available anywhere, the untried ones in
    /// priority order anyway (health checks can be wrong; refusing outright never helps).
    fn pick(&self, tried: &[usize]) -> Option<usize> {
        for level in &self.levels {
            let eligible = |i: &usize| !tried.contains(i) && self.endpoints[*i].is_available();
            if let Some(i) = self.balancer.choose(level, &self.endpoints, eligible) {
                return Some(i);
            }
        }
        self.levels
            .iter()
            .flatten()
            .copied()
            .find(|i| !tried.contains(i))
    }

    /// Dials an endpoint, moving on to the next one on failure, at most `connect_attempts`
    /// times.
    pub async fn connect(&self) -> Result<(TcpStream, Lease), Error> {
        self.connect_traced(None).await
    }

    /// [`Self::connect`], each failed attempt an event of `span` (retries and failover seen
    /// in the connection's trace).
    pub async fn connect_traced(
        &self,
        mut span: Option<&mut Span>,
    ) -> Result<(TcpStream, Lease), Error> {
        let attempts = self.config.connect_attempts as usize;
        let mut tried = Vec::with_capacity(attempts.min(self.endpoints.len()));
        let mut last = String::from("no endpoint");
        while tried.len() < attempts {
            let Some(index) = self.pick(&tried) else {
                break;
            };
            tried.push(index);
            let endpoint = &self.endpoints[index];
            endpoint.stats.connect_attempts.fetch_add(1, Relaxed);
            let started = std::time::Instant::now();
            let outcome =
                tokio::time::timeout(self.config.connect_timeout, connect::connect(endpoint)).await;
            let failure = match outcome {
                Ok(Ok(stream)) => {
                    self.connect_latency.observe(started.elapsed());
                    endpoint.connect_succeeded();
                    if let Err(e) = socket::apply(&stream, &self.config.socket) {
                        tracing::debug!(endpoint = %endpoint.address, error = %e, "socket options");
                    }
                    return Ok((stream, Lease::new(endpoint.clone())));
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("timed out after {:?}", self.config.connect_timeout),
            };
            if let Some(span) = span.as_deref_mut() {
                span.event(
                    "connect_failed",
                    vec![
                        ("server.address", endpoint.address.clone().into()),
                        (
                            "causeway.endpoint.priority",
                            u64::from(endpoint.priority).into(),
                        ),
                        ("causeway.error", failure.clone().into()),
                    ],
                );
            }
            last = format!("{}: {failure}", endpoint.address);
            tracing::debug!(cluster = %self.config.name, error = %last, "connect failed");
            if endpoint.connect_failed(self.config.passive_ejection.as_ref()) {
                tracing::warn!(
                    cluster = %self.config.name,
                    endpoint = %endpoint.address,
                    "endpoint ejected after consecutive connect failures"
                );
            }
        }
        Err(Error::new(
            Side::Upstream,
            Kind::ConnectFailed {
                attempts: tried.len() as u32,
                last,
            },
        ))
    }

    /// Dials an address an authorizer chose, with this cluster's settings, if the route's
    /// `dynamic_targets` allow it.
    pub async fn connect_to(
        &self,
        address: &str,
        authorization: Option<&config::Authorization>,
    ) -> Result<(TcpStream, Lease), Error> {
        let allowed = address.parse().is_ok_and(|target| {
            authorization
                .and_then(|a| a.dynamic_targets.as_ref())
                .is_some_and(|t| t.allows(target))
        });
        if !allowed {
            tracing::warn!(cluster = %self.config.name, target = address, "the authorizer chose an address outside the route's dynamic_targets");
            return Err(Error::internal(Kind::BadDynamicTarget));
        }
        self.dial(address).await
    }

    /// Dials `host:port` (resolved now) with this cluster's timeout and socket options,
    /// outside its endpoints (for a destination chosen per connection).
    pub async fn dial(&self, address: &str) -> Result<(TcpStream, Lease), Error> {
        let endpoint = Arc::new(Endpoint::new(
            &config::Endpoint {
                address: address.to_string(),
                priority: 0,
            },
            None,
        ));
        let failed =
            |last: String| Error::new(Side::Upstream, Kind::ConnectFailed { attempts: 1, last });
        let stream = tokio::time::timeout(self.config.connect_timeout, connect::connect(&endpoint))
            .await
            .map_err(|_| failed(format!("{address}: timed out")))?
            .map_err(|e| failed(format!("{address}: {e}")))?;
        if let Err(e) = socket::apply(&stream, &self.config.socket) {
            tracing::debug!(target = address, error = %e, "socket options");
        }
        Ok((stream, Lease::new(endpoint)))
    }

    /// The upstream leg over a connected socket: the PROXY `header` first when there is
    /// one, then TLS when the cluster originates it (the SNI sent may be the client's), else
    /// the socket itself.
    pub async fn originate(
        &self,
        mut stream: TcpStream,
        header: Option<Vec<u8>>,
        downstream_sni: Option<&str>,
        handshakes: &tls::HandshakeStats,
    ) -> Result<Leg, Error> {
        if let Some(header) = header {
            use tokio::io::AsyncWriteExt;
            stream
                .write_all(&header)
                .await
                .map_err(|e| Error::io(Side::Upstream, &e))?;
        }
        let Some(origination) = &self.tls else {
            return Ok(Leg::Plain(stream));
        };
        let peer = stream
            .peer_addr()
            .map_err(|e| Error::io(Side::Upstream, &e))?;
        let name = origination.server_name(downstream_sni, peer);
        let connector = tokio_rustls::TlsConnector::from(origination.config.clone());
        let handshake = tokio::time::timeout(
            origination.handshake_timeout,
            connector.connect(name, stream),
        );
        let started = std::time::Instant::now();
        let reason = match handshake.await {
            Ok(Ok(tls)) => {
                handshakes.succeeded("upstream", started.elapsed());
                return Ok(Leg::Tls(Box::new(tls.into())));
            }
            Ok(Err(e)) => tls::failure_reason(&e),
            Err(_) => "timeout",
        };
        handshakes.record("upstream", reason);
        Err(Error::new(Side::Upstream, Kind::Tls(reason)))
    }
}
