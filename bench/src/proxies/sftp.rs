//! SFTP through Causeway: a real OpenSSH sshd (testkit's, serving internal-sftp to alice)
//! behind a Causeway SSH listener that terminates the client's session and logs in to the
//! sshd with its own key (`examples/sftp.yaml`'s setup, audit log on). The direct baseline
//! is the same sshd without the gateway.

use super::Launch;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::ssh::{Sshd, example_keys, private_key};

/// The user every transfer logs in as (scripts/test and bench/compare create it).
pub const USER: &str = "alice";
/// The file put and got, in the run's directory.
pub const FILE_NAME: &str = "sftp-256MiB";
pub const FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The sshd behind the gateway, and the key that logs in to it directly.
pub struct SftpOrigin {
    pub sshd: Sshd,
    pub direct_key: PathBuf,
    pub gateway_key: PathBuf,
}

impl SftpOrigin {
    /// Starts sshd; writes the client keys (mode 0600) and the file to transfer into `dir`.
    pub fn start(dir: &Path) -> crate::Result<SftpOrigin> {
        let known = Command::new("id").arg("-u").arg(USER).output();
        if !known.is_ok_and(|o| o.status.success()) {
            return Err(format!(
                "causeway-sftp: user {USER} is missing (bench/compare creates it)"
            ));
        }
        if !Path::new("/usr/sbin/sshd").exists() {
            return Err("causeway-sftp: /usr/sbin/sshd is missing (openssh-server)".into());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let sshd = runtime.block_on(Sshd::start());
        write_random_file(&dir.join(FILE_NAME), FILE_BYTES)?;
        Ok(SftpOrigin {
            sshd,
            direct_key: private_key(dir, "upstream_ed25519"),
            gateway_key: private_key(dir, USER),
        })
    }
}

/// `bytes` from /dev/urandom (nothing for a cipher or a compressor to take shortcuts on).
fn write_random_file(path: &Path, bytes: u64) -> crate::Result<()> {
    use std::io::Read;
    let mut random = std::fs::File::open("/dev/urandom")
        .map_err(|e| format!("/dev/urandom: {e}"))?
        .take(bytes);
    let mut file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    std::io::copy(&mut random, &mut file).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

impl Launch<'_> {
    /// Causeway's SSH listener on `address` in front of `origin`.
    pub(super) fn causeway_sftp(
        &self,
        address: SocketAddr,
        origin: &SftpOrigin,
    ) -> crate::Result<Command> {
        let keys = example_keys();
        let host_key = private_key(self.dir, "gateway_host_ed25519");
        let upstream_key = private_key(self.dir, "upstream_ed25519");
        self.causeway(
            "causeway-sftp.yaml",
            format!(
                "listeners:\n  - name: sftp\n    address: {address}\n    protocol: ssh\n    connection_limit: 1000000\n    ssh:\n      host_keys: [{host}]\n      users: [{{ name: {USER}, authorized_keys: {keys}/{USER}.pub }}]\n    routes:\n      - match: {{ ssh: {{ user: [{USER}] }} }}\n        cluster: sftp\n        idle_timeout: 0s\n        ssh:\n          private_key: {upstream}\n          allow: {{ sftp: true, exec: false, shell: false, port_forwarding: false }}\n          audit_log: {audit}\nclusters:\n  - name: sftp\n    endpoints: [{{ address: \"{sshd}\" }}]\n    ssh: {{ host_keys: [{keys}/backend_host_ed25519.pub] }}\n",
                host = host_key.display(),
                keys = keys.display(),
                upstream = upstream_key.display(),
                audit = self.dir.join("sftp-audit.jsonl").display(),
                sshd = origin.sshd.address,
            ),
        )
    }
}
