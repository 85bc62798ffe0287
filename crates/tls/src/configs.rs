//! rustls configurations from Causeway's configuration: one server config per terminating
//! route, one client config per cluster that originates TLS. Both read their identities'
//! current material at each handshake, so they are built once and survive rotations.

use crate::material::provider;
use crate::source::Identity;
use crate::verify::{ClientVerifier, ServerVerifier};
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig, SignatureScheme, SupportedProtocolVersion};
use rustls_pki_types::ServerName;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The gateway's identities by name. Configurations look their identities up at each
/// handshake, so a reload that replaces an identity needs no new configuration.
#[derive(Debug, Default)]
pub struct Identities {
    by_name: RwLock<HashMap<String, Arc<Identity>>>,
}

impl Identities {
    pub fn get(&self, name: &str) -> Option<Arc<Identity>> {
        self.by_name.read().unwrap().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Identity>> {
        let mut all: Vec<_> = self.by_name.read().unwrap().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Puts `identities` in place of the current set; returns the ones no longer used.
    pub fn replace(&self, identities: HashMap<String, Arc<Identity>>) -> Vec<Arc<Identity>> {
        let old = std::mem::replace(&mut *self.by_name.write().unwrap(), identities);
        let now = self.by_name.read().unwrap();
        old.into_values()
            .filter(|o| !now.values().any(|n| Arc::ptr_eq(n, o)))
            .collect()
    }
}

/// An identity referred to by name, resolved when used.
#[derive(Debug, Clone)]
pub(crate) struct Named {
    store: Arc<Identities>,
    pub name: Arc<str>,
}

impl Named {
    fn new(store: &Arc<Identities>, name: &str) -> Named {
        Named {
            store: store.clone(),
            name: name.into(),
        }
    }

    pub fn current(&self) -> Option<Arc<crate::Material>> {
        self.store.get(&self.name).and_then(|i| i.current())
    }
}

fn versions(min: config::TlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    static TLS13_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min {
        config::TlsVersion::Tls12 => rustls::ALL_VERSIONS,
        config::TlsVersion::Tls13 => &TLS13_ONLY,
    }
}

/// The server side of a terminating route.
pub fn server_config(t: &config::Terminate, identities: &Arc<Identities>) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(server_provider())
        .with_protocol_versions(versions(t.min_version))
        .expect("the provider supports TLS 1.2 and 1.3");
    let builder = match (&t.trust, t.client_certificate) {
        (Some(trust), mode) if mode != config::ClientCertificate::None => builder
            .with_client_cert_verifier(Arc::new(ClientVerifier {
                trust: Named::new(identities, trust),
                // An allow-list is never passed by sending no certificate at all.
                mandatory: mode == config::ClientCertificate::Required
                    || t.allowed_clients.is_some(),
                allowed: t.allowed_clients.clone(),
            })),
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver {
        identities: t
            .identities
            .iter()
            .map(|n| Named::new(identities, n))
            .collect(),
    }));
    config.alpn_protocols = t.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    config.ignore_client_order = true;
    if t.client_certificate != config::ClientCertificate::None {
        // A resumed session skips the client verifier: a rotated bundle, a new CRL or an
        // expired certificate would never stop a client that resumes. Full handshakes only.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    } else {
        // Stateless tickets: any number of clients resume (a server-side cache holds 256),
        // and across reloads, since every route shares the process's ticket keys. One
        // ticket per handshake: a resuming client gets the next one each time.
        config.ticketer = ticketer();
        config.send_tls13_tickets = 1;
    }
    Arc::new(config)
}

/// The provider of terminating routes: its suites in the server's order of choice, AES-128-GCM
/// first (TLS 1.3's mandatory suite, as BoringSSL chooses): its key schedule runs on SHA-256,
/// which CPUs accelerate, where AES-256-GCM's SHA-384 runs in software on many (a resumed
/// handshake spent 15 % of its time there). AES-256-GCM and ChaCha20-Poly1305 follow.
fn server_provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::CipherSuite as C;
    let mut provider = (*provider()).clone();
    let aes_128 = |suite: &rustls::SupportedCipherSuite| {
        matches!(
            suite.suite(),
            C::TLS13_AES_128_GCM_SHA256
                | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    };
    provider.cipher_suites.sort_by_key(|suite| !aes_128(suite));
    Arc::new(provider)
}

/// The process's session-ticket keys, shared by every terminating route: tickets encrypted
/// and authenticated (AES-256, HMAC-SHA256), keys rotated by rustls every 6 hours (the
/// previous key still opens tickets for one more period). A resumed TLS 1.3 handshake still runs a fresh key exchange (psk_dhe_ke):
/// a stolen ticket key does not open recorded traffic.
fn ticketer() -> Arc<dyn rustls::server::ProducesTickets> {
    static TICKETER: std::sync::OnceLock<Arc<dyn rustls::server::ProducesTickets>> =
        std::sync::OnceLock::new();
    TICKETER
        .get_or_init(|| {
            rustls::crypto::aws_lc_rs::Ticketer::new().expect("the system's random generator")
        })
        .clone()
}

/// Picks the certificate whose DNS names match the client's SNI; the first one otherwise.
#[derive(Debug)]
struct SniResolver {
    identities: Vec<Named>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current: Vec<_> = self.identities.iter().filter_map(|i| i.current()).collect();
        let names = |m: &crate::Material| {
            m.leaf
                .as_ref()
                .map(|l| l.identity.dns_names.clone())
                .unwrap_or_default()
        };
        let chosen = hello
            .server_name()
            .and_then(|sni| {
                current
                    .iter()
                    .find(|m| names(m).iter().any(|n| config::name_matches(n, sni)))
            })
            .or_else(|| current.iter().find(|m| m.certified.is_some()));
        let certified = chosen.and_then(|m| m.certified.clone());
        if certified.is_none() {
            tracing::warn!(sni = ?hello.server_name(), "no certificate loaded to present");
        }
        certified
    }
}

/// TLS towards a cluster's endpoints.
#[derive(Debug)]
pub struct Origination {
    pub config: Arc<ClientConfig>,
    server_name: Option<String>,
    forward_sni: bool,
    pub handshake_timeout: Duration,
}

impl Origination {
    pub fn new(t: &config::UpstreamTls, identities: &Arc<Identities>) -> Origination {
        let verifier = ServerVerifier {
            trust: Named::new(identities, &t.trust),
            spiffe_ids: t.verify_spiffe_ids.clone(),
            dns_name: t
                .verify_dns_name
                .as_ref()
                .and_then(|n| ServerName::try_from(n.clone()).ok()),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(t.min_version))
            .expect("the provider supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match &t.identity {
            Some(name) => builder.with_client_cert_resolver(Arc::new(ClientCertificate {
                identity: Named::new(identities, name),
            })),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = t.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Origination {
            config: Arc::new(config),
            server_name: t.server_name.clone(),
            forward_sni: t.forward_sni,
            handshake_timeout: t.handshake_timeout,
        }
    }

    /// The name to send as SNI: the client's when forwarding it, else the configured one;
    /// with neither, the endpoint's address (no SNI is sent for an address).
    pub fn server_name(
        &self,
        downstream_sni: Option<&str>,
        endpoint: SocketAddr,
    ) -> ServerName<'static> {
        let name = match downstream_sni {
            Some(sni) if self.forward_sni => Some(sni),
            _ => self.server_name.as_deref(),
        };
        name.and_then(|n| ServerName::try_from(n.to_string()).ok())
            .unwrap_or_else(|| ServerName::IpAddress(endpoint.ip().into()))
    }
}

/// Our client certificate for mTLS, current at each handshake.
#[derive(Debug)]
struct ClientCertificate {
    identity: Named,
}

impl ResolvesClientCert for ClientCertificate {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.identity.current().and_then(|m| m.certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Starts the source an identity's configuration names. Files are read at once, so
/// unusable files stop a start or a reload with a clear error; the Workload API streams.
pub fn start_identity(config: &config::Identity) -> Result<Arc<Identity>, crate::TlsError> {
    Ok(match &config.source {
        config::IdentitySource::Files {
            cert,
            key,
            bundle,
            crl_files,
        } => {
            let mut files = crate::files::Files::new(cert.clone(), key.clone(), bundle.clone())
                .with_crls(crl_files.clone());
            let material = files.load_now()?;
            Identity::start(&config.name, Box::new(files), Some(material))
        }
        config::IdentitySource::Spire { socket, spiffe_id } => Identity::start(
            &config.name,
            Box::new(crate::spire::WorkloadApi {
                socket: socket.clone(),
                spiffe_id: spiffe_id.clone(),
            }),
            None,
        ),
    })
}
