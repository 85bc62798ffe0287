//! The PROXY header stage: a trusted balancer's PROXY header (v1 or v2), read before
//! anything else when the listener says so; its client address becomes the connection's.
//! A header from an untrusted peer, a missing one (required mode) or a malformed one closes
//! the connection.

use crate::accept::Listener;
use crate::attributes::{Attributes, ProxyInfo};
use crate::end;
use crate::end::access_log::AccessLog;
use crate::error::{Error, Kind, Side};
use crate::inspect::{Look, consume, peek_until};
use protocols::proxy;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use tokio::net::TcpStream;

/// A v2 PROXY header: 16 bytes and at most 64 KiB of addresses and TLVs.
const MAX_PROXY_HEADER: usize = 16 + 65535;

/// A trusted balancer's PROXY header, when the listener reads them: its client address is
/// the connection's. False: the connection was refused (logged and counted).
pub(crate) async fn read(
    downstream: &TcpStream,
    attributes: &mut Box<Attributes>,
    listener: &Listener,
    log: Option<&AccessLog>,
) -> bool {
    let Some(settings) = &listener.config.proxy_protocol else {
        return true;
    };
    let peer = attributes.source;
    match Box::pin(header(downstream, settings, peer)).await {
        Ok(None) => true,
        Ok(Some(header)) => {
            if let Some((source, destination)) = header.addresses {
                attributes.source = source;
                attributes.destination = destination;
            }
            attributes.proxy = Some(Box::new(ProxyInfo {
                balancer: peer,
                version: header.version,
                tlvs: header.tlvs,
            }));
            true
        }
        Err(error) => {
            listener.stats.proxy_protocol_failed.fetch_add(1, Relaxed);
            end::refused((**attributes).clone(), None, error, log);
            false
        }
    }
}

/// Reads the PROXY header of a connection from `peer` as the listener's settings say:
/// `None` when there is none (optional mode). A header from an untrusted peer, a missing one
/// (required mode) or a malformed one is an error; the header's bytes are consumed.
async fn header(
    stream: &TcpStream,
    settings: &config::ProxyProtocolIn,
    peer: SocketAddr,
) -> Result<Option<proxy::ProxyHeader>, Error> {
    let ip = crate::route::canonical(peer.ip());
    let trusted = settings.trusted_sources.iter().any(|c| c.contains(&ip));
    let required = settings.mode == config::ProxyMode::Required;
    if !trusted && required {
        return Err(Error::new(Side::Downstream, Kind::ProxyUntrusted));
    }
    let mut started = false;
    let found = peek_until(stream, settings.timeout, MAX_PROXY_HEADER, |bytes| {
        started = true;
        match proxy::parse(bytes) {
            Ok(header) => Look::Done(Some(header)),
            Err(proxy::Error::NotProxy) => Look::Done(None),
            Err(proxy::Error::Incomplete) => Look::NeedMore(1),
            Err(proxy::Error::Invalid(_)) => Look::Fail(Error::new(
                Side::Downstream,
                Kind::Malformed("invalid PROXY header"),
            )),
        }
    })
    .await;
    let found = match found {
        // Optional: a client that says nothing first (a server-first protocol) has no
        // header; one that began a header and stalled is refused.
        Err(Error {
            kind: Kind::InspectionTimeout,
            ..
        }) if !required && !started => None,
        other => other?,
    };
    match found {
        Some(_) if !trusted => Err(Error::new(Side::Downstream, Kind::ProxyUntrusted)),
        None if required => Err(Error::new(
            Side::Downstream,
            Kind::Malformed("no PROXY header"),
        )),
        None => Ok(None),
        Some(header) => {
            consume(stream, header.length).await?;
            Ok(Some(header))
        }
    }
}
