//! Identity material: a certificate chain and its key (what we present), and a trust bundle
//! (whom we believe). Parsed once per rotation into the forms rustls and the policy checks
//! use, so no handshake parses a certificate of ours again.

use crate::TlsError;
use crate::peer::PeerIdentity;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Debug)]
pub struct Material {
    /// What we present (server certificate, or client certificate for mTLS); `None` for a
    /// source that only provides a trust bundle.
    pub certified: Option<Arc<CertifiedKey>>,
    /// Who our certificate says we are, and until when.
    pub leaf: Option<Leaf>,
    /// Trust anchors for verifying peers; empty when the source has none.
    pub bundle: Arc<RootCertStore>,
    /// The bundle's chain verifier for client certificates, built once per rotation.
    pub(crate) client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

#[derive(Debug, Clone)]
pub struct Leaf {
    pub identity: PeerIdentity,
    pub not_after: SystemTime,
}

impl Material {
    /// From DER: a chain (leaf first) with its key, and/or a bundle of CA certificates.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: Option<PrivateKeyDer<'static>>,
        bundle: Vec<CertificateDer<'static>>,
    ) -> Result<Material, TlsError> {
        Material::with_crls(chain, key, bundle, Vec::new())
    }

    /// [`Material::from_der`], client certificates also checked against `crls` (every
    /// certificate of the chain; one whose issuer has no CRL here is not refused for it).
    pub fn with_crls(
        chain: Vec<CertificateDer<'static>>,
        key: Option<PrivateKeyDer<'static>>,
        bundle: Vec<CertificateDer<'static>>,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Material, TlsError> {
        let (certified, leaf) = match (chain.first(), key) {
            (None, None) => (None, None),
            (Some(first), Some(key)) => {
                let leaf = Leaf {
                    identity: PeerIdentity::from_certificate(first)?,
                    not_after: crate::peer::not_after(first)?,
                };
                let provider = provider();
                let certified = CertifiedKey::from_der(chain, key, &provider)
                    .map_err(|e| TlsError::Material(format!("certificate and key: {e}")))?;
                (Some(Arc::new(certified)), Some(leaf))
            }
            (Some(_), None) => {
                return Err(TlsError::Material("a certificate without its key".into()));
            }
            (None, Some(_)) => {
                return Err(TlsError::Material("a key without its certificate".into()));
            }
        };
        let mut roots = RootCertStore::empty();
        for ca in bundle {
            roots
                .add(ca)
                .map_err(|e| TlsError::Material(format!("trust bundle: {e}")))?;
        }
        let bundle = Arc::new(roots);
        let client_verifier = if bundle.is_empty() {
            None
        } else {
            Some(
                WebPkiClientVerifier::builder_with_provider(bundle.clone(), provider())
                    .with_crls(crls)
                    .allow_unknown_revocation_status()
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Material(format!("trust bundle: {e}")))?,
            )
        };
        Ok(Material {
            certified,
            leaf,
            bundle,
            client_verifier,
        })
    }

    /// From PEM files: `cert` (chain, leaf first) with `key`, and/or `bundle` with `crls`.
    pub fn from_pem_files(
        cert: Option<&Path>,
        key: Option<&Path>,
        bundle: Option<&Path>,
        crls: &[PathBuf],
    ) -> Result<Material, TlsError> {
        let chain = match cert {
            Some(path) => certificates(path)?,
            None => Vec::new(),
        };
        let key = match key {
            Some(path) => Some(PrivateKeyDer::from_pem_file(path).map_err(|e| {
                TlsError::Material(format!("{}: no private key: {e}", path.display()))
            })?),
            None => None,
        };
        let bundle = match bundle {
            Some(path) => certificates(path)?,
            None => Vec::new(),
        };
        let mut revocations = Vec::new();
        for path in crls {
            let read = CertificateRevocationListDer::pem_file_iter(path)
                .and_then(|crls| crls.collect::<Result<Vec<_>, _>>())
                .map_err(|e| TlsError::Material(format!("{}: {e}", path.display())))?;
            if read.is_empty() {
                let path = path.display();
                return Err(TlsError::Material(format!("{path}: no CRL in the file")));
            }
            revocations.extend(read);
        }
        Material::with_crls(chain, key, bundle, revocations)
    }

    /// Seconds until our certificate expires (negative once it has).
    pub fn seconds_left(&self) -> Option<f64> {
        let not_after = self.leaf.as_ref()?.not_after;
        Some(match not_after.duration_since(SystemTime::now()) {
            Ok(left) => left.as_secs_f64(),
            Err(past) => -past.duration().as_secs_f64(),
        })
    }
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Material(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::Material(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// The process's crypto provider (aws-lc-rs), installed once.
pub fn provider() -> Arc<CryptoProvider> {
    crate::install_provider();
    CryptoProvider::get_default()
        .expect("installed just above")
        .clone()
}
