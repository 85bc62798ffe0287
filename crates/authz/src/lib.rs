//! Authorization, checked before any upstream is dialed: built-in rules first, then an
//! external service speaking Envoy's `envoy.service.auth.v3.Authorization/Check` (so OPA-Envoy
//! and existing IAM adapters work), whose answer may also choose the upstream.
//!
//! Mapping of a connection to the check request, and the metadata keys: docs/authz.md.

mod cache;
pub mod ext_authz;
pub mod metadata;
pub mod rules;
mod stats;

pub use ext_authz::{ExtAuthz, Outcome};
pub use metadata::Routing;
pub use stats::AuthzStats;

#[cfg(test)]
mod tests {
    /// Neither the SSH nor the FIX password shows in a debug print of a check.
    #[test]
    fn debug_never_shows_a_secret() {
        let input = super::CheckInput {
            extensions: vec![
                ("ssh_password".into(), "hunter2".into()),
                ("fix_password".into(), "swordfish".into()),
                ("fix_username".into(), "alice".into()),
            ],
            fix: Some(protocols::fix::Logon {
                password: Some("swordfish".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = format!("{input:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("swordfish"),
            "{text}"
        );
        assert!(text.contains("alice"), "{text}");
    }
}

use std::net::SocketAddr;

/// What authorization knows of a connection (owned: a re-check runs long after accept).
/// `Debug` never shows a secret (see [`SECRET_EXTENSIONS`]).
#[derive(Clone, Default)]
pub struct CheckInput {
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
    pub listener: String,
    pub route: String,
    /// The TLS server name (inspected or terminated).
    pub sni: Option<String>,
    /// The client's verified certificate identity (TLS terminated here).
    pub peer: Option<tls::PeerIdentity>,
    /// The client certificate as PEM, when the authorizer asks for it.
    pub peer_certificate_pem: Option<String>,
    /// More attributes for `context_extensions` (PROXY TLVs, protocol attributes).
    pub extensions: Vec<(String, String)>,
    /// The FIX Logon, for rules.
    pub fix: Option<protocols::fix::Logon>,
    /// The MQ channel and queue manager, for rules.
    pub mq: Option<(String, Option<String>)>,
    /// The SSH user and login target, for rules (and part of every cache key).
    pub ssh: Option<(String, Option<String>)>,
    /// A CONNECT tunnel's target, host and port (part of every cache key: an allow to one
    /// destination is never one to another).
    pub tunnel: Option<(String, u16)>,
    /// The check decides who the client is (an SSH login the gateway cannot verify itself):
    /// never answered from the decision cache, whatever its key.
    pub authenticates: bool,
    /// The W3C `traceparent` of the gateway's span for this call, sent as gRPC metadata so
    /// the authorizer's trace joins the connection's. Part of no decision, nor of a cache key.
    pub traceparent: Option<String>,
}

/// Extensions that carry a secret: a check that sends one is never answered from (nor
/// stored in) the decision cache, and `Debug` never shows them.
pub const SECRET_EXTENSIONS: [&str; 2] = ["fix_password", "ssh_password"];

impl std::fmt::Debug for CheckInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let extensions: Vec<(&str, &str)> = (self.extensions.iter())
            .map(
                |(name, value)| match SECRET_EXTENSIONS.contains(&name.as_str()) {
                    true => (name.as_str(), "<redacted>"),
                    false => (name.as_str(), value.as_str()),
                },
            )
            .collect();
        f.debug_struct("CheckInput")
            .field("source", &self.source)
            .field("destination", &self.destination)
            .field("listener", &self.listener)
            .field("route", &self.route)
            .field("sni", &self.sni)
            .field("peer", &self.peer)
            .field("extensions", &extensions)
            .field("fix", &self.fix)
            .field("mq", &self.mq)
            .field("ssh", &self.ssh)
            .field("tunnel", &self.tunnel)
            .field("authenticates", &self.authenticates)
            .finish_non_exhaustive()
    }
}

impl CheckInput {
    /// Whether an answer to this check may be remembered: not when the authorizer decides
    /// who the client is, nor when the check carries a secret (the answer is the secret's).
    pub fn cacheable(&self) -> bool {
        !self.authenticates
            && !(self.extensions.iter()).any(|(name, _)| SECRET_EXTENSIONS.contains(&name.as_str()))
    }
}
