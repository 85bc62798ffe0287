//! SSH through the gateway with OpenSSH's own `sftp`: the gateway terminates the session
//! (alice's key), logs in to a real sshd with its own key and relays the SFTP channel. Each
//! transfer puts a random file, gets it back under another name and compares the bytes.

use super::Soak;
use super::stats::{Outcome, Rng};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::io::AsyncWriteExt;

static TRANSFERS: AtomicU64 = AtomicU64::new(0);

/// One `sftp` run: put, get, remove.
pub async fn transfer(soak: &Soak, rng: &mut Rng) -> Outcome {
    let n = TRANSFERS.fetch_add(1, Relaxed);
    let dir = soak.ssh.dir();
    let (sent, back) = (dir.join(format!("put-{n}")), dir.join(format!("got-{n}")));
    let len = rng.between(1, 512 * 1024);
    let payload = rng.bytes(len);
    if let Err(e) = std::fs::write(&sent, &payload) {
        return Outcome::Failed(format!("{}: {e}", sent.display()));
    }
    let remote = format!("soak-{n}");
    let batch = format!(
        "put {} {remote}\nget {remote} {}\nrm {remote}\n",
        sent.display(),
        back.display()
    );
    let run = soak.ssh.sftp("alice", &soak.ssh_key, &batch).await;
    let got = std::fs::read(&back);
    let _ = std::fs::remove_file(&sent);
    let _ = std::fs::remove_file(&back);
    match (run.success, got) {
        (true, Ok(got)) if got == payload => Outcome::Ok(payload.len() as u64),
        (true, Ok(got)) => Outcome::Corrupted(format!(
            "SFTP: {} bytes put, {} got back, different",
            payload.len(),
            got.len()
        )),
        (_, got) => Outcome::Failed(format!(
            "sftp failed ({} bytes back): {}",
            got.map_or(0, |g| g.len()),
            run.stderr.trim().lines().last().unwrap_or("")
        )),
    }
}

/// An `sftp` session held open and idle (its commands come from a pipe we keep open).
pub struct IdleSftp {
    child: tokio::process::Child,
}

impl IdleSftp {
    /// Logs in and lists the home directory once, then idles.
    pub async fn open(soak: &Soak) -> crate::Result<IdleSftp> {
        let mut command = soak.ssh.command("sftp", &soak.ssh_key);
        command.args(["-b", "-"]).arg("alice@127.0.0.1");
        let mut child = command.spawn().map_err(|e| format!("sftp: {e}"))?;
        let stdin = child.stdin.as_mut().ok_or("sftp: no stdin")?;
        stdin
            .write_all(b"pwd\n")
            .await
            .map_err(|e| format!("sftp: {e}"))?;
        Ok(IdleSftp { child })
    }

    /// Asks once more after the idle time, then quits: true if the session was still there.
    pub async fn close(mut self) -> crate::Result<()> {
        let mut stdin = self.child.stdin.take().ok_or("sftp: no stdin")?;
        let asked = stdin.write_all(b"pwd\nbye\n").await;
        drop(stdin);
        let waited = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            self.child.wait_with_output(),
        )
        .await;
        let output = waited
            .map_err(|_| "idle sftp did not end".to_string())?
            .map_err(|e| format!("idle sftp: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let answers = stdout.matches("Remote working directory").count();
        match (asked, output.status.success(), answers) {
            (Ok(()), true, 2) => Ok(()),
            _ => Err(format!(
                "idle sftp session: {answers} of 2 answers, {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        }
    }
}
