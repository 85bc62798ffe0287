//! Real OpenSSH for SSH tests: an `sshd` serving SFTP (internal-sftp, one directory per
//! user in a temporary root) and the `sftp`/`ssh` clients, driven non-interactively. Keys
//! are the example's (examples/keys), copied with the permissions OpenSSH insists on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The users the SFTP server knows (scripts/test creates them; so does the example's
/// backend.sh).
pub const USERS: [&str; 2] = ["alice", "bob"];

/// A user of the SFTP server and the system password it logs in with when the server takes
/// passwords ([`Sshd::with_passwords`]); scripts/test creates it and sets the password. Not
/// alice or bob: the example's backend.sh, run by a test, resets theirs.
pub const PASSWORD_LOGIN: (&str, &str) = ("carol", "carol-upstream-password");

/// The repository's examples/keys directory.
pub fn example_keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/keys")
}

/// A private key of examples/keys copied to `dir` with mode 0600 (git keeps no modes).
pub fn private_key(dir: &Path, name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::copy(example_keys().join(name), &path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// An OpenSSH sshd serving SFTP to alice and bob, who log in with `authorized_key`.
pub struct Sshd {
    pub address: SocketAddr,
    /// Each user's starting directory is `root/USER`.
    pub root: PathBuf,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd with the example's backend host key and waits until it accepts.
    pub async fn start() -> Sshd {
        Sshd::with_host_key("backend_host_ed25519").await
    }

    /// Starts sshd with examples/keys/`host_key`; the gateway's upstream key may log in.
    pub async fn with_host_key(host_key: &str) -> Sshd {
        Sshd::configured(host_key, false).await
    }

    /// Starts sshd that also takes passwords: [`PASSWORD_LOGIN`]'s user logs in with its
    /// password (scripts/test sets it).
    pub async fn with_passwords() -> Sshd {
        Sshd::configured("backend_host_ed25519", true).await
    }

    /// What the server logged so far (`Accepted publickey for alice ...` per login).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Ends every session the server is serving (its per-connection processes), as a
    /// server restart or a crash would; the server goes on accepting.
    pub fn drop_sessions(&self) {
        let Some(master) = self._child.id() else {
            return;
        };
        // Each connection's process calls setsid(): its group also holds what it forks,
        // even a process forked while this runs.
        let pids = descendants(master);
        let groups = pids.iter().map(|pid| format!("-{pid}"));
        let pids = pids.iter().map(u32::to_string);
        let targets: Vec<String> = groups.chain(pids).collect();
        if !targets.is_empty() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--"])
                .args(&targets)
                .stderr(Stdio::null())
                .status();
        }
    }

    async fn configured(host_key: &str, passwords: bool) -> Sshd {
        use std::os::unix::fs::PermissionsExt;
        let binary = Path::new("/usr/sbin/sshd");
        assert!(
            binary.exists(),
            "OpenSSH's sshd is installed (scripts/test installs it)"
        );
        let users: Vec<&str> = match passwords {
            true => [&USERS[..], &[PASSWORD_LOGIN.0]].concat(),
            false => USERS.to_vec(),
        };
        for user in &users {
            let known = std::process::Command::new("id")
                .arg("-u")
                .arg(user)
                .output()
                .unwrap();
            assert!(
                known.status.success(),
                "user {user} exists (scripts/test creates it)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let host = private_key(base, host_key);
        std::fs::copy(
            example_keys().join("upstream_ed25519.pub"),
            base.join("authorized_keys"),
        )
        .unwrap();
        let root = base.join("root");
        for user in &users {
            std::fs::create_dir_all(root.join(user)).unwrap();
            let chown = std::process::Command::new("chown")
                .arg(user)
                .arg(root.join(user))
                .status()
                .unwrap();
            assert!(chown.success());
        }
        let address = crate::closed_port();
        let config = base.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress {address}\nHostKey {}\nPidFile none\nUsePAM no\nStrictModes no\n\
                 AuthorizedKeysFile {}\nPasswordAuthentication {}\nKbdInteractiveAuthentication no\n\
                 AllowUsers {}\nMaxStartups 100\nSubsystem sftp internal-sftp -d {}/%u\n",
                host.display(),
                base.join("authorized_keys").display(),
                if passwords { "yes" } else { "no" },
                users.join(" "),
                root.display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = tokio::process::Command::new(binary)
            .arg("-D")
            .arg("-E")
            .arg(base.join("sshd.log"))
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        crate::accepting(address, Duration::from_secs(10), "sshd").await;
        Sshd {
            address,
            root,
            _child: child,
            _dir: dir,
        }
    }
}

/// The processes under `pid` (children, theirs...), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let parent_of = |p: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        // `pid (comm) state ppid ...`: comm may hold spaces; read after its ')'.
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|&&p| parent_of(p) == Some(parent)));
        i += 1;
    }
    found.remove(0);
    found
}

/// How an OpenSSH client proves who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    Key(PathBuf),
    Password(String),
}

/// Runs OpenSSH clients against the gateway, trusting only the gateway's example host key.
pub struct Client {
    dir: tempfile::TempDir,
    port: u16,
    /// Only the gateway's example host key is trusted (else: any, as for the demo's).
    strict: bool,
}

/// What a client run printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Client {
    pub fn new(gateway: SocketAddr) -> Client {
        let dir = tempfile::tempdir().unwrap();
        let host_key =
            std::fs::read_to_string(example_keys().join("gateway_host_ed25519.pub")).unwrap();
        std::fs::write(
            dir.path().join("known_hosts"),
            format!("[{}]:{} {host_key}", gateway.ip(), gateway.port()),
        )
        .unwrap();
        Client {
            dir,
            port: gateway.port(),
            strict: true,
        }
    }

    /// A client that accepts whatever host key the gateway presents (the demo makes one).
    pub fn trusting_any_host_key(gateway: SocketAddr) -> Client {
        let client = Client {
            strict: false,
            ..Client::new(gateway)
        };
        std::fs::write(client.dir.path().join("known_hosts"), "").unwrap();
        client
    }

    /// A scratch directory that lives as long as the client.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The example key of `name`, usable by the client.
    pub fn key(&self, name: &str) -> Credential {
        Credential::Key(private_key(self.dir.path(), name))
    }

    /// The command (`sftp` or `ssh`) with options for `credential`, not yet run.
    pub fn command(&self, program: &str, credential: &Credential) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(program);
        let port_flag = if program == "sftp" { "-P" } else { "-p" };
        command
            .arg(port_flag)
            .arg(self.port.to_string())
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir.path().join("known_hosts").display()
            ))
            .args(["-o", "ConnectTimeout=10", "-o"])
            .arg(match self.strict {
                true => "StrictHostKeyChecking=yes",
                false => "StrictHostKeyChecking=no",
            })
            .args(["-o", "NumberOfPasswordPrompts=1"])
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        match credential {
            Credential::Key(path) => {
                command
                    .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
                    .args(["-o", "PreferredAuthentications=publickey", "-i"])
                    .arg(path);
            }
            Credential::Password(password) => {
                // OpenSSH reads a password only from a terminal or SSH_ASKPASS.
                let askpass = self.dir.path().join(format!("askpass-{}", password.len()));
                std::fs::write(
                    &askpass,
                    format!("#!/bin/sh\nprintf '%s\\n' '{password}'\n"),
                )
                .unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
                command
                    .env("SSH_ASKPASS", &askpass)
                    .env("SSH_ASKPASS_REQUIRE", "force")
                    .args(["-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"])
                    .args([
                        "-o",
                        "PreferredAuthentications=password,keyboard-interactive",
                    ]);
            }
        }
        command
    }

    /// `sftp -b -` with `batch` as the commands, bounded at 60 s.
    pub async fn sftp(&self, user: &str, credential: &Credential, batch: &str) -> Run {
        let mut command = self.command("sftp", credential);
        command.args(["-b", "-"]).arg(format!("{user}@127.0.0.1"));
        run(command, batch.as_bytes()).await
    }

    /// `ssh user@gateway command...`, bounded at 60 s.
    pub async fn ssh(&self, user: &str, credential: &Credential, command_line: &str) -> Run {
        let mut command = self.command("ssh", credential);
        command.arg(format!("{user}@127.0.0.1")).arg(command_line);
        run(command, b"").await
    }
}

async fn run(mut command: tokio::process::Command, input: &[u8]) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut child = command.spawn().expect("OpenSSH client is installed");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the OpenSSH client ended within 60 s")
        .unwrap();
    Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
