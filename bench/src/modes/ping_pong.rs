//! Latency: N connections each send a message, wait for its echo, and send the next.

use super::Target;
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy)]
pub struct PingPong {
    pub connections: usize,
    pub size: usize,
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct PingPongResult {
    pub messages: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

impl PingPong {
    pub async fn run(self, target: &Target) -> crate::Result<PingPongResult> {
        let deadline = Instant::now() + self.duration;
        let mut tasks = Vec::new();
        for c in 0..self.connections {
            tasks.push(tokio::spawn(one_connection(
                target.clone(),
                self.size,
                deadline,
                c as u8,
            )));
        }
        let mut all = new_histogram();
        for task in tasks {
            let h = task.await.map_err(|e| e.to_string())??;
            all.add(&h).map_err(|e| e.to_string())?;
        }
        let us = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
        Ok(PingPongResult {
            messages: all.len(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
        })
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

async fn one_connection(
    target: Target,
    size: usize,
    deadline: Instant,
    seed: u8,
) -> crate::Result<Histogram<u64>> {
    let mut stream = super::open(&target).await?;
    let mut histogram = new_histogram();
    let mut message = vec![0u8; size];
    let mut answer = vec![0u8; size];
    let mut n: u8 = seed;
    while Instant::now() < deadline {
        n = n.wrapping_add(1);
        message.fill(n);
        let sent = Instant::now();
        stream
            .write_all(&message)
            .await
            .map_err(|e| format!("write: {e}"))?;
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let rtt = sent.elapsed().as_nanos() as u64;
        if answer != message {
            return Err("ping-pong: the echo differs from what was sent".into());
        }
        histogram.record(rtt.max(1)).map_err(|e| e.to_string())?;
    }
    Ok(histogram)
}
