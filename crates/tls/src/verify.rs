//! Peer verification on identities that rotate: every handshake verifies against the trust
//! bundle current at that moment, then checks who the peer is (SPIFFE ID or DNS name). A
//! refused identity fails the handshake with an `access_denied` alert.

use crate::configs::Named;
use crate::material::{Material, provider};
use crate::peer::PeerIdentity;
use config::AllowedPeers;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

fn bundle_of(trust: &Named) -> Result<Arc<Material>, Error> {
    trust
        .current()
        .filter(|m| !m.bundle.is_empty())
        .ok_or_else(|| {
            Error::General(format!(
                "identity `{}` has no trust bundle loaded",
                trust.name
            ))
        })
}

fn refused(side: &str, identity: &PeerIdentity) -> Error {
    tracing::warn!(spiffe_id = ?identity.spiffe_id, dns_names = ?identity.dns_names, subject = %identity.subject, "{side} identity refused");
    Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

fn tls12_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &provider().signature_verification_algorithms,
    )
}

fn tls13_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider().signature_verification_algorithms,
    )
}

fn schemes() -> Vec<SignatureScheme> {
    provider()
        .signature_verification_algorithms
        .supported_schemes()
}

/// Client certificates: chained to `trust`'s bundle, then (if set) an allowed identity.
#[derive(Debug)]
pub(crate) struct ClientVerifier {
    pub trust: Named,
    pub mandatory: bool,
    pub allowed: Option<AllowedPeers>,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The bundle rotates; clients choose their certificate without hints.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let material = bundle_of(&self.trust)?;
        let chain = material
            .client_verifier
            .as_ref()
            .expect("a material with a bundle has a verifier");
        chain.verify_client_cert(end_entity, intermediates, now)?;
        // Always read: a certificate whose identity is ambiguous is refused on every route.
        let identity = PeerIdentity::from_certificate(end_entity).map_err(|e| {
            tracing::warn!("client identity refused: {e}");
            Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        })?;
        if let Some(allowed) = &self.allowed
            && !allowed.allows(identity.spiffe_id.as_deref())
        {
            return Err(refused("client", &identity));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}

/// Server certificates: chained to `trust`'s bundle, then one of `spiffe_ids`, or valid for
/// `dns_name` (default: the name we sent).
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    pub trust: Named,
    pub spiffe_ids: Vec<String>,
    pub dns_name: Option<ServerName<'static>>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let material = bundle_of(&self.trust)?;
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &material.bundle,
            intermediates,
            now,
            provider().signature_verification_algorithms.all,
        )?;
        if self.spiffe_ids.is_empty() {
            let name = self.dns_name.as_ref().unwrap_or(server_name);
            rustls::client::verify_server_name(&cert, name)?;
        } else {
            let identity = PeerIdentity::from_certificate(end_entity)
                .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
            let id = identity.spiffe_id.as_deref();
            if !self.spiffe_ids.iter().any(|s| Some(s.as_str()) == id) {
                return Err(refused("server", &identity));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes()
    }
}
