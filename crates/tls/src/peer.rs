//! Who a certificate says its holder is: SPIFFE ID (URI SAN `spiffe://...`), DNS names,
//! subject. Read from the verified peer certificate after a handshake, and from our own.

use crate::TlsError;
use rustls_pki_types::CertificateDer;
use std::time::{Duration, SystemTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The URI SAN that is a SPIFFE ID, if any.
    pub spiffe_id: Option<String>,
    pub dns_names: Vec<String>,
    /// The subject distinguished name, RFC 4514 style (`CN=client,O=Example`).
    pub subject: String,
}

impl PeerIdentity {
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Result<PeerIdentity, TlsError> {
        let (_, cert) = X509Certificate::from_der(cert)
            .map_err(|e| TlsError::Material(format!("unreadable certificate: {e}")))?;
        let mut identity = PeerIdentity {
            subject: cert.subject().to_string(),
            ..Default::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
                        identity.spiffe_id.get_or_insert_with(|| uri.to_string());
                    }
                    GeneralName::DNSName(dns) => identity.dns_names.push(dns.to_string()),
                    _ => {}
                }
            }
        }
        Ok(identity)
    }

    /// The name the ext_authz `principal` and logs use: SPIFFE ID, else first DNS name, else
    /// the subject (Envoy's order).
    pub fn principal(&self) -> &str {
        self.spiffe_id
            .as_deref()
            .or(self.dns_names.first().map(String::as_str))
            .unwrap_or(&self.subject)
    }

    /// The trust domain of the SPIFFE ID (`spiffe://DOMAIN/path` → `DOMAIN`).
    pub fn trust_domain(&self) -> Option<&str> {
        let rest = self.spiffe_id.as_deref()?.strip_prefix("spiffe://")?;
        Some(rest.split('/').next().unwrap_or(rest))
    }
}

pub(crate) fn not_after(cert: &CertificateDer<'_>) -> Result<SystemTime, TlsError> {
    let (_, cert) = X509Certificate::from_der(cert)
        .map_err(|e| TlsError::Material(format!("unreadable certificate: {e}")))?;
    let seconds = cert.validity().not_after.timestamp();
    Ok(if seconds >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds as u64)
    } else {
        SystemTime::UNIX_EPOCH
    })
}
