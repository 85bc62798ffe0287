//! The gRPC client of an external authorization service, filling the check request the way
//! Envoy's network ext_authz filter does for a TCP connection.

use crate::cache::Cache;
use crate::{AuthzStats, CheckInput, Routing};
use envoy_types::pb::envoy::config::core::v3::{
    Address, Metadata, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{Peer, TlsSession};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use envoy_types::pb::google::protobuf::Struct;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// What the service said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Status OK; the metadata may choose the upstream.
    Allowed(Option<Routing>),
    /// Any other status; its message.
    Denied(String),
    /// No answer: unreachable, an error status from the transport, malformed metadata.
    Failed(String),
    TimedOut,
}

pub struct ExtAuthz {
    pub config: config::Authorizer,
    client: AuthorizationClient<Channel>,
    cache: Option<Cache>,
    /// Carried over to the authorizer a reload replaces this one with, so its counters go on.
    pub stats: std::sync::Arc<AuthzStats>,
}

impl std::fmt::Debug for ExtAuthz {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtAuthz")
            .field("name", &self.config.name)
            .field("address", &self.config.address)
            .finish()
    }
}

impl ExtAuthz {
    /// Connects lazily (at the first check); must be called inside a tokio runtime. The TLS
    /// files are read here: unreadable ones stop a start or a reload. `stats`: the counts of
    /// the authorizer of the same name this one replaces (an exported counter never goes
    /// back), or none.
    pub fn new(
        config: &config::Authorizer,
        stats: Option<std::sync::Arc<AuthzStats>>,
    ) -> Result<ExtAuthz, String> {
        let fail = |e: &dyn std::fmt::Display| format!("authorizer `{}`: {e}", config.name);
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", config.address))
            .map_err(|e| fail(&e))?
            .connect_timeout(config.timeout)
            .tcp_nodelay(true);
        if let Some(tls) = &config.tls {
            endpoint = endpoint
                .tls_config(client_tls(tls).map_err(|e| fail(&e))?)
                .map_err(|e| fail(&e))?;
        }
        Ok(ExtAuthz {
            config: config.clone(),
            client: AuthorizationClient::new(endpoint.connect_lazy()),
            cache: config.cache.clone().map(Cache::new),
            stats: stats.unwrap_or_default(),
        })
    }

    /// Forgets every remembered decision (called when a reload keeps this authorizer).
    pub fn flush_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Asks the service (or the cache), bounded by the configured timeout.
    pub async fn check(&self, input: &CheckInput) -> Outcome {
        let key = (self.cache.as_ref())
            .filter(|_| input.cacheable())
            .map(|c| c.key(input));
        if let (Some(cache), Some(key)) = (&self.cache, &key)
            && let Some(outcome) = cache.get(key)
        {
            self.stats.cache_hits.fetch_add(1, Relaxed);
            self.count(&outcome);
            return outcome;
        }
        let started = Instant::now();
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(self.request(input));
        if let Some(Ok(value)) = input.traceparent.as_deref().map(str::parse) {
            request.metadata_mut().insert("traceparent", value);
        }
        let outcome = match tokio::time::timeout(self.config.timeout, client.check(request)).await {
            Err(_) => Outcome::TimedOut,
            Ok(Err(status)) => Outcome::Failed(format!("{}: {}", status.code(), status.message())),
            Ok(Ok(response)) => {
                let response = response.into_inner();
                let status = response.status.unwrap_or_default();
                if status.code == 0 {
                    match Routing::from_metadata(response.dynamic_metadata.as_ref()) {
                        Ok(routing) => Outcome::Allowed(routing),
                        Err(e) => Outcome::Failed(format!("dynamic_metadata: {e}")),
                    }
                } else {
                    Outcome::Denied(if status.message.is_empty() {
                        format!("status {}", status.code)
                    } else {
                        status.message
                    })
                }
            }
        };
        self.stats.latency.observe(started.elapsed());
        self.count(&outcome);
        if let (Some(cache), Some(key)) = (&self.cache, key)
            && matches!(outcome, Outcome::Allowed(_) | Outcome::Denied(_))
        {
            cache.put(key, &outcome);
        }
        outcome
    }

    fn count(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Allowed(_) => &self.stats.ok,
            Outcome::Denied(_) => &self.stats.denied,
            Outcome::Failed(_) => &self.stats.error,
            Outcome::TimedOut => &self.stats.timeout,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Envoy's network filter: source and destination peers (address, principal, optionally
    /// the certificate), `tls_session.sni`, `destination.service` = SNI; ours in
    /// `context_extensions` and `metadata_context.filter_metadata["causeway"]`.
    pub fn request(&self, input: &CheckInput) -> CheckRequest {
        let sni = input.sni.clone().unwrap_or_default();
        let source = Peer {
            address: input.source.map(socket_address),
            principal: input
                .peer
                .as_ref()
                .map(|p| p.principal().to_string())
                .unwrap_or_default(),
            certificate: if self.config.include_peer_certificate {
                input
                    .peer_certificate_pem
                    .as_deref()
                    .map(url_encode)
                    .unwrap_or_default()
            } else {
                String::new()
            },
            ..Default::default()
        };
        let destination = Peer {
            address: input.destination.map(socket_address),
            service: sni.clone(),
            ..Default::default()
        };
        let mut extensions: Vec<(String, String)> = vec![
            ("listener".into(), input.listener.clone()),
            ("route".into(), input.route.clone()),
        ];
        if let Some(peer) = &input.peer {
            if let Some(id) = &peer.spiffe_id {
                extensions.push(("peer_spiffe_id".into(), id.clone()));
            }
            extensions.push(("peer_subject".into(), peer.subject.clone()));
        }
        extensions.extend(input.extensions.iter().cloned());
        let metadata = Struct {
            fields: extensions
                .iter()
                .map(|(k, v)| (k.clone(), crate::metadata::string(v.clone())))
                .collect(),
        };
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(source),
                destination: Some(destination),
                context_extensions: extensions.into_iter().collect(),
                metadata_context: Some(Metadata {
                    filter_metadata: [("causeway".to_string(), metadata)].into_iter().collect(),
                    ..Default::default()
                }),
                tls_session: input
                    .sni
                    .as_ref()
                    .map(|sni| TlsSession { sni: sni.clone() }),
                ..Default::default()
            }),
        }
    }
}

/// TLS towards the service: its certificate verified with `ca` (for `server_name`, else the
/// address's host), ours presented when configured.
fn client_tls(tls: &config::AuthorizerTls) -> Result<ClientTlsConfig, String> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| format!("tls: {}: {e}", path.display()))
    };
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
    if let (Some(cert), Some(key)) = (&tls.certificate, &tls.key) {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    if let Some(name) = &tls.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

fn socket_address(address: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                address.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (as Envoy encodes the
/// PEM certificate).
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_encoding_keeps_unreserved() {
        assert_eq!(
            super::url_encode("-----BEGIN a+b/c=\n"),
            "-----BEGIN%20a%2Bb%2Fc%3D%0A"
        );
    }
}
