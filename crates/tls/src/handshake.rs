//! Handshake outcomes: a short reason per failure, for close reasons, logs and metrics.

use rustls::{AlertDescription, CertificateError, Error};
use std::collections::BTreeMap;
use std::io;
use std::sync::Mutex;

/// Why a handshake failed, as a stable snake_case label.
pub fn failure_reason(error: &io::Error) -> &'static str {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
    else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof => "peer_closed",
            io::ErrorKind::ConnectionReset => "peer_reset",
            io::ErrorKind::InvalidData => "protocol_error",
            _ => "io_error",
        };
    };
    match tls {
        Error::NoCertificatesPresented => "no_certificate",
        Error::InvalidCertificate(c) => match c {
            CertificateError::ApplicationVerificationFailure => "identity_refused",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate_expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate_not_yet_valid"
            }
            CertificateError::UnknownIssuer => "unknown_ca",
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "name_mismatch"
            }
            CertificateError::Revoked => "certificate_revoked",
            _ => "bad_certificate",
        },
        Error::PeerIncompatible(_) => "protocol_version",
        Error::NoApplicationProtocol => "no_application_protocol",
        Error::AlertReceived(alert) => match alert {
            AlertDescription::AccessDenied => "peer_refused_identity",
            AlertDescription::UnknownCA => "peer_unknown_ca",
            AlertDescription::BadCertificate | AlertDescription::CertificateRequired => {
                "peer_refused_certificate"
            }
            AlertDescription::CertificateExpired => "peer_certificate_expired",
            AlertDescription::ProtocolVersion => "protocol_version",
            _ => "alert_received",
        },
        Error::General(_) => "not_ready",
        _ => "protocol_error",
    }
}

/// Handshakes counted by side (`downstream`: we terminate, `upstream`: we originate) and
/// result (`ok` or a failure reason). One lock per handshake: nothing next to the crypto.
#[derive(Debug)]
pub struct HandshakeStats {
    counts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// How long the handshakes that succeeded took: terminated, originated.
    pub downstream_latency: telemetry::histogram::Histogram,
    pub upstream_latency: telemetry::histogram::Histogram,
}

impl Default for HandshakeStats {
    fn default() -> Self {
        let latency = || telemetry::histogram::Histogram::new(telemetry::histogram::LATENCY);
        HandshakeStats {
            counts: Mutex::default(),
            downstream_latency: latency(),
            upstream_latency: latency(),
        }
    }
}

impl HandshakeStats {
    pub fn record(&self, side: &'static str, result: &'static str) {
        *self
            .counts
            .lock()
            .unwrap()
            .entry((side, result))
            .or_default() += 1;
    }

    /// A handshake that succeeded, and how long it took.
    pub fn succeeded(&self, side: &'static str, took: std::time::Duration) {
        self.record(side, "ok");
        match side {
            "downstream" => self.downstream_latency.observe(took),
            _ => self.upstream_latency.observe(took),
        }
    }

    pub fn snapshot(&self) -> Vec<((&'static str, &'static str), u64)> {
        self.counts
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }
}
