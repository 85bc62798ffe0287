//! SFTP transfers with OpenSSH's `sftp` client (its default algorithms, as a partner would
//! run it): a put and a get of one file, timed from launch to exit (handshake and login
//! included: milliseconds against seconds of transfer).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One place to transfer to and from: an SSH server (the gateway or the sshd itself) and
/// the key `user` logs in with.
pub struct SftpTransfer {
    pub server: SocketAddr,
    pub user: String,
    pub key: PathBuf,
}

impl SftpTransfer {
    /// `put LOCAL REMOTE`: bytes per second.
    pub fn put(&self, local: &Path, remote: &str) -> crate::Result<f64> {
        let bytes = file_len(local)?;
        let seconds = self.batch(&format!("put {} {remote}\n", local.display()))?;
        Ok(bytes as f64 / seconds)
    }

    /// `get REMOTE LOCAL`, then checks LOCAL holds exactly `expected`'s bytes: bytes per
    /// second.
    pub fn get(&self, remote: &str, local: &Path, expected: &Path) -> crate::Result<f64> {
        let _ = std::fs::remove_file(local);
        let seconds = self.batch(&format!("get {remote} {}\n", local.display()))?;
        same_contents(local, expected)?;
        Ok(file_len(local)? as f64 / seconds)
    }

    /// The cipher OpenSSH's client negotiates with the server, both directions.
    pub fn cipher(&self) -> crate::Result<String> {
        let output = (self.command(&["-v", "-b", "/dev/null"]).output())
            .map_err(|e| format!("sftp: {e}"))?;
        let log = String::from_utf8_lossy(&output.stderr);
        let cipher = |direction: &str| {
            log.lines()
                .find_map(|l| l.split_once(&format!("kex: {direction} cipher: ")))
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .unwrap_or("?")
                .to_string()
        };
        let (up, down) = (cipher("client->server"), cipher("server->client"));
        Ok(if up == down {
            up
        } else {
            format!("{up} / {down}")
        })
    }

    /// Runs `sftp -b -` with `batch` on its input: the seconds it took.
    fn batch(&self, batch: &str) -> crate::Result<f64> {
        use std::io::Write;
        let started = Instant::now();
        let mut child = (self
            .command(&["-o", "LogLevel=error", "-b", "-"])
            .stdin(Stdio::piped())
            .spawn())
        .map_err(|e| format!("sftp: {e}"))?;
        let mut input = child.stdin.take().expect("piped");
        input
            .write_all(batch.as_bytes())
            .map_err(|e| e.to_string())?;
        drop(input);
        let output = child.wait_with_output().map_err(|e| e.to_string())?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("sftp {}: {}", batch.trim(), stderr.trim()));
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// `sftp` to the server as the user with the key; keepalives end a stalled run.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("sftp");
        command
            .arg("-P")
            .arg(self.server.port().to_string())
            .arg("-i")
            .arg(&self.key)
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5"])
            .args(["-o", "ServerAliveCountMax=3"])
            .args(args)
            .arg(format!("{}@{}", self.user, self.server.ip()))
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

fn file_len(path: &Path) -> crate::Result<u64> {
    (std::fs::metadata(path).map(|m| m.len())).map_err(|e| format!("{}: {e}", path.display()))
}

/// Both files hold the same bytes.
fn same_contents(a: &Path, b: &Path) -> crate::Result<()> {
    use std::io::Read;
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()));
    let (mut a_file, mut b_file) = (open(a)?, open(b)?);
    let (mut a_buf, mut b_buf) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut a_file, &mut a_buf)?;
        let m = read_full(&mut b_file, &mut b_buf)?;
        if a_buf[..n] != b_buf[..m] {
            return Err(format!("{} differs from {}", a.display(), b.display()));
        }
        if n == 0 {
            return Ok(());
        }
    }

    fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> crate::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]).map_err(|e| e.to_string())? {
                0 => break,
                n => filled += n,
            }
        }
        Ok(filled)
    }
}
