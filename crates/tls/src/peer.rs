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
        let mut uris = 0;
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => {
                        uris += 1;
                        if uri.starts_with("spiffe://") {
                            identity.spiffe_id.get_or_insert_with(|| uri.to_string());
                        }
                    }
                    GeneralName::DNSName(dns) => identity.dns_names.push(dns.to_string()),
                    _ => {}
                }
            }
        }
        // An X.509-SVID has exactly one URI SAN: with more, which one names the holder?
        if uris > 1 && identity.spiffe_id.is_some() {
            return Err(TlsError::Material(format!(
                "certificate `{}` has a SPIFFE ID among {uris} URI SANs: not an SVID",
                identity.subject
            )));
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

/// A certificate as PEM (for an authorizer that asks for the client's certificate).
pub fn to_pem(der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                encoded.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                encoded.push('=');
            }
        }
    }
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    #[test]
    fn pem_round_trips_through_the_pem_parser() {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        for len in [1usize, 2, 3, 4, 47, 48, 49, 300] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let pem = super::to_pem(&der);
            let back = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
            assert_eq!(back.as_ref(), der.as_slice(), "{len}");
        }
    }
}
