//! The PROXY header a cluster sends to its endpoints: the client's address as the gateway
//! knows it (a trusted balancer's header included), and TLVs — configured, passed through
//! from the client's own header, or given by the authorizer.

use crate::attributes::Attributes;
use crate::error::{Error, Kind};
use protocols::proxy;

/// `None`: the cluster sends no header. Err: the TLVs do not fit in a v2 header (64 KiB).
pub(crate) fn header(
    cluster: &config::Cluster,
    attributes: &Attributes,
    routing: Option<&authz::Routing>,
) -> Result<Option<Vec<u8>>, Error> {
    let Some(settings) = cluster.proxy_protocol.as_ref() else {
        return Ok(None);
    };
    let (source, destination) = (attributes.source, attributes.destination);
    if settings.version == 1 {
        return Ok(Some(proxy::encode_v1(source, destination)));
    }
    let mut tlvs: Vec<(u8, &[u8])> = settings
        .tlvs
        .iter()
        .map(|(kind, value)| (*kind, value.as_bytes()))
        .collect();
    if let Some(downstream) = attributes.proxy.as_deref() {
        tlvs.extend(
            downstream
                .tlvs
                .iter()
                .filter(|(kind, _)| settings.pass_tlvs.contains(kind))
                .map(|(kind, value)| (*kind, value.as_slice())),
        );
    }
    if let Some(routing) = routing {
        tlvs.extend(routing.tlvs.iter().map(|(k, v)| (*k, v.as_slice())));
    }
    match proxy::encode_v2(source, destination, &tlvs) {
        Ok(header) => Ok(Some(header)),
        Err(too_large) => {
            tracing::warn!(id = attributes.id, cluster = %cluster.name, bytes = too_large.body, "the PROXY v2 header for this connection would be over 64 KiB: refused");
            Err(Error::internal(Kind::ProxyHeaderTooLarge))
        }
    }
}
