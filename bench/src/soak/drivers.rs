//! Connection churn: each kind's workers open a connection, check every byte that comes
//! back, close it, and start again. Plain, TLS and tunnel connections send random bytes in
//! random chunks to an echo server and half-close; FIX ones log on to a FIX venue and check
//! each answer (framing, sequence numbers, the IDs they carry).

use super::Soak;
use super::chaos::{Phase, Snapshot};
use super::stats::{Kind, Outcome, Rng};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest one connection may take before it counts as failed.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// After an authorizer change, how long connections may still see the old answer (checks in
/// flight, the gRPC client reconnecting) before a mismatch counts as an error.
const AUTHZ_GRACE: Duration = Duration::from_secs(3);

/// Which authorizer a kind's route asks, and what it does when the authorizer cannot answer.
#[derive(Clone, Copy, PartialEq)]
enum Authz {
    None,
    FailOpen,
    FailClosed,
}

fn authz_of(kind: Kind) -> Authz {
    match kind {
        Kind::Plain => Authz::FailOpen,
        Kind::Tls => Authz::FailClosed,
        _ => Authz::None,
    }
}

/// Starts `workers` loops churning `kind`, each pausing `pause` between connections.
pub fn churn(soak: &Arc<Soak>, kind: Kind, workers: usize, pause: Duration) {
    for worker in 0..workers {
        let soak = soak.clone();
        tokio::spawn(async move {
            let mut rng = Rng::new(super::seed() ^ (worker as u64) << 32);
            while !soak.control.stopped() {
                if soak.control.paused() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                soak.control.in_flight.fetch_add(1, Relaxed);
                let before = soak.authz.snapshot();
                let outcome =
                    match tokio::time::timeout(CONNECTION_TIMEOUT, once(&soak, kind, &mut rng))
                        .await
                    {
                        Ok(outcome) => outcome,
                        Err(_) => Outcome::Failed(format!("no end within {CONNECTION_TIMEOUT:?}")),
                    };
                let after = soak.authz.snapshot();
                soak.control.in_flight.fetch_sub(1, Relaxed);
                judge(&soak, kind, before, after, outcome);
                tokio::time::sleep(pause).await;
            }
        });
    }
}

async fn once(soak: &Soak, kind: Kind, rng: &mut Rng) -> Outcome {
    let size = payload_size(rng);
    match kind {
        Kind::Plain => match tcp(soak.addresses.plain).await {
            Ok(stream) => echo_exchange(stream, rng, size).await,
            Err(e) => Outcome::Failed(e),
        },
        Kind::Tunnel => match tcp(soak.addresses.edge).await {
            Ok(stream) => echo_exchange(stream, rng, size).await,
            Err(e) => Outcome::Failed(e),
        },
        Kind::Tls => match tcp(soak.addresses.tls).await {
            Ok(stream) => match soak.tls.handshake(stream).await {
                Ok(tls) => echo_exchange(tls, rng, size).await,
                Err(e) => Outcome::Failed(e),
            },
            Err(e) => Outcome::Failed(e),
        },
        Kind::Fix => fix_session(soak, rng).await,
        Kind::Ssh => super::sftp::transfer(soak, rng).await,
    }
}

/// Mostly small exchanges, one in ten up to 256 KiB.
fn payload_size(rng: &mut Rng) -> usize {
    match rng.next() % 10 {
        0 => rng.between(16 * 1024, 256 * 1024),
        _ => rng.between(1, 4096),
    }
}

pub async fn tcp(address: std::net::SocketAddr) -> Result<tokio::net::TcpStream, String> {
    crate::modes::connect(address).await
}

/// Counts the outcome, checking it against what the authorizer was saying: a connection the
/// authorizer (or its fail mode) should have refused that got through is an error, and so is
/// a refusal it should not have made — unless the answer changed while it was decided.
fn judge(soak: &Soak, kind: Kind, before: Snapshot, after: Snapshot, outcome: Outcome) {
    let stats = soak.stats(kind);
    let route = authz_of(kind);
    let settled = before.epoch == after.epoch && before.since_change >= AUTHZ_GRACE;
    let should_pass = match (route, before.phase) {
        (Authz::None, _) | (_, Phase::Allow) => true,
        (_, Phase::Deny) => false,
        (Authz::FailOpen, _) => true,
        (Authz::FailClosed, _) => false,
    };
    match outcome {
        Outcome::Ok(_) if settled && !should_pass => stats.error(format!(
            "let through while the authorizer was {:?} (route fail mode {})",
            before.phase,
            if route == Authz::FailOpen {
                "allow"
            } else {
                "deny"
            }
        )),
        Outcome::Ok(bytes) => stats.ok(bytes),
        Outcome::Refused(why) if route == Authz::None || (settled && should_pass) => stats.error(
            format!("refused while the authorizer was {:?}: {why}", before.phase),
        ),
        Outcome::Refused(_) => {
            stats.refused.fetch_add(1, Relaxed);
        }
        Outcome::Corrupted(what) => stats.corrupted(what),
        Outcome::Failed(why) => stats.error(why),
    }
}

/// Sends `size` random bytes in random chunks while reading the echo, half-closes, and
/// expects exactly those bytes back, then the end of the stream.
pub async fn echo_exchange<S>(stream: S, rng: &mut Rng, size: usize) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let payload = rng.bytes(size);
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < size {
        let end = (at + rng.between(1, 16 * 1024)).min(size);
        cuts.push((at, end));
        at = end;
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        for &(from, to) in &cuts {
            writer.write_all(&payload[from..to]).await?;
        }
        writer.shutdown().await
    };
    let read = async {
        let mut got = 0;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => return (got, ReadEnd::Eof),
                Ok(n) => match payload.get(got..got + n) {
                    Some(expected) if expected == &buf[..n] => got += n,
                    _ => return (got, ReadEnd::Corrupt(corruption(&payload, got, &buf[..n]))),
                },
                Err(e) => return (got, ReadEnd::Error(e.to_string())),
            }
        }
    };
    let (written, (got, read)) = tokio::join!(write, read);
    classify(size, written, got, read)
}

/// How reading an echo ended.
enum ReadEnd {
    Eof,
    Corrupt(String),
    Error(String),
}

fn classify(size: usize, written: std::io::Result<()>, got: usize, read: ReadEnd) -> Outcome {
    match read {
        ReadEnd::Corrupt(what) => Outcome::Corrupted(what),
        ReadEnd::Eof if got == size && written.is_ok() => Outcome::Ok(size as u64),
        read => {
            let read = match read {
                ReadEnd::Error(e) => format!("read: {e}"),
                _ => "closed".to_string(),
            };
            let why = match written {
                Err(e) => format!("write: {e}; {read}"),
                Ok(()) => read,
            };
            match got {
                0 => Outcome::Refused(why),
                _ => Outcome::Failed(format!("{got} of {size} bytes came back: {why}")),
            }
        }
    }
}

/// Where a received chunk first differs from what was sent.
fn corruption(payload: &[u8], offset: usize, received: &[u8]) -> String {
    match (payload[offset..].iter().zip(received)).position(|(a, b)| a != b) {
        Some(i) => format!(
            "byte {} of {} came back as {:#04x}, sent {:#04x}",
            offset + i,
            payload.len(),
            received[i],
            payload[offset + i]
        ),
        None => format!("more bytes came back than the {} sent", payload.len()),
    }
}

/// A FIX session through the gateway: Logon (routed on TargetCompID VENUE), a few
/// TestRequests and orders whose answers must carry back their random IDs, Logout.
async fn fix_session(soak: &Soak, rng: &mut Rng) -> Outcome {
    use testkit::fix::Session;
    let mut session = match Session::initiate(soak.addresses.fix, "CLIENT1", "VENUE", &[]).await {
        Ok(session) => session,
        Err(e) => return Outcome::Failed(format!("FIX connect: {e}")),
    };
    match session.receive().await {
        Ok(Some(logon)) if logon.msg_type() == "A" => {}
        Ok(other) => return Outcome::Refused(format!("Logon answered by {other:?}")),
        Err(e) => return fix_error(e),
    }
    for _ in 0..rng.between(1, 4) {
        let len = rng.between(1, 2000);
        let id = rng.token(len);
        let (ask, answer, tag) = match rng.next() % 2 {
            0 => ("1", "0", 112),
            _ => ("D", "8", 11),
        };
        if let Err(e) = session.send(ask, &[(tag, &id)]).await {
            return Outcome::Failed(format!("FIX send: {e}"));
        }
        match session.receive().await {
            Ok(Some(m)) if m.msg_type() == answer && m.get(tag) == Some(&id) => {}
            Ok(Some(m)) => {
                return Outcome::Corrupted(format!("FIX answer {:?} to {ask} {id}", m.fields));
            }
            Ok(None) => return Outcome::Failed("FIX session closed mid-way".into()),
            Err(e) => return fix_error(e),
        }
    }
    if let Err(e) = session.send("5", &[]).await {
        return Outcome::Failed(format!("FIX Logout: {e}"));
    }
    match session.receive().await {
        Ok(Some(m)) if m.msg_type() == "5" => {}
        Ok(other) => return Outcome::Failed(format!("Logout answered by {other:?}")),
        Err(e) => return fix_error(e),
    }
    soak.venue.transcripts.lock().unwrap().clear();
    Outcome::Ok(session.transcript.sent.len() as u64)
}

/// A message that does not frame (checksum, length), is out of sequence or names the wrong
/// CompIDs came back different from what was sent.
fn fix_error(e: std::io::Error) -> Outcome {
    match e.kind() {
        std::io::ErrorKind::InvalidData => Outcome::Corrupted(format!("FIX: {e}")),
        _ => Outcome::Failed(format!("FIX: {e}")),
    }
}

/// Whether the authorizer phases matter to `kind` (for the summary).
pub fn authorized(kind: Kind) -> &'static str {
    match authz_of(kind) {
        Authz::None => "-",
        Authz::FailOpen => "ext_authz, fail open",
        Authz::FailClosed => "ext_authz, fail closed",
    }
}
