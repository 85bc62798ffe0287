//! TLS for Causeway: identities that rotate without a restart (PEM files watched for change,
//! or the SPIFFE Workload API of a SPIRE agent), the rustls server and client configurations
//! built on them, and the identity read from a peer's certificate.
//!
//! rustls runs on the aws-lc-rs provider, installed once ([`install_provider`]).

pub mod configs;
pub mod files;
pub mod handshake;
pub mod material;
pub mod peer;
pub mod source;
pub mod spire;
mod verify;

pub use configs::{Identities, Origination, server_config, start_identity};
pub use handshake::{HandshakeStats, failure_reason};
pub use material::Material;
pub use peer::PeerIdentity;
pub use source::{Identity, IdentityStats, Publisher, Source};

/// Installs aws-lc-rs as the process's rustls provider, once. (rustls panics when it must
/// pick a provider itself and more than one is compiled in.)
pub fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// Certificates, keys or bundles that cannot be used.
    #[error("{0}")]
    Material(String),
}
