//! The PROXY header a cluster sends to its endpoints: the client's address as the gateway
//! knows it (a trusted balancer's header included), and TLVs — configured, passed through
//! from the client's own header, or given by the authorizer.

use crate::attributes::Attributes;
use protocols::proxy;

pub(crate) fn header(
    cluster: &config::Cluster,
    attributes: &Attributes,
    routing: Option<&authz::Routing>,
) -> Option<Vec<u8>> {
    let settings = cluster.proxy_protocol.as_ref()?;
    let (source, destination) = (attributes.source, attributes.destination);
    if settings.version == 1 {
        return Some(proxy::encode_v1(source, destination));
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
    Some(proxy::encode_v2(source, destination, &tlvs))
}
