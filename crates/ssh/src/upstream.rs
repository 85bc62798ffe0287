//! The gateway as an SSH client of the upstream server: over whatever stream the dial step
//! made (plain, TLS, PROXY header, tunnel), with the host key verified before anything else
//! and the gateway's own credentials.

use crate::credentials::{HostKeyPolicy, UpstreamCredential, fingerprint};
use russh::client;
use russh::keys::PrivateKeyWithHashAlg;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// Why the upstream session could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("the upstream host key {presented} is not one this cluster trusts")]
    HostKeyMismatch { presented: String },
    #[error("the upstream refused the gateway's credentials for `{user}`")]
    AuthRefused { user: String },
    #[error("the upstream SSH handshake failed: {0}")]
    Handshake(String),
    #[error("the upstream did not finish the SSH handshake in time")]
    Timeout,
}

impl UpstreamError {
    /// A stable label for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::HostKeyMismatch { .. } => "host_key_mismatch",
            UpstreamError::AuthRefused { .. } => "auth_refused",
            UpstreamError::Handshake(_) => "handshake_failed",
            UpstreamError::Timeout => "timeout",
        }
    }
}

/// Checks the server's key against the cluster's policy; remembers a key it refused.
pub struct Verifier {
    policy: Arc<HostKeyPolicy>,
    host: String,
    port: u16,
    refused: Arc<Mutex<Option<String>>>,
    /// Dropped with the verifier, when the session's task ends (whoever ended it): the
    /// receiver learns the upstream session is gone.
    _alive: tokio::sync::oneshot::Sender<()>,
}

/// Completes when the upstream session has ended (the server dropped it, the connection
/// broke, or the gateway closed it).
pub struct Gone(tokio::sync::oneshot::Receiver<()>);

impl Future for Gone {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            // Host certificates are not trusted by authority (yet): never offered.
            russh::keys::PublicKeyOrCertificate::Certificate(_) => return Ok(false),
        };
        let trusted = self.policy.trusts(&self.host, self.port, key);
        if !trusted {
            *self.refused.lock().unwrap() = Some(fingerprint(key));
        }
        Ok(trusted)
    }
}

pub type Handle = client::Handle<Verifier>;

/// Where and as whom to log in.
pub struct Login<'a> {
    /// The SSH server's host and port, for `known_hosts` (through a tunnel: where the
    /// tunnel goes, not the proxy).
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub credential: &'a UpstreamCredential,
    pub policy: Arc<HostKeyPolicy>,
}

/// The client configuration every upstream session uses.
pub fn config(legacy: bool) -> Arc<client::Config> {
    Arc::new(client::Config {
        preferred: crate::algorithms::preferred(legacy),
        // The client side's keepalives are the downstream's business; upstream sessions
        // live as long as the client's.
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    })
}

/// SSH over `stream`: handshake, host key verified, logged in, all within `timeout`; with
/// the session's end to watch.
pub async fn connect<S>(
    stream: S,
    login: Login<'_>,
    config: Arc<client::Config>,
    timeout: Duration,
) -> Result<(Handle, Gone), UpstreamError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let refused = Arc::new(Mutex::new(None));
    let (alive, gone) = tokio::sync::oneshot::channel();
    let verifier = Verifier {
        policy: login.policy.clone(),
        host: login.host.to_string(),
        port: login.port,
        refused: refused.clone(),
        _alive: alive,
    };
    let session = async {
        let mut handle = match client::connect_stream(config, stream, verifier).await {
            Ok(handle) => handle,
            Err(e) => {
                return Err(match refused.lock().unwrap().take() {
                    Some(presented) => UpstreamError::HostKeyMismatch { presented },
                    None => UpstreamError::Handshake(e.to_string()),
                });
            }
        };
        let result = match login.credential {
            UpstreamCredential::Key(key) => {
                let hash = match key.algorithm().is_rsa() {
                    true => handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| UpstreamError::Handshake(e.to_string()))?
                        .flatten(),
                    false => None,
                };
                let key = PrivateKeyWithHashAlg::new(key.clone(), hash);
                handle.authenticate_publickey(login.user, key).await
            }
            UpstreamCredential::Password(password) => {
                handle
                    .authenticate_password(login.user, password.to_string())
                    .await
            }
        };
        match result {
            Ok(r) if r.success() => Ok((handle, Gone(gone))),
            Ok(_) => Err(UpstreamError::AuthRefused {
                user: login.user.to_string(),
            }),
            Err(e) => Err(UpstreamError::Handshake(e.to_string())),
        }
    };
    tokio::time::timeout(timeout, session)
        .await
        .unwrap_or(Err(UpstreamError::Timeout))
}
