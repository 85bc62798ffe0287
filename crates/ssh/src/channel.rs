//! One client channel relayed to its upstream twin once the request that starts it (the
//! `sftp` subsystem, exec, shell, a forwarded port) was accepted on both sides: data both
//! ways within each side's window, EOF, close, exit status and signals passed on.
//!
//! Memory stays bounded when a side stops reading: a write waits for the receiver's window,
//! meanwhile this side's channel queue fills and russh stops reading that socket.

use russh::{Channel, ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, client, server};

/// Sees the bytes crossing a channel: counters, the SFTP audit.
pub trait Observer: Send + Sync {
    /// Client → upstream.
    fn to_upstream(&self, data: &[u8]);
    /// Upstream → client.
    fn to_downstream(&self, data: &[u8]);
}

/// How a relayed channel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed the channel.
    Closed,
    /// A session went away under the channel before either side closed it.
    Lost,
    /// `stop` ended it: both sides were told the channel is closed.
    Stopped,
}

/// Relays until both sides are done with the channel, or until `stop` completes (the
/// gateway ends the channel: a timeout, a withdrawn authorization) — then both sides get
/// the channel's close, and the session it belongs to goes on.
pub async fn relay(
    down: Channel<server::Msg>,
    up: Channel<client::Msg>,
    server: server::Handle,
    observer: &dyn Observer,
    stop: impl Future<Output = ()>,
) -> Ended {
    let id = down.id();
    let (mut down_rx, down_tx) = down.split();
    let (mut up_rx, up_tx) = up.split();
    // Each side closes on its own; the first close is passed on and the other side's
    // answer ends the second loop. Both halves of both channels live until then.
    let both = async {
        tokio::join!(
            client_to_upstream(&mut down_rx, &up_tx, (&server, id), observer),
            upstream_to_client(&mut up_rx, &down_tx, &server, id, observer),
        )
    };
    let ended = tokio::select! {
        ended = both => Some(ended),
        () = stop => None,
    };
    match ended {
        // Closed by one side: the other session may go before it answers.
        Some((Ended::Closed, _) | (_, Ended::Closed)) => Ended::Closed,
        Some(_) => Ended::Lost,
        None => {
            let _ = tokio::join!(up_tx.close(), down_tx.close());
            Ended::Stopped
        }
    }
}

/// The client's side of the channel passed on to the upstream until either closes.
async fn client_to_upstream(
    down_rx: &mut ChannelReadHalf,
    up_tx: &ChannelWriteHalf<client::Msg>,
    (server, id): (&server::Handle, ChannelId),
    observer: &dyn Observer,
) -> Ended {
    loop {
        let sent = match down_rx.wait().await {
            Some(ChannelMsg::Data { data }) => {
                observer.to_upstream(&data);
                up_tx.data_bytes(data).await
            }
            Some(ChannelMsg::ExtendedData { data, ext }) => {
                up_tx.extended_data_bytes(ext, data).await
            }
            Some(ChannelMsg::Eof) => up_tx.eof().await,
            Some(ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            }) => {
                up_tx
                    .window_change(col_width, row_height, pix_width, pix_height)
                    .await
            }
            Some(ChannelMsg::Signal { signal }) => up_tx.signal(signal).await,
            Some(ChannelMsg::Close) => {
                let _ = up_tx.close().await;
                return Ended::Closed;
            }
            // A channel starts once: a request on a started one is refused (a reply the
            // client did not ask for is not sent).
            Some(message) if is_request(&message) => {
                let _ = server.channel_failure(id).await;
                Ok(())
            }
            Some(_) => Ok(()),
            None => {
                let _ = up_tx.close().await;
                return Ended::Lost;
            }
        };
        if sent.is_err() {
            return Ended::Lost;
        }
    }
}

/// A channel request the client may want answered.
pub fn is_request(message: &ChannelMsg) -> bool {
    matches!(
        message,
        ChannelMsg::Exec { .. }
            | ChannelMsg::RequestSubsystem { .. }
            | ChannelMsg::RequestShell { .. }
            | ChannelMsg::SetEnv { .. }
            | ChannelMsg::RequestPty { .. }
            | ChannelMsg::RequestX11 { .. }
            | ChannelMsg::AgentForward { .. }
    )
}

/// The upstream's side of the channel passed on to the client until either closes; the
/// exit signal goes through the session handle (channel `id`), the write half has no call
/// for it.
async fn upstream_to_client(
    up_rx: &mut ChannelReadHalf,
    down_tx: &ChannelWriteHalf<server::Msg>,
    server: &server::Handle,
    id: ChannelId,
    observer: &dyn Observer,
) -> Ended {
    loop {
        let sent = match up_rx.wait().await {
            Some(ChannelMsg::Data { data }) => {
                observer.to_downstream(&data);
                down_tx.data_bytes(data).await
            }
            Some(ChannelMsg::ExtendedData { data, ext }) => {
                down_tx.extended_data_bytes(ext, data).await
            }
            Some(ChannelMsg::Eof) => down_tx.eof().await,
            Some(ChannelMsg::ExitStatus { exit_status }) => down_tx.exit_status(exit_status).await,
            Some(ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            }) => server
                .exit_signal_request(id, signal_name, core_dumped, error_message, lang_tag)
                .await
                .map_err(|()| russh::Error::SendError),
            Some(ChannelMsg::Close) => {
                let _ = down_tx.close().await;
                return Ended::Closed;
            }
            Some(_) => Ok(()),
            None => {
                let _ = down_tx.close().await;
                return Ended::Lost;
            }
        };
        if sent.is_err() {
            return Ended::Lost;
        }
    }
}

/// Waits for the upstream's answer to a request sent with `want_reply`.
pub async fn upstream_reply(up: &mut Channel<client::Msg>) -> bool {
    loop {
        match up.wait().await {
            Some(ChannelMsg::Success) => return true,
            Some(ChannelMsg::Failure) | Some(ChannelMsg::Close) | None => return false,
            Some(_) => {}
        }
    }
}
