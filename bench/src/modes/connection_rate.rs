//! Connection rate: open, exchange a few bytes, close — as many times as possible.

use super::Target;
use socket2::SockRef;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy)]
pub struct ConnectionRate {
    /// Connections in flight at once.
    pub concurrency: usize,
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct ConnectionRateResult {
    pub connections: u64,
    pub per_second: f64,
}

const HELLO: &[u8; 16] = b"connection-rate\n";

impl ConnectionRate {
    pub async fn run(self, target: &Target) -> crate::Result<ConnectionRateResult> {
        let started = Instant::now();
        let deadline = started + self.duration;
        let mut tasks = Vec::new();
        for _ in 0..self.concurrency {
            let target = target.another_client();
            tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                let mut answer = [0u8; HELLO.len()];
                while Instant::now() < deadline {
                    let mut stream = super::open(&target).await?;
                    stream
                        .write_all(HELLO)
                        .await
                        .map_err(|e| format!("write: {e}"))?;
                    stream
                        .read_exact(&mut answer)
                        .await
                        .map_err(|e| format!("read: {e}"))?;
                    if &answer != HELLO {
                        return Err("connection rate: wrong echo".to_string());
                    }
                    // The client closes first and would collect TIME_WAIT sockets by the
                    // ten thousand; an abortive close keeps the run about the proxy.
                    let _ = SockRef::from(stream.tcp()).set_linger(Some(Duration::ZERO));
                    drop(stream);
                    done += 1;
                }
                Ok::<u64, String>(done)
            }));
        }
        let mut connections = 0;
        for task in tasks {
            connections += task.await.map_err(|e| e.to_string())??;
        }
        Ok(ConnectionRateResult {
            connections,
            per_second: connections as f64 / started.elapsed().as_secs_f64(),
        })
    }
}
