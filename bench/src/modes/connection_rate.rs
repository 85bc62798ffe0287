//! Connection rate: open, send a first message, read its echo, close — as many times as
//! possible. The first message is the target's (a FIX Logon, an MQ initial data segment:
//! what an inspecting listener must read before it can route), 16 bytes otherwise.

use super::Target;
use hdrhistogram::Histogram;
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
    /// From the start of the connect to the last byte of the echoed first message, median.
    pub first_answer_p50_us: f64,
}

const HELLO: &[u8; 16] = b"connection-rate\n";

impl ConnectionRate {
    pub async fn run(self, target: &Target) -> crate::Result<ConnectionRateResult> {
        let started = Instant::now();
        let deadline = started + self.duration;
        let mut tasks = Vec::new();
        for _ in 0..self.concurrency {
            tasks.push(tokio::spawn(one_loop(target.another_client(), deadline)));
        }
        let mut all =
            Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
        for task in tasks {
            let h = task.await.map_err(|e| e.to_string())??;
            all.add(&h).map_err(|e| e.to_string())?;
        }
        Ok(ConnectionRateResult {
            connections: all.len(),
            per_second: all.len() as f64 / started.elapsed().as_secs_f64(),
            first_answer_p50_us: all.value_at_quantile(0.5) as f64 / 1000.0,
        })
    }
}

/// Connections one after the other until the deadline; each one's time to its echo.
async fn one_loop(target: Target, deadline: Instant) -> crate::Result<Histogram<u64>> {
    let mut times = Histogram::new_with_bounds(1, 60_000_000_000, 3).map_err(|e| e.to_string())?;
    let hello: &[u8] = target.first_message.as_deref().unwrap_or(HELLO);
    let mut answer = vec![0u8; hello.len()];
    while Instant::now() < deadline {
        let began = Instant::now();
        let mut stream = super::open(&target).await?;
        (stream.write_all(hello).await).map_err(|e| format!("write: {e}"))?;
        (stream.read_exact(&mut answer).await).map_err(|e| format!("read: {e}"))?;
        let took = began.elapsed().as_nanos() as u64;
        if answer != hello {
            return Err("connection rate: wrong echo".to_string());
        }
        times.record(took.max(1)).map_err(|e| e.to_string())?;
        // The client closes first and would collect TIME_WAIT sockets by the ten thousand;
        // an abortive close keeps the run about the proxy.
        let _ = SockRef::from(stream.tcp()).set_linger(Some(Duration::ZERO));
    }
    Ok(times)
}
