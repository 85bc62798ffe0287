//! Matching a connection's attributes against a listener's routes, in order.

use crate::attributes::{Attributes, Tls};
use crate::dial::cluster::Cluster;
use config::RouteMatch;
use std::collections::HashMap;
use std::sync::Arc;

/// A route with its cluster resolved.
#[derive(Debug)]
pub struct Route {
    pub config: config::Route,
    pub cluster: Arc<Cluster>,
    /// Set when the route terminates TLS.
    pub terminate: Option<Arc<rustls::ServerConfig>>,
    /// The external authorization service the route asks.
    pub authorizer: Option<Arc<authz::ExtAuthz>>,
    /// Connections this route has taken (this version of it: a reload starts a new count).
    pub connections: std::sync::atomic::AtomicU64,
    /// How its connections ended; shared by every version of the route across reloads.
    pub ended: Arc<Ended>,
}

/// How a route's connections ended: how long they lived, and why they closed.
#[derive(Debug)]
pub struct Ended {
    pub lifetimes: telemetry::histogram::Histogram,
    /// By close reason (`closed`, `idle_timeout`, `upstream_reset`...). A lock per closed
    /// connection, never per byte.
    by_reason: std::sync::Mutex<HashMap<String, u64>>,
}

impl Default for Ended {
    fn default() -> Self {
        Ended {
            lifetimes: telemetry::histogram::Histogram::new(telemetry::histogram::LIFETIME),
            by_reason: Default::default(),
        }
    }
}

impl Ended {
    /// A connection ended for `reason`, after living `lived` (`None`: refused before it
    /// was registered, not timed).
    pub fn record(&self, reason: &str, lived: Option<std::time::Duration>) {
        if let Some(lived) = lived {
            self.lifetimes.observe(lived);
        }
        let mut counts = self.by_reason.lock().unwrap_or_else(|e| e.into_inner());
        match counts.get_mut(reason) {
            Some(n) => *n += 1,
            None => {
                counts.insert(reason.to_string(), 1);
            }
        }
    }

    fn by_reason(&self) -> Vec<(String, u64)> {
        let counts = self.by_reason.lock().unwrap_or_else(|e| e.into_inner());
        counts.iter().map(|(r, n)| (r.clone(), *n)).collect()
    }
}

#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    /// Every cluster, for an authorizer that names one.
    clusters: HashMap<String, Arc<Cluster>>,
}

impl RouteTable {
    /// Resolves each route's cluster by name; validation has made sure they exist. A route
    /// named as one of `previous` continues its connection count.
    pub fn new(
        routes: &[config::Route],
        clusters: &HashMap<String, Arc<Cluster>>,
        identities: &Arc<tls::Identities>,
        authorizers: &HashMap<String, Arc<authz::ExtAuthz>>,
        previous: Option<&RouteTable>,
    ) -> Self {
        let count_before = |name: &str| {
            previous
                .and_then(|p| p.routes.iter().find(|r| r.config.name == name))
                .map_or(0, |r| {
                    r.connections.load(std::sync::atomic::Ordering::Relaxed)
                })
        };
        let ended_before = |name: &str| {
            previous
                .and_then(|p| p.routes.iter().find(|r| r.config.name == name))
                .map_or_else(Default::default, |r| r.ended.clone())
        };
        let routes = routes
            .iter()
            .map(|r| {
                Arc::new(Route {
                    config: r.clone(),
                    cluster: clusters[&r.cluster].clone(),
                    terminate: r
                        .terminate
                        .as_ref()
                        .map(|t| tls::server_config(t, identities)),
                    authorizer: r
                        .authorization
                        .as_ref()
                        .and_then(|a| a.ext_authz.as_ref())
                        .map(|name| authorizers[name].clone()),
                    connections: count_before(&r.name).into(),
                    ended: ended_before(&r.name),
                })
            })
            .collect();
        RouteTable {
            routes,
            clusters: clusters.clone(),
        }
    }

    /// A cluster by name (any of the gateway's, not only this table's).
    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name)
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The first route whose conditions all hold.
    pub fn find(&self, attributes: &Attributes) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .find(|r| matches(&r.config.matcher, attributes))
    }

    /// Before a FIX Logon inside TLS can be read: the first route that may match once it is
    /// (its FIX conditions set aside), for its TLS settings.
    pub fn find_before_logon(&self, attributes: &Attributes) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| {
            let mut m = r.config.matcher.clone();
            m.fix = None;
            matches(&m, attributes)
        })
    }
}

fn matches(m: &RouteMatch, a: &Attributes) -> bool {
    (m.destination_ports.is_empty() || m.destination_ports.contains(&a.destination.port()))
        && (m.source_cidrs.is_empty()
            || m.source_cidrs
                .iter()
                .any(|cidr| cidr.contains(&canonical(a.source.ip()))))
        && m.tls
            .is_none_or(|tls| tls == matches!(a.tls, Tls::Hello(_)))
        && (m.sni.is_empty()
            || a.tls
                .hello()
                .and_then(|h| h.sni.as_deref())
                .is_some_and(|sni| m.sni.iter().any(|p| config::name_matches(p, sni))))
        && (m.alpn.is_empty()
            || a.tls
                .hello()
                .is_some_and(|h| h.alpn.iter().any(|offered| m.alpn.contains(offered))))
        && m.fix
            .as_ref()
            .is_none_or(|f| a.fix().is_some_and(|logon| f.matches(logon)))
        && m.mq.as_ref().is_none_or(|q| {
            a.mq()
                .is_some_and(|mq| q.matches(Some(&mq.channel), mq.queue_manager.as_deref()))
        })
        && m.ssh.as_ref().is_none_or(|s| {
            a.ssh()
                .is_some_and(|login| s.matches(&login.user, login.target.as_deref()))
        })
}

/// An IPv4 client on a dual-stack socket shows up as `::ffff:a.b.c.d`; match it as IPv4.
pub(crate) fn canonical(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

impl RouteTable {
    /// Connections each route took.
    pub(crate) fn report(&self, listener: &str, out: &mut telemetry::Out<'_>) {
        for route in self.routes() {
            let labels = vec![
                ("listener", listener.to_string()),
                ("route", route.config.name.clone()),
            ];
            let total = route.connections.load(std::sync::atomic::Ordering::Relaxed);
            out.counter("causeway_route_connections_total", labels.clone(), total);
            for (reason, count) in route.ended.by_reason() {
                let mut labels = labels.clone();
                labels.push(("reason", reason));
                out.counter("causeway_connections_closed_total", labels, count);
            }
            let name = "causeway_connection_duration_seconds";
            out.histogram(name, labels, &route.ended.lifetimes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(source: &str, destination: &str) -> Attributes {
        Attributes {
            id: 1,
            listener: "l".into(),
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
            tls: Tls::NotInspected,
            session: None,
            proxy: None,
            authz: None,
            protocol: None,
            span: Default::default(),
        }
    }

    #[test]
    fn all_conditions_must_hold() {
        let m = RouteMatch {
            destination_ports: vec![10000, 10001],
            source_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        assert!(matches(&m, &attrs("10.1.2.3:5000", "127.0.0.1:10001")));
        assert!(!matches(&m, &attrs("11.1.2.3:5000", "127.0.0.1:10001")));
        assert!(!matches(&m, &attrs("10.1.2.3:5000", "127.0.0.1:10002")));
        assert!(matches(
            &RouteMatch::default(),
            &attrs("[::1]:1", "[::1]:2")
        ));
    }

    #[test]
    fn tls_conditions() {
        let m = RouteMatch {
            sni: vec!["echo.causeway.test".into()],
            alpn: vec!["h2".into()],
            ..Default::default()
        };
        let mut a = attrs("127.0.0.1:1", "127.0.0.1:2");
        assert!(!matches(&m, &a), "not inspected: no sni");
        a.tls = Tls::Hello(Box::new(protocols::tls::ClientHello {
            sni: Some("echo.causeway.test".into()),
            alpn: vec!["http/1.1".into(), "h2".into()],
        }));
        assert!(matches(&m, &a));
        let plain = RouteMatch {
            tls: Some(false),
            ..Default::default()
        };
        assert!(!matches(&plain, &a));
        a.tls = Tls::NotTls;
        assert!(matches(&plain, &a));
    }

    #[test]
    fn mapped_ipv4_matches_ipv4_cidr() {
        let m = RouteMatch {
            destination_ports: vec![],
            source_cidrs: vec!["192.168.0.0/16".parse().unwrap()],
            ..Default::default()
        };
        assert!(matches(&m, &attrs("[::ffff:192.168.1.1]:5000", "[::]:1")));
    }
}
