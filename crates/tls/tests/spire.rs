//! The SPIFFE Workload API source against the test kit's fake SPIRE agent: first SVID,
//! rotation pushed on the open stream, choice among several SVIDs, reconnection after the
//! agent was unreachable or restarted, and the agent's refusal of a request without the
//! security header.

use causeway_tls::spire::WorkloadApi;
use causeway_tls::{Identity, Material};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use testkit::spire::{Code, FakeSpire, Svid, fetch_x509_svid};
use testkit::{bounded, eventually};

const WORKLOAD: &str = "spiffe://causeway.test/workload";
const WORKLOAD_V2: &str = "spiffe://causeway.test/workload-v2";
/// How long one awaited change may take.
const WAIT: Duration = Duration::from_secs(10);

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "causeway.test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// An X.509-SVID as SPIRE issues it: one URI SAN, not a CA, digital signature.
fn svid(ca: &Ca, spiffe_id: &str, serial: u64) -> Svid {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .subject_alt_names
        .push(SanType::URI(spiffe_id.try_into().unwrap()));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.serial_number = Some(serial.into());
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    Svid {
        spiffe_id: spiffe_id.into(),
        chain_der: vec![cert.der().to_vec()],
        key_pkcs8_der: key.serialize_der(),
        bundle_der: vec![ca.der().to_vec()],
    }
}

fn start(spire: &FakeSpire, spiffe_id: Option<&str>) -> Arc<Identity> {
    let source = WorkloadApi {
        socket: spire.socket.clone(),
        spiffe_id: spiffe_id.map(str::to_string),
    };
    Identity::start("mesh", Box::new(source), None)
}

fn spiffe_id(material: &Option<Arc<Material>>) -> Option<&str> {
    material
        .as_ref()?
        .leaf
        .as_ref()?
        .identity
        .spiffe_id
        .as_deref()
}

fn leaf_der(material: &Material) -> &[u8] {
    material.certified.as_ref().unwrap().cert[0].as_ref()
}

async fn ready(identity: &Identity) {
    let ready = tokio::time::timeout(WAIT, identity.ready()).await;
    assert!(ready.expect("no material from the agent in time"));
}

/// Waits until the identity's material is `svid`.
async fn until_serving(identity: &Identity, svid: &Svid) {
    let mut changes = identity.changes();
    let shown = changes.wait_for(|m| {
        spiffe_id(m) == Some(&svid.spiffe_id)
            && m.as_deref().map(leaf_der) == Some(&svid.chain_der[0][..])
    });
    tokio::time::timeout(WAIT, shown)
        .await
        .unwrap_or_else(|_| panic!("{} not in use in time", svid.spiffe_id))
        .expect("the source stopped");
}

#[tokio::test]
async fn first_svid_then_a_rotation_on_the_open_stream() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let first = svid(&ca, WORKLOAD, 1);
        let spire = FakeSpire::start(dir.path()).await;
        spire.rotate(first.clone());

        let identity = start(&spire, None);
        ready(&identity).await;
        let material = identity.current().unwrap();
        let leaf = material.leaf.as_ref().unwrap();
        assert_eq!(leaf.identity.spiffe_id.as_deref(), Some(WORKLOAD));
        assert_eq!(leaf.identity.trust_domain(), Some("causeway.test"));
        assert_eq!(leaf_der(&material), &first.chain_der[0][..]);
        assert_eq!(material.bundle.len(), 1, "the trust domain's CA");
        assert_eq!(identity.stats.rotations.load(Relaxed), 0);

        let second = svid(&ca, WORKLOAD_V2, 2);
        spire.rotate(second.clone());
        until_serving(&identity, &second).await;
        assert_eq!(identity.stats.rotations.load(Relaxed), 1);
        assert_eq!(identity.stats.failures.load(Relaxed), 0);
    })
    .await;
}

#[tokio::test]
async fn the_configured_spiffe_id_among_several_svids() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let default = svid(&ca, WORKLOAD, 1);
        let other = svid(&ca, WORKLOAD_V2, 2);
        let spire = FakeSpire::start(dir.path()).await;
        spire.rotate_many(vec![default.clone(), other.clone()]);

        let chosen = start(&spire, Some(WORKLOAD_V2));
        let first = start(&spire, None);
        until_serving(&chosen, &other).await;
        until_serving(&first, &default).await;

        // An ID the agent does not offer: a failure, and no material.
        let missing = start(&spire, Some("spiffe://causeway.test/absent"));
        eventually("the missing SVID is reported", || {
            missing.stats.failures.load(Relaxed) >= 1
        })
        .await;
        assert!(missing.current().is_none());
    })
    .await;
}

#[tokio::test]
async fn reconnects_when_the_agent_comes_up_and_after_it_restarts() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca();
        let source = WorkloadApi {
            socket: dir.path().join("agent.sock"),
            spiffe_id: None,
        };
        let identity = Identity::start("mesh", Box::new(source), None);
        eventually("the unreachable agent is reported", || {
            identity.stats.failures.load(Relaxed) >= 1
        })
        .await;

        let spire = FakeSpire::start(dir.path()).await;
        assert_eq!(spire.socket, dir.path().join("agent.sock"));
        let first = svid(&ca, WORKLOAD, 1);
        spire.rotate(first.clone());
        until_serving(&identity, &first).await;

        // A restart ends the stream; the material stays until the new agent serves.
        let failures = identity.stats.failures.load(Relaxed);
        drop(spire);
        eventually("the ended stream is reported", || {
            identity.stats.failures.load(Relaxed) > failures
        })
        .await;
        assert_eq!(spiffe_id(&identity.current()), Some(WORKLOAD));
        let spire = FakeSpire::start(dir.path()).await;
        let second = svid(&ca, WORKLOAD, 2);
        spire.rotate(second.clone());
        until_serving(&identity, &second).await;
        assert_eq!(identity.stats.rotations.load(Relaxed), 1);
    })
    .await;
}

#[tokio::test]
async fn the_fake_agent_refuses_a_request_without_the_security_header() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let spire = FakeSpire::start(dir.path()).await;
        spire.rotate(svid(&ca(), WORKLOAD, 1));

        let refused = fetch_x509_svid(&spire.socket, false).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert_eq!(refused.message(), "security header missing from request");

        let served = fetch_x509_svid(&spire.socket, true).await.unwrap();
        assert_eq!(served.svids.len(), 1);
        assert_eq!(served.svids[0].spiffe_id, WORKLOAD);
    })
    .await;
}
