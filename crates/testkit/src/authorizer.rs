//! The test ext_authz server ([`demo::authorizer`], what `causeway authorizer` runs), and
//! what tests read from the requests it kept.

pub use demo::authorizer::{TestAuthorizer, Verdict};
use envoy_types::ext_authz::v3::pb::CheckRequest;
use std::net::SocketAddr;

/// The source address (`ip:port`) of a check request.
pub fn source_of(request: &CheckRequest) -> Option<String> {
    address_of(request.attributes.as_ref()?.source.as_ref()?)
}

fn address_of(
    peer: &envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer,
) -> Option<String> {
    use envoy_types::pb::envoy::config::core::v3::{address, socket_address};
    let Some(address::Address::SocketAddress(s)) = peer.address.as_ref()?.address.as_ref() else {
        return None;
    };
    let Some(socket_address::PortSpecifier::PortValue(port)) = s.port_specifier else {
        return None;
    };
    Some(SocketAddr::new(s.address.parse().ok()?, port as u16).to_string())
}
