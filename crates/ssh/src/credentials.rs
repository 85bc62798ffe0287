//! Keys and secrets read from files: the gateway's host keys, users' authorized keys and
//! password hashes, the credentials it logs in upstream with, and the upstream host keys it
//! trusts.

use russh::keys::{HashAlg, PrivateKey, PublicKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file that could not be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct KeyFileError {
    pub path: PathBuf,
    pub why: String,
}

fn failed(path: &Path, why: impl std::fmt::Display) -> KeyFileError {
    KeyFileError {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Why a key with `authorized_keys` options is refused.
pub const OPTIONS_UNSUPPORTED: &str = "key options (`from=`, `restrict`, `command=`, \
     `expiry-time=`...) are not enforced by the gateway: remove them (restrict sources with \
     the route's `authorization.rules`)";

/// Why an RSA key is refused without `legacy_algorithms`.
pub const RSA_NEEDS_LEGACY: &str = "an RSA key needs `legacy_algorithms: true` (RSA goes \
     through the `rsa` crate, whose timing advisory RUSTSEC-2023-0071 is open): use an Ed25519 \
     or ECDSA key";

/// Whether the key is RSA (only used with `legacy_algorithms`).
pub fn is_rsa(key: &PublicKey) -> bool {
    key.algorithm().is_rsa()
}

/// An unencrypted OpenSSH (or PEM) private key; RSA only when `legacy`.
pub fn private_key(path: &Path, legacy: bool) -> Result<PrivateKey, KeyFileError> {
    let key = russh::keys::load_secret_key(path, None).map_err(|e| failed(path, e))?;
    if !legacy && is_rsa(key.public_key()) {
        return Err(failed(path, RSA_NEEDS_LEGACY));
    }
    Ok(key)
}

/// The public keys of an `authorized_keys`-format file (comments and blank lines skipped;
/// a key with options is an error: they would not be enforced).
pub fn authorized_keys(path: &Path, legacy: bool) -> Result<Vec<PublicKey>, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| failed(path, e))?;
    parse_authorized_keys(&text, legacy)
        .map_err(|(line, why)| failed(path, format!("line {line}: {why}")))
}

/// The keys of `authorized_keys` text (RSA only when `legacy`); `Err((line, why))` for
/// the first bad line.
pub fn parse_authorized_keys(text: &str, legacy: bool) -> Result<Vec<PublicKey>, (usize, String)> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `options keytype base64 comment` or `keytype base64 comment`: the key starts at
        // the first field that parses as one.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let key = (0..fields.len().saturating_sub(1)).find_map(|start| {
            let key = PublicKey::from_openssh(&fields[start..].join(" ")).ok()?;
            Some((start, key))
        });
        match key {
            // Options (`from=`, `restrict`, `command=`, `expiry-time=`...) would not be
            // enforced: a key that relies on them is refused rather than let in unbounded.
            Some((start, _)) if start > 0 => return Err((i + 1, OPTIONS_UNSUPPORTED.into())),
            Some((_, key)) if !legacy && is_rsa(&key) => {
                return Err((i + 1, RSA_NEEDS_LEGACY.into()));
            }
            Some((_, key)) => keys.push(key),
            None => return Err((i + 1, "not a public key".into())),
        }
    }
    Ok(keys)
}

/// One public key file (`*.pub`).
pub fn public_key(path: &Path) -> Result<PublicKey, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| failed(path, e))?;
    PublicKey::from_openssh(text.trim()).map_err(|e| failed(path, e))
}

/// A key's SHA-256 fingerprint as OpenSSH prints it (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Whether `wanted` is `key` (same algorithm and key data; comments do not count).
pub fn same_key(key: &PublicKey, wanted: &PublicKey) -> bool {
    key.key_data() == wanted.key_data()
}

/// A password hash from the config: argon2 (PHC string) or bcrypt.
#[derive(Clone)]
pub enum PasswordHash {
    Argon2(String),
    Bcrypt(String),
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PasswordHash::Argon2(_) => "PasswordHash::Argon2(..)",
            PasswordHash::Bcrypt(_) => "PasswordHash::Bcrypt(..)",
        })
    }
}

impl PasswordHash {
    pub fn parse(text: &str) -> Result<PasswordHash, String> {
        if text.starts_with("$argon2") {
            argon2::PasswordHash::new(text).map_err(|e| format!("not an argon2 hash: {e}"))?;
            Ok(PasswordHash::Argon2(text.to_string()))
        } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
            // bcrypt checks its format when verifying; a probe finds a malformed one now.
            bcrypt::verify("", text).map_err(|e| format!("not a bcrypt hash: {e}"))?;
            Ok(PasswordHash::Bcrypt(text.to_string()))
        } else {
            Err("use an argon2 (`$argon2id$…`) or bcrypt (`$2b$…`) hash".into())
        }
    }

    /// A hash no password is known to match, as costly to check as `hash_password`'s:
    /// checked for logins that have no hash, so they are refused as slowly.
    pub fn dummy() -> &'static PasswordHash {
        // Whatever it matches, a login without a hash of its own is refused.
        static DUMMY: std::sync::LazyLock<PasswordHash> =
            std::sync::LazyLock::new(|| PasswordHash::Argon2(hash_password("no password")));
        &DUMMY
    }

    /// Slow on purpose (that is what these hashes are for): call it off the async workers.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            PasswordHash::Argon2(hash) => {
                use argon2::PasswordVerifier;
                argon2::PasswordHash::new(hash).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
            }
            PasswordHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }
}

/// An argon2id hash (random salt, default parameters) for `password_hash` in the config.
pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2id with a random salt")
        .to_string()
}

/// How the gateway logs in to an upstream server.
#[derive(Clone)]
pub enum UpstreamCredential {
    Key(Arc<PrivateKey>),
    Password(Arc<str>),
}

impl std::fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamCredential::Key(key) => write!(f, "Key({})", fingerprint(key.public_key())),
            UpstreamCredential::Password(_) => f.write_str("Password(..)"),
        }
    }
}

impl UpstreamCredential {
    pub fn from_key_file(path: &Path, legacy: bool) -> Result<Self, KeyFileError> {
        Ok(UpstreamCredential::Key(Arc::new(private_key(
            path, legacy,
        )?)))
    }

    /// The first line of the file is the password.
    pub fn from_password_file(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| failed(path, e))?;
        let password = text.lines().next().unwrap_or_default();
        if password.is_empty() {
            return Err(failed(path, "the password file is empty"));
        }
        Ok(UpstreamCredential::Password(password.into()))
    }
}

/// The upstream host keys the gateway trusts for one cluster.
#[derive(Debug, Clone, Default)]
pub struct HostKeyPolicy {
    pub keys: Vec<PublicKey>,
    pub fingerprints: Vec<String>,
    pub known_hosts: Option<PathBuf>,
}

impl HostKeyPolicy {
    pub fn load(config: &config::SshHostKeys) -> Result<Self, KeyFileError> {
        let keys = config
            .host_keys
            .iter()
            .map(|p| public_key(p))
            .collect::<Result<_, _>>()?;
        if let Some(path) = &config.known_hosts {
            std::fs::metadata(path).map_err(|e| failed(path, e))?;
        }
        Ok(HostKeyPolicy {
            keys,
            fingerprints: config.host_key_fingerprints.clone(),
            known_hosts: config.known_hosts.clone(),
        })
    }

    /// Whether the server at `host:port` may present `key`.
    pub fn trusts(&self, host: &str, port: u16, key: &PublicKey) -> bool {
        if self.keys.iter().any(|k| same_key(key, k)) {
            return true;
        }
        let print = fingerprint(key);
        if self.fingerprints.contains(&print) {
            return true;
        }
        self.known_hosts.as_ref().is_some_and(|path| {
            russh::keys::check_known_hosts_path(host, port, key, path).unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@example";

    #[test]
    fn authorized_keys_lines_comments_and_blanks() {
        let text = format!("# a comment\n\n{ED25519}\n  {ED25519}\n");
        let keys = parse_authorized_keys(&text, false).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(same_key(&keys[0], &keys[1]));
        assert_eq!(
            parse_authorized_keys("ssh-ed25519 notbase64", false)
                .unwrap_err()
                .0,
            1
        );
    }

    #[test]
    fn keys_with_options_are_refused_with_their_line() {
        for options in [
            "from=\"10.0.0.0/8\"",
            "restrict",
            "command=\"/bin/echo hi there\"",
            "expiry-time=\"20300101\"",
            "no-pty,no-port-forwarding",
        ] {
            let text = format!("# alice\n{ED25519}\n{options} {ED25519}\n");
            let (line, why) = parse_authorized_keys(&text, false).unwrap_err();
            assert_eq!(line, 3, "{options}");
            assert!(why.contains("not enforced"), "{why}");
        }
    }

    #[test]
    fn password_hashes_verify_and_refuse() {
        let bcrypt = bcrypt::hash("s3cret", 4).unwrap();
        let hash = PasswordHash::parse(&bcrypt).unwrap();
        assert!(hash.verify("s3cret"));
        assert!(!hash.verify("s3cret "));
        assert!(format!("{hash:?}").contains(".."), "never printed");
        let argon = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$hmU/yj0BUSqx1WIqS6gXaWU0Ng2ieGYy9rPsHgJ1e0M";
        let hash = PasswordHash::parse(argon).unwrap();
        assert!(!hash.verify("wrong"));
        let made = hash_password("open sesame");
        let hash = PasswordHash::parse(&made).unwrap();
        assert!(hash.verify("open sesame") && !hash.verify("open sesame!"));
        assert!(PasswordHash::parse("plaintext").is_err());
        assert!(PasswordHash::parse("$argon2id$garbage").is_err());
    }
}
