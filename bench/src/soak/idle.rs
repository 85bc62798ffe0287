//! Long-lived idle connections of every kind, opened before the churn starts and held to
//! the end: reloads and authorizer flaps must leave them alone. Each is checked with a small
//! echo (FIX: a TestRequest) every half minute and at the end; SFTP sessions at the end.

use super::Soak;
use super::sftp::IdleSftp;
use super::stats::{Kind, Rng};
use crate::modes::Conn;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use testkit::fix::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many of each kind (SSH: sftp processes, so few).
pub const COUNTS: [(Kind, usize); 5] = [
    (Kind::Plain, 100),
    (Kind::Tls, 50),
    (Kind::Tunnel, 50),
    (Kind::Fix, 20),
    (Kind::Ssh, 2),
];

pub struct Idle {
    streams: Vec<(Kind, Conn)>,
    fix: Vec<Session<TcpStream>>,
    sftp: Vec<IdleSftp>,
}

impl Idle {
    pub async fn open(soak: &Soak, rng: &mut Rng) -> crate::Result<Idle> {
        let mut idle = Idle {
            streams: Vec::new(),
            fix: Vec::new(),
            sftp: Vec::new(),
        };
        for (kind, count) in COUNTS {
            for _ in 0..count {
                match kind {
                    Kind::Fix => idle.fix.push(fix_logon(soak).await?),
                    Kind::Ssh => idle.sftp.push(IdleSftp::open(soak).await?),
                    _ => {
                        let mut conn = open_stream(soak, kind).await?;
                        ping(&mut conn, rng)
                            .await
                            .map_err(|e| format!("idle {}: {e}", kind.name()))?;
                        idle.streams.push((kind, conn));
                    }
                }
                soak.stats(kind).idle_held.fetch_add(1, Relaxed);
            }
        }
        Ok(idle)
    }

    /// Checks every idle connection until the soak stops churning, then once more.
    pub async fn hold(mut self, soak: &Soak, mut rng: Rng) {
        while !soak.control.stopped() {
            for _ in 0..300 {
                if soak.control.stopped() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            self.check(soak, &mut rng).await;
        }
        for mut session in self.fix.drain(..) {
            let ended = async {
                session.send("5", &[]).await.map_err(|e| e.to_string())?;
                match session.receive().await {
                    Ok(Some(m)) if m.msg_type() == "5" => Ok(()),
                    other => Err(format!("Logout answered by {other:?}")),
                }
            };
            if let Err(e) = ended.await {
                soak.stats(Kind::Fix).idle_lost(e);
            }
        }
        for sftp in self.sftp.drain(..) {
            if let Err(e) = sftp.close().await {
                soak.stats(Kind::Ssh).idle_lost(e);
            }
        }
    }

    /// Pings each stream and FIX session; the ones that fail are counted lost and dropped.
    async fn check(&mut self, soak: &Soak, rng: &mut Rng) {
        let mut kept = Vec::new();
        for (kind, mut conn) in self.streams.drain(..) {
            match ping(&mut conn, rng).await {
                Ok(()) => kept.push((kind, conn)),
                Err(e) if e.starts_with("CORRUPTED") => soak.stats(kind).corrupted(e),
                Err(e) => soak.stats(kind).idle_lost(e),
            }
        }
        self.streams = kept;
        let mut kept = Vec::new();
        for mut session in self.fix.drain(..) {
            let id = rng.token(16);
            let answered = async {
                session
                    .send("1", &[(112, &id)])
                    .await
                    .map_err(|e| e.to_string())?;
                match session.receive().await {
                    Ok(Some(m)) if m.msg_type() == "0" && m.get(112) == Some(&id) => Ok(()),
                    other => Err(format!("TestRequest {id} answered by {other:?}")),
                }
            };
            match tokio::time::timeout(Duration::from_secs(10), answered).await {
                Ok(Ok(())) => kept.push(session),
                Ok(Err(e)) => soak.stats(Kind::Fix).idle_lost(e),
                Err(_) => soak
                    .stats(Kind::Fix)
                    .idle_lost("no Heartbeat in 10 s".into()),
            }
        }
        self.fix = kept;
    }
}

async fn open_stream(soak: &Soak, kind: Kind) -> crate::Result<Conn> {
    let address = match kind {
        Kind::Plain => soak.addresses.plain,
        Kind::Tls => soak.addresses.tls,
        _ => soak.addresses.edge,
    };
    let tcp = super::drivers::tcp(address).await?;
    Ok(match kind {
        Kind::Tls => Conn::Tls(Box::new(soak.tls.handshake(tcp).await?)),
        _ => Conn::Plain(tcp),
    })
}

async fn fix_logon(soak: &Soak) -> crate::Result<Session<TcpStream>> {
    let mut session = Session::initiate(soak.addresses.fix, "CLIENT1", "VENUE", &[])
        .await
        .map_err(|e| format!("idle FIX: {e}"))?;
    match session.receive().await {
        Ok(Some(m)) if m.msg_type() == "A" => Ok(session),
        other => Err(format!("idle FIX: Logon answered by {other:?}")),
    }
}

/// A small random echo, checked byte for byte, within 10 s.
async fn ping(conn: &mut Conn, rng: &mut Rng) -> crate::Result<()> {
    let len = rng.between(1, 512);
    let payload = rng.bytes(len);
    let exchange = async {
        conn.write_all(&payload)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut back = vec![0u8; payload.len()];
        conn.read_exact(&mut back)
            .await
            .map_err(|e| format!("read: {e}"))?;
        match back == payload {
            true => Ok(()),
            false => Err("CORRUPTED: the echo differs".to_string()),
        }
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "no echo in 10 s".to_string())?
}
