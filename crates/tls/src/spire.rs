//! Identity material from the SPIFFE Workload API of a SPIRE agent, over its unix socket.
//!
//! The agent streams X.509-SVID updates (SVID rotations, trust bundle changes); each one
//! becomes new material: the SVID's chain and PKCS#8 key, and the bundle of the SVID's own
//! trust domain as trust anchors (federated bundles are not used). When the agent cannot be
//! reached, the stream fails or ends (agent restart), the failure is reported and the source
//! reconnects with backoff (200 ms doubling to 5 s); the last good material stays in use.
//!
//! Tested against the fake agent of the test kit, which speaks the same gRPC and requires
//! the same security header. Only a real agent shows: workload attestation (which SVIDs this
//! process is given), the agent's own rotation timing, and its behaviour before an identity
//! is issued (it answers `PermissionDenied`, which arrives here as a failure and a retry).

use crate::material::Material;
use crate::source::{Publisher, Source};
use futures_util::StreamExt as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use spiffe::transport::Endpoint;
use spiffe::{WorkloadApiClient, X509Context};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const FIRST_RETRY: Duration = Duration::from_millis(200);
const LAST_RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WorkloadApi {
    /// The agent's socket, e.g. `/run/spire/agent/public/api.sock`.
    pub socket: PathBuf,
    /// The SVID to use when the workload is given several; default: the first one (the
    /// agent's default SVID).
    pub spiffe_id: Option<String>,
}

impl Source for WorkloadApi {
    fn run(
        self: Box<Self>,
        publisher: Publisher,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            let mut backoff = FIRST_RETRY;
            loop {
                let error = tokio::select! {
                    error = self.follow(&publisher, &mut backoff) => error,
                    () = stop.cancelled() => return,
                };
                publisher.failed(&format_args!(
                    "SPIFFE Workload API at {}: {error} (retrying in {backoff:?})",
                    self.socket.display()
                ));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(LAST_RETRY);
            }
        })
    }
}

impl WorkloadApi {
    /// Connects and publishes every update until the stream fails or ends; returns why.
    /// Material is published as it comes, and resets the backoff.
    async fn follow(&self, publisher: &Publisher, backoff: &mut Duration) -> String {
        let endpoint = Endpoint::Unix(self.socket.clone());
        let client = match WorkloadApiClient::connect(endpoint).await {
            Ok(client) => client,
            Err(e) => return format!("cannot connect: {e}"),
        };
        let mut updates = match client.stream_x509_contexts().await {
            Ok(updates) => updates,
            Err(e) => return format!("cannot fetch X.509 SVIDs: {e}"),
        };
        while let Some(update) = updates.next().await {
            let context = match update {
                Ok(context) => context,
                Err(e) => return format!("X.509 SVID stream: {e}"),
            };
            // An update we cannot use (no SVID by that ID, unusable key) waits for the next.
            match self.material(&context) {
                Ok(material) => {
                    publisher.publish(material);
                    *backoff = FIRST_RETRY;
                }
                Err(e) => publisher.failed(&format_args!("SPIFFE Workload API: {e}")),
            }
        }
        "the agent ended the X.509 SVID stream".into()
    }

    fn material(&self, context: &X509Context) -> Result<Material, String> {
        let svid = match &self.spiffe_id {
            Some(id) => context
                .svids()
                .iter()
                .find(|svid| svid.spiffe_id().to_string() == *id)
                .ok_or_else(|| {
                    let offered: Vec<String> = context
                        .svids()
                        .iter()
                        .map(|svid| svid.spiffe_id().to_string())
                        .collect();
                    format!("no SVID for {id} (the agent offers {offered:?})")
                })?,
            None => context.default_svid().ok_or("the agent offers no SVID")?,
        };
        let trust_domain = svid.spiffe_id().trust_domain();
        let bundle = context
            .bundle_set()
            .get(trust_domain)
            .ok_or_else(|| format!("no trust bundle for {trust_domain}"))?;
        let der = |bytes: &[u8]| CertificateDer::from(bytes.to_vec());
        let chain = svid
            .cert_chain()
            .iter()
            .map(|c| der(c.as_bytes()))
            .collect();
        let key = PrivatePkcs8KeyDer::from(svid.private_key().as_bytes().to_vec());
        let bundle = bundle
            .authorities()
            .iter()
            .map(|c| der(c.as_bytes()))
            .collect();
        Material::from_der(chain, Some(PrivateKeyDer::Pkcs8(key)), bundle)
            .map_err(|e| format!("SVID {}: {e}", svid.spiffe_id()))
    }
}
