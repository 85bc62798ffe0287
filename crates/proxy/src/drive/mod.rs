//! The front ends. Each composes the stages for one kind of connection; none imports
//! another. [`serve`] sets an admitted connection up ([`setup`]: the stages before
//! authorization) and hands it to its driver:
//!
//! - [`stream`]: plain TCP, TLS, FIX and MQ connections, relayed byte for byte;
//! - [`connect`]: a CONNECT terminator's connection, whose every tunnel is a connection of
//!   its own (admitted, authorized with its target, timed, ended and logged like any other);
//! - [`ssh`]: SSH terminated, the user authenticated, routed and logged in upstream.

mod connect;
mod setup;
mod ssh;
mod stream;

use crate::accept::Context;
use crate::accept::admission::Slot;
use crate::attributes::Attributes;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_util::either::Either;

/// One admitted connection, from its first byte to its access-log line, by its driver.
/// The slot (its place in the connection counts) is held until the end.
pub(crate) fn serve(
    downstream: TcpStream,
    attributes: Box<Attributes>,
    slot: Slot,
    context: Arc<Context>,
) -> impl Future<Output = ()> + Send {
    let name = match slot.listener.config.protocol {
        config::ListenerProtocol::Ssh => "ssh session",
        _ => "connection",
    };
    let mut attributes = attributes;
    crate::end::trace::start(context.tracer.as_ref(), &mut attributes, name, None);
    // Boxed, the SSH and CONNECT drivers: their state would size every stream's task.
    match slot.listener.config.protocol {
        config::ListenerProtocol::Ssh => Either::Left(Box::pin(async move {
            let (mut attributes, mut slot) = (attributes, slot);
            if setup::client_named(&downstream, &mut attributes, &mut slot, &context).await {
                ssh::serve(downstream, attributes, &slot.listener, &context).await
            }
        })),
        _ => Either::Right(stream::serve(
            downstream,
            attributes,
            slot,
            context,
            |accepted, listener, context| Box::pin(connect::serve(accepted, listener, context)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::relay;
    use crate::route::RouteTable;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    /// The connection task is most of what an idle connection costs in user space
    /// (bench/RESULTS.md measures the whole): keep it small.
    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let config = config::parse(
            "listeners:\n  - name: l\n    address: 127.0.0.1:0\n    routes: [{ cluster: c }]\nclusters:\n  - { name: c, endpoints: [{ address: \"127.0.0.1:1\" }] }\n",
            "t",
        )
        .unwrap();
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = server.local_addr().unwrap();
        let stream = TcpStream::connect(address).await.unwrap();
        let listener = Arc::new(crate::accept::Listener {
            config: config.listeners[0].clone(),
            name: "l".into(),
            routes: RouteTable::new(
                &[],
                &Default::default(),
                &Default::default(),
                &Default::default(),
                None,
            ),
            ssh: None,
            stats: Default::default(),
        });
        let context = Arc::new(Context {
            stop_accepting: CancellationToken::new(),
            registry: Default::default(),
            connections: TaskTracker::new(),
            access_log: None,
            global: Default::default(),
            handshakes: Default::default(),
            tracer: None,
            splice: Default::default(),
        });
        let attributes = crate::attributes::accepted(&listener.name, address, address);
        let slot = crate::accept::admission::admit(
            &listener,
            &context.global,
            Some(&mut crate::accept::admission::RateLimiter::new()),
            address.ip(),
        )
        .unwrap();
        let task = serve(stream, attributes, slot, context);
        let size = std::mem::size_of_val(&task);
        assert!(size <= 720, "the connection future grew to {size} bytes");
        let counters = relay::Counters::new();
        let (a, b) = (
            TcpStream::connect(address).await.unwrap(),
            TcpStream::connect(address).await.unwrap(),
        );
        let relay = relay::relay(&a, &b, &counters, true);
        assert!(
            std::mem::size_of_val(&relay) <= 64,
            "the relay holds no buffers or readiness futures"
        );
    }
}
