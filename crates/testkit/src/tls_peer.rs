//! TLS peers for tests: a rustls client, and TLS backends (echo, optionally requiring a
//! client certificate) that report what they saw.

use crate::pki::Leaf;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

fn roots(ca: &CertificateDer<'static>) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    Arc::new(roots)
}

/// A client trusting `ca`, presenting `cert` when given, offering `alpn`.
pub fn client_config(
    ca: &CertificateDer<'static>,
    cert: Option<&Leaf>,
    alpn: &[&str],
) -> Arc<ClientConfig> {
    tls::install_provider();
    let builder = ClientConfig::builder().with_root_certificates(roots(ca));
    let mut config = match cert {
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.cert_der.clone()], leaf.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// Connects and completes a TLS handshake for `sni`.
pub async fn connect(
    address: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// A server presenting `cert`; with `client_ca`, it requires a client certificate from it.
pub fn server_config(
    cert: &Leaf,
    client_ca: Option<&CertificateDer<'static>>,
) -> Arc<ServerConfig> {
    tls::install_provider();
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        Some(ca) => builder
            .with_client_cert_verifier(WebPkiClientVerifier::builder(roots(ca)).build().unwrap()),
        None => builder.with_no_client_auth(),
    };
    Arc::new(
        builder
            .with_single_cert(vec![cert.cert_der.clone()], cert.key())
            .unwrap(),
    )
}

/// Accepts TLS on a plain test backend's stream; `None` when the handshake failed.
pub async fn accept(
    stream: TcpStream,
    config: Arc<ServerConfig>,
) -> Option<server::TlsStream<TcpStream>> {
    TlsAcceptor::from(config).accept(stream).await.ok()
}

/// The SPIFFE ID in the client certificate of a server-side session.
pub fn peer_spiffe_id(stream: &server::TlsStream<TcpStream>) -> Option<String> {
    let cert = stream.get_ref().1.peer_certificates()?.first()?;
    tls::PeerIdentity::from_certificate(cert).ok()?.spiffe_id
}

/// What `openssl s_client` did: whether the backend's greeting (`echo`) came, and all it
/// printed (`Reused, TLSv1.3` on a resumed session).
pub struct OpensslSession {
    pub greeted: bool,
    pub said: String,
}

/// `openssl s_client` to `address` for `echo.causeway.test`, trusting `dir/client-ca.pem`,
/// presenting `dir/client.pem` when `with_certificate`; it saves its session to
/// `dir/session.pem` or, when `resume`, resumes the one saved there.
pub async fn openssl_session(
    address: SocketAddr,
    dir: &std::path::Path,
    with_certificate: bool,
    resume: bool,
) -> OpensslSession {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut command = tokio::process::Command::new("openssl");
    command
        .args(["s_client", "-connect", &address.to_string()])
        .args(["-servername", "echo.causeway.test"])
        .arg("-CAfile")
        .arg(dir.join("client-ca.pem"));
    if with_certificate {
        command.arg("-cert").arg(dir.join("client.pem"));
        command.arg("-key").arg(dir.join("client-key.pem"));
    }
    let mut child = command
        .arg(if resume { "-sess_in" } else { "-sess_out" })
        .arg(dir.join("session.pem"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl is installed (scripts/test installs it)");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut said, mut greeted) = (String::new(), false);
    loop {
        let mut line = String::new();
        match stdout.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => said.push_str(&line),
        }
        if line.trim_end() == "echo" {
            greeted = true;
            break;
        }
    }
    // The session (and its ticket) is saved by now; end the client.
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"Q\n").await;
    drop(stdin);
    let _ = child.wait().await;
    OpensslSession { greeted, said }
}
