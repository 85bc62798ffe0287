//! A small SSH server (russh) standing in for an upstream the test controls: it takes any
//! key login (counted), can hold each connection until the test releases it, and answers
//! `exec` by the command: `hang` is never answered, `stream` sends data without end,
//! anything else prints `hi` and exits.

use ssh::russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use ssh::russh::{self, Channel, ChannelId};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tokio::sync::watch;

pub(crate) struct FakeUpstream {
    pub address: SocketAddr,
    /// Logins it accepted.
    pub logins: Arc<AtomicUsize>,
    /// How many of its connections have ended.
    pub ended: watch::Receiver<usize>,
    /// Lets held connections go on (see [`FakeUpstream::release`]).
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeUpstream {
    /// Listening on 127.0.0.1 with the example's backend host key (what `pinned()`
    /// trusts); with `held`, each connection waits for [`FakeUpstream::release`] before the
    /// server speaks.
    pub(crate) async fn start(held: bool) -> FakeUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let key = testkit::ssh::example_keys().join("backend_host_ed25519");
        let config = Arc::new(server::Config {
            keys: vec![russh::keys::load_secret_key(key, None).unwrap()],
            ..Default::default()
        });
        let logins = Arc::new(AtomicUsize::new(0));
        let (ended_tx, ended) = watch::channel(0);
        let (release, released) = watch::channel(!held);
        let counted = logins.clone();
        let task = tokio::spawn(async move {
            let ended_tx = Arc::new(ended_tx);
            while let Ok((tcp, _)) = listener.accept().await {
                let (config, ended_tx) = (config.clone(), ended_tx.clone());
                let handler = Fake(counted.clone());
                let mut released = released.clone();
                tokio::spawn(async move {
                    let _ = released.wait_for(|go| *go).await;
                    if let Ok(running) = server::run_stream(config, tcp, handler).await {
                        let _ = running.await;
                    }
                    ended_tx.send_modify(|n| *n += 1);
                });
            }
        });
        FakeUpstream {
            address,
            logins,
            ended,
            release,
            task,
        }
    }

    /// Held connections (and those to come) go on.
    pub(crate) fn release(&self) {
        self.release.send_replace(true);
    }
}

struct Fake(Arc<AtomicUsize>);

impl server::Handler for Fake {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.0.fetch_add(1, Relaxed);
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match command {
            b"hang" => {}
            b"stream" => {
                session.channel_success(channel)?;
                let handle = session.handle();
                tokio::spawn(async move {
                    let chunk = bytes::Bytes::from(vec![7u8; 32 * 1024]);
                    while handle.data(channel, chunk.clone()).await.is_ok() {}
                });
            }
            _ => {
                session.channel_success(channel)?;
                session.data(channel, bytes::Bytes::from_static(b"hi\n"))?;
                session.exit_status_request(channel, 0)?;
                session.eof(channel)?;
                session.close(channel)?;
            }
        }
        Ok(())
    }
}

/// A TCP relay to `to` that holds the first connection until the returned sender is used
/// (or dropped), the others going through at once: a service slow to answer once.
pub(crate) async fn held_first(to: SocketAddr) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut first = Some(released);
        while let Ok((mut inbound, _)) = listener.accept().await {
            let hold = first.take();
            tokio::spawn(async move {
                if let Some(released) = hold {
                    let _ = released.await;
                }
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (address, release)
}
