//! Bulk throughput: each stream writes as fast as it can while reading the echo back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    pub streams: usize,
    pub duration: Duration,
    /// Check every byte's value, not only the count (costs client CPU; for smoke tests).
    pub verify_content: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct ThroughputResult {
    /// Echoed bytes per second, all streams together (the proxy carries this each way).
    pub bytes_per_second: f64,
    pub bytes: u64,
}

const CHUNK: usize = 128 * 1024;

fn byte_at(offset: u64) -> u8 {
    (offset.wrapping_mul(2654435761) >> 11) as u8
}

impl Throughput {
    pub async fn run(self, target: SocketAddr) -> crate::Result<ThroughputResult> {
        let started = Instant::now();
        let deadline = started + self.duration;
        let mut tasks = Vec::new();
        for _ in 0..self.streams {
            tasks.push(tokio::spawn(one_stream(
                target,
                deadline,
                self.verify_content,
            )));
        }
        let mut bytes = 0;
        for task in tasks {
            bytes += task.await.map_err(|e| e.to_string())??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        Ok(ThroughputResult {
            bytes_per_second: bytes as f64 / elapsed,
            bytes,
        })
    }
}

/// Writes until the deadline while reading the echo; done when everything sent came back.
/// (Ends by count rather than by EOF, so proxies without half-close support compare too.)
async fn one_stream(target: SocketAddr, deadline: Instant, verify: bool) -> crate::Result<u64> {
    let (mut reader, mut writer) = super::connect(target).await?.into_split();
    let (total_tx, mut total_rx) = tokio::sync::watch::channel(None::<u64>);
    let send = tokio::spawn(async move {
        let mut chunk = vec![0u8; CHUNK];
        let mut sent = 0u64;
        while Instant::now() < deadline {
            if verify {
                for (k, b) in chunk.iter_mut().enumerate() {
                    *b = byte_at(sent + k as u64);
                }
            }
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| format!("write: {e}"))?;
            sent += CHUNK as u64;
        }
        let _ = total_tx.send(Some(sent));
        Ok::<_, String>(writer)
    });
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0u64;
    loop {
        let known = *total_rx.borrow_and_update();
        if let Some(total) = known
            && received >= total
        {
            if received > total {
                return Err(format!(
                    "throughput: sent {total} bytes, {received} came back"
                ));
            }
            break;
        }
        let n = tokio::select! {
            n = reader.read(&mut buf) => n.map_err(|e| format!("read after {received} bytes: {e}"))?,
            _ = total_rx.changed() => continue,
        };
        if n == 0 {
            let total = *total_rx.borrow();
            return Err(format!(
                "throughput: closed after {received} bytes of {total:?}"
            ));
        }
        if verify {
            for (k, b) in buf[..n].iter().enumerate() {
                if *b != byte_at(received + k as u64) {
                    return Err(format!("throughput: byte {} differs", received + k as u64));
                }
            }
        }
        received += n as u64;
    }
    drop(send.await.map_err(|e| e.to_string())??);
    Ok(received)
}
