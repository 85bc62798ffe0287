//! Idle hold: open N connections, check each echoes, hold them idle, check again.
//! The caller measures the proxy's memory while they are held.

use super::{Conn, Target};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy)]
pub struct IdleHold {
    pub connections: usize,
    pub hold: Duration,
    /// Connections being opened at once.
    pub open_concurrency: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct IdleHoldResult {
    pub connections: usize,
    /// Whatever the `while_held` callback measured (e.g. the proxy's RSS in KiB).
    pub measured: u64,
}

impl IdleHold {
    /// Opens the connections, calls `while_held` once they are all open and checked, holds
    /// them for `hold`, checks every one again, then closes them.
    pub async fn run<F, Fut>(self, target: &Target, while_held: F) -> crate::Result<IdleHoldResult>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = u64>,
    {
        let mut streams = Vec::with_capacity(self.connections);
        let mut opening = tokio::task::JoinSet::new();
        let mut next = 0usize;
        while streams.len() < self.connections {
            while opening.len() < self.open_concurrency && next < self.connections {
                opening.spawn(open_and_check(target.clone(), next));
                next += 1;
            }
            let opened = opening.join_next().await.expect("tasks pending");
            streams.push(opened.map_err(|e| e.to_string())??);
        }
        let measured = while_held().await;
        tokio::time::sleep(self.hold).await;
        for (i, stream) in streams.iter_mut().enumerate() {
            check(stream, i)
                .await
                .map_err(|e| format!("after the hold, connection {i}: {e}"))?;
        }
        Ok(IdleHoldResult {
            connections: streams.len(),
            measured,
        })
    }
}

async fn open_and_check(target: Target, i: usize) -> crate::Result<Conn> {
    let mut stream = super::open(&target).await?;
    check(&mut stream, i)
        .await
        .map_err(|e| format!("connection {i}: {e}"))?;
    Ok(stream)
}

async fn check(stream: &mut Conn, i: usize) -> crate::Result<()> {
    let message = (i as u64).to_be_bytes();
    stream
        .write_all(&message)
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = [0u8; 8];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    if answer != message {
        return Err("wrong echo".into());
    }
    Ok(())
}
