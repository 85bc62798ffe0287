//! Refusing a protocol session the way its own server would, so the client's software logs a
//! reason instead of a bare disconnect: a FIX Logout with the reason in Text (58).

use crate::attributes::Attributes;
use protocols::fix;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a refused client gets to take the goodbye before the connection closes.
const GOODBYE: Duration = Duration::from_secs(1);

/// Refuses a connection the caller gives up: a FIX session is told why with a Logout;
/// anything else is just closed. Awaited in the connection's own task, which keeps its
/// place in the connection counts (and drain waits for it) until the goodbye is over.
/// Boxed: the connection's task stays small.
pub(crate) fn refuse<'a, S>(
    stream: S,
    attributes: &'a Attributes,
    reason: &'static str,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'a,
{
    Box::pin(async move {
        if let Some(logon) = attributes.fix() {
            let mut stream = stream;
            logout(&mut stream, attributes.id, logon, reason).await;
        }
    })
}

/// Tells a FIX client why its Logon was refused, then closes gracefully: our FIN after the
/// Logout, the client's unread bytes drained so the close is not a reset that could destroy
/// the Logout before it is read.
pub(crate) async fn logout<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    id: u64,
    logon: &fix::Logon,
    reason: &str,
) {
    let logout = fix::logout(logon, reason, &fix::sending_time_at(SystemTime::now()));
    tracing::info!(id, sender_comp_id = %logon.sender_comp_id, target_comp_id = %logon.target_comp_id, reason, "FIX Logon refused with a Logout");
    let _ = tokio::time::timeout(GOODBYE, async {
        stream.write_all(&logout).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}
