//! What a protocol listener's client says before routing: the MQ channel (from the first
//! segment of a plaintext client, from the SNI of a TLS one) and the FIX Logon (peeked; a
//! Logon inside TLS is read once the handshake is done).

use crate::attributes::{Attributes, Mq, Protocol};
use crate::error::{Error, Kind, Side};
use tokio::net::TcpStream;

/// Reads what the listener's protocol says before routing: the MQ channel (the first
/// segment of a plaintext client, the SNI of a TLS one), the FIX Logon (peeked; not yet when
/// the client speaks TLS).
pub(crate) async fn read(
    stream: &TcpStream,
    settings: &config::Listener,
    a: &mut Attributes,
) -> Result<(), Error> {
    let timeout = settings
        .inspect
        .map_or(config::DEFAULT_INSPECTION_TIMEOUT, |i| i.timeout);
    let tls = a.tls.hello();
    match settings.protocol {
        config::ListenerProtocol::Tcp | config::ListenerProtocol::Ssh => {}
        config::ListenerProtocol::Mq => match tls {
            Some(hello) => {
                let decoded = hello
                    .sni
                    .as_deref()
                    .and_then(protocols::mq::channel_from_sni);
                if let Some(decoded) = decoded {
                    let channel = decoded
                        .map_err(|why| Error::new(Side::Downstream, Kind::Malformed(why)))?;
                    a.protocol = Some(Box::new(Protocol::Mq(Mq {
                        channel,
                        queue_manager: None,
                    })));
                }
            }
            None => {
                let initial = super::mq_initial(stream, timeout).await?;
                a.protocol = Some(Box::new(Protocol::Mq(Mq {
                    channel: initial.channel,
                    queue_manager: initial.queue_manager,
                })));
            }
        },
        config::ListenerProtocol::Fix if tls.is_some() => {}
        config::ListenerProtocol::Fix => {
            let max = settings.fix.max_logon_size;
            let logon = super::fix_logon(stream, timeout, max).await?;
            a.protocol = Some(Box::new(Protocol::Fix(logon)));
        }
    }
    Ok(())
}
