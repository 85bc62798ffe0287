//! Throwaway PKIs for tests and the demo: a CA, server and client certificates with DNS
//! and SPIFFE (URI) names, expired ones, written to files or used in memory.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
    SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    /// The serial number (for a CRL that revokes it); empty when read from files.
    pub serial: Vec<u8>,
}

/// What a leaf certificate names and how long it is valid.
#[derive(Default)]
pub struct LeafSpec<'a> {
    pub common_name: &'a str,
    pub dns_names: &'a [&'a str],
    pub spiffe_id: Option<&'a str>,
    /// More URI SANs after the SPIFFE ID (not a valid SVID: tests of its refusal).
    pub extra_uris: &'a [&'a str],
    /// Valid from an hour ago until then; default: a day from now.
    pub expires: Option<SystemTime>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A certificate for servers and clients alike (both extended key usages).
    pub fn issue(&self, spec: &LeafSpec<'_>) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name);
        for dns in spec.dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName((*dns).try_into().unwrap()));
        }
        if let Some(id) = spec.spiffe_id {
            params
                .subject_alt_names
                .push(SanType::URI(id.try_into().unwrap()));
        }
        for uri in spec.extra_uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().unwrap()));
        }
        // (An X509-SVID must say digitalSignature; the spiffe crate checks it.)
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = SystemTime::now();
        let expires = spec.expires.unwrap_or(now + Duration::from_secs(24 * 3600));
        params.not_before = (now.min(expires) - Duration::from_secs(3600)).into();
        params.not_after = expires.into();
        // Positive, eight bytes: the same bytes in the certificate and in a CRL.
        let serial = ((rand::random::<u64>() >> 8) | (1 << 56))
            .to_be_bytes()
            .to_vec();
        params.serial_number = Some(SerialNumber::from(serial.clone()));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
            serial,
        }
    }

    /// A server certificate for `dns` names.
    pub fn server(&self, dns: &[&str]) -> Leaf {
        self.issue(&LeafSpec {
            common_name: dns.first().copied().unwrap_or("server"),
            dns_names: dns,
            ..Default::default()
        })
    }

    /// A certificate with a SPIFFE ID (and no DNS name).
    pub fn spiffe(&self, id: &str) -> Leaf {
        self.issue(&LeafSpec {
            common_name: id.rsplit('/').next().unwrap_or("workload"),
            spiffe_id: Some(id),
            ..Default::default()
        })
    }

    /// A CRL (PEM) of this CA revoking `revoked`, valid from an hour ago for a day.
    pub fn crl(&self, revoked: &[&Leaf]) -> String {
        let now = SystemTime::now();
        let params = CertificateRevocationListParams {
            this_update: (now - Duration::from_secs(3600)).into(),
            next_update: (now + Duration::from_secs(24 * 3600)).into(),
            crl_number: SerialNumber::from(rand::random::<u64>() >> 1),
            issuing_distribution_point: None,
            revoked_certs: (revoked.iter())
                .map(|leaf| RevokedCertParams {
                    serial_number: SerialNumber::from(leaf.serial.clone()),
                    revocation_time: (now - Duration::from_secs(60)).into(),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params.signed_by(&self.issuer).unwrap().pem().unwrap()
    }

    /// Writes the CA certificate to `dir/NAME.pem`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.pem()).unwrap();
        path
    }
}

impl Leaf {
    /// A certificate and key from PEM files (such as the example PKI's).
    pub fn from_files(cert: &Path, key: &Path) -> Leaf {
        use rustls_pki_types::pem::PemObject;
        let cert_pem = std::fs::read_to_string(cert).unwrap();
        let key_pem = std::fs::read_to_string(key).unwrap();
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let key_der = PrivatePkcs8KeyDer::from_pem_slice(key_pem.as_bytes())
            .unwrap()
            .secret_pkcs8_der()
            .to_vec();
        Leaf {
            cert_pem,
            key_pem,
            cert_der,
            key_der,
            serial: Vec::new(),
        }
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes `dir/NAME.pem` and `dir/NAME-key.pem`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }
}
