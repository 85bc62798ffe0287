//! TLS 1.3 termination, measured alike for every proxy: one ECDSA P-256 certificate (made
//! here, the same files for all), one key exchange group (X25519, which every proxy here
//! offers; recorded in the report), and a client that either resumes sessions or never does.
//!
//! The client does not verify the proxy's certificate: the run measures the proxies, and a
//! verifying client would spend more on each handshake than the server it measures.

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The server name every TLS target's certificate carries and every client asks for.
pub const SERVER_NAME: &str = "bench.causeway.test";
/// The one key exchange group of every handshake.
pub const KEY_EXCHANGE: &str = "X25519";

/// The certificate and key files every TLS target serves.
pub struct Pki {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate then key in one file (HAProxy's `crt`).
    pub combined: PathBuf,
    /// The CA that signed it: what the mTLS tunnels' two ends trust.
    pub ca: PathBuf,
}

impl Pki {
    /// Where [`Pki::write`] puts the files in `dir`.
    pub fn files(dir: &Path) -> Pki {
        Pki {
            cert: dir.join("bench-tls.pem"),
            key: dir.join("bench-tls-key.pem"),
            combined: dir.join("bench-tls-combined.pem"),
            ca: dir.join("bench-ca.pem"),
        }
    }

    /// A throwaway CA and an ECDSA P-256 certificate for [`SERVER_NAME`] (good for servers
    /// and clients: the mTLS tunnels' two ends both present it), in `dir`.
    pub fn write(dir: &Path) -> crate::Result<Pki> {
        let authority = testkit::pki::Ca::new("bench CA");
        authority.write(dir, "bench-ca");
        let leaf = authority.server(&[SERVER_NAME]);
        leaf.write(dir, "bench-tls");
        let pki = Pki::files(dir);
        std::fs::write(&pki.combined, format!("{}{}", leaf.cert_pem, leaf.key_pem))
            .map_err(|e| format!("{}: {e}", pki.combined.display()))?;
        Ok(pki)
    }
}

/// A TLS 1.3 client: resuming sessions (tickets kept in memory) or never; it counts which
/// handshakes were resumed.
#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
    resume: bool,
    resumed: Arc<AtomicU64>,
    full: Arc<AtomicU64>,
}

impl Client {
    pub fn new(resume: bool) -> Client {
        Client {
            connector: connector(resume),
            resume,
            resumed: Arc::default(),
            full: Arc::default(),
        }
    }

    /// The same client with a session store of its own (counted with this one): each of
    /// several concurrent clients resumes its own sessions, as separate machines would.
    /// (One shared store would keep 8 tickets for the server, too few for 16 at once.)
    pub fn another(&self) -> Client {
        Client {
            connector: connector(self.resume),
            resume: self.resume,
            resumed: self.resumed.clone(),
            full: self.full.clone(),
        }
    }

    pub async fn handshake(&self, tcp: TcpStream) -> crate::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(SERVER_NAME).expect("a valid name");
        let stream =
            (self.connector.connect(name, tcp).await).map_err(|e| format!("TLS handshake: {e}"))?;
        match stream.get_ref().1.handshake_kind() {
            Some(HandshakeKind::Resumed) => self.resumed.fetch_add(1, Relaxed),
            _ => self.full.fetch_add(1, Relaxed),
        };
        Ok(stream)
    }

    /// The share of handshakes so far that resumed a session (0 to 1).
    pub fn resumed_share(&self) -> f64 {
        let (resumed, full) = (self.resumed.load(Relaxed), self.full.load(Relaxed));
        resumed as f64 / (resumed + full).max(1) as f64
    }
}

fn connector(resume: bool) -> TlsConnector {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the provider speaks TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer))
        .with_no_client_auth();
    config.resumption = if resume {
        Resumption::in_memory_sessions(16)
    } else {
        Resumption::disabled()
    };
    TlsConnector::from(Arc::new(config))
}

#[derive(Debug)]
struct AcceptAnyServer;

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    /// Never asked: the client speaks TLS 1.3 only.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls13_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ECDSA_NISTP256_SHA256]
    }
}
