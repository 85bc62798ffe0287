//! TLS: identities (certificates, keys, bundles), terminating TLS on routes, originating it
//! to clusters, and the peer identities allowed.

use super::text::as_text;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Certificates and keys the gateway presents and the bundles it trusts, by name; each
/// rotates without a restart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    pub name: String,
    pub source: IdentitySource,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// PEM files, reloaded when they change. A certificate chain (leaf first) with its key,
    /// and/or a trust bundle.
    Files {
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        bundle: Option<PathBuf>,
        /// Certificate revocation lists (PEM) for the client certificates the bundle
        /// verifies; watched and re-read like the other files.
        crl_files: Vec<PathBuf>,
    },
    /// The SPIFFE Workload API of a SPIRE agent: X.509 SVIDs and bundles, streamed.
    Spire {
        socket: PathBuf,
        /// Which SVID, when the workload has several; default: the first.
        spiffe_id: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TlsVersion {
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// Terminating TLS on a route: the gateway is the TLS server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Terminate {
    /// The certificate is the one of these whose names match the client's SNI (the first
    /// when none does).
    pub identities: Vec<String>,
    pub min_version: TlsVersion,
    /// Protocols offered by ALPN, most preferred first; empty: no ALPN.
    pub alpn: Vec<String>,
    pub client_certificate: ClientCertificate,
    /// The identity whose bundle verifies client certificates.
    pub trust: Option<String>,
    /// Client identities allowed; `None`: any the bundle verifies.
    pub allowed_clients: Option<AllowedPeers>,
    #[serde(serialize_with = "as_text")]
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientCertificate {
    /// Not asked for.
    None,
    /// Asked for, verified when sent.
    Optional,
    /// Asked for; a client without one is refused.
    Required,
}

/// Peer identities allowed: a certificate passes when its SPIFFE ID matches any entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AllowedPeers {
    /// Exact SPIFFE IDs.
    pub spiffe_ids: Vec<String>,
    /// `example.org` allows every `spiffe://example.org/...`.
    pub trust_domains: Vec<String>,
    /// `spiffe://example.org/payments` allows it and every ID below it (`.../payments/x`),
    /// matched on path segments.
    pub spiffe_id_prefixes: Vec<String>,
}

impl AllowedPeers {
    pub fn allows(&self, spiffe_id: Option<&str>) -> bool {
        let Some(id) = spiffe_id else {
            return false;
        };
        let domain = id
            .strip_prefix("spiffe://")
            .map(|rest| rest.split('/').next().unwrap_or(rest));
        self.spiffe_ids.iter().any(|s| s == id)
            || domain.is_some_and(|d| self.trust_domains.iter().any(|t| t == d))
            || (self.spiffe_id_prefixes.iter()).any(|p| id_under_prefix(id, p))
    }
}

/// Whether `id` is `prefix` or below it, on path segments: `spiffe://td/a` covers
/// `spiffe://td/a` and `spiffe://td/a/b`, never `spiffe://td/a-evil` nor trust domain
/// `td.evil` (a trailing `/` on the prefix changes nothing).
fn id_under_prefix(id: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match id.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// Originating TLS to a cluster's endpoints: the gateway is the TLS client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamTls {
    /// The SNI sent; with `forward_sni`, the client's SNI when it sent one.
    pub server_name: Option<String>,
    pub forward_sni: bool,
    /// The identity whose bundle verifies the server.
    pub trust: String,
    /// The server must present one of these SPIFFE IDs (then its DNS names are not checked).
    pub verify_spiffe_ids: Vec<String>,
    /// Otherwise its certificate must be valid for this name (default: the SNI sent).
    pub verify_dns_name: Option<String>,
    /// The identity presented as client certificate (mTLS).
    pub identity: Option<String>,
    pub alpn: Vec<String>,
    pub min_version: TlsVersion,
    #[serde(serialize_with = "as_text")]
    pub handshake_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::AllowedPeers;

    #[test]
    fn prefixes_match_whole_path_segments() {
        let allowed = AllowedPeers {
            spiffe_id_prefixes: vec![
                "spiffe://td.test/payments".into(),
                "spiffe://other.test/".into(),
            ],
            ..Default::default()
        };
        for id in [
            "spiffe://td.test/payments",
            "spiffe://td.test/payments/api",
            "spiffe://other.test/anything",
        ] {
            assert!(allowed.allows(Some(id)), "{id}");
        }
        for id in [
            "spiffe://td.test/payments-evil",
            "spiffe://td.test/paymentsx/api",
            "spiffe://other.test.evil/anything",
            "spiffe://td.test",
        ] {
            assert!(!allowed.allows(Some(id)), "{id}");
        }
    }
}
