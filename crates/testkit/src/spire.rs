//! A fake SPIRE agent: the SPIFFE Workload API's `FetchX509SVID` stream over a unix socket,
//! serving the SVIDs a test gives it and pushing each rotation to every open stream at once.
//! Like a real agent it refuses requests without the `workload.spiffe.io: true` metadata
//! (`InvalidArgument`, "security header missing from request").
//!
//! The messages and the service are written by hand (the `spiffe` crate's are client-only),
//! so there is no build script; field numbers follow SPIFFE's workload.proto.
//!
//! Not modelled: workload attestation (every caller gets the same SVIDs), the other methods
//! (`FetchX509Bundles`, JWT), CRLs and federated bundles, and the `PermissionDenied` a real
//! agent answers before it has an identity for the caller (here a stream just waits for the
//! first [`FakeSpire::rotate`]).

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::watch;
use tokio_stream::wrappers::WatchStream;
use tokio_stream::{Stream, StreamExt};

/// What [`fetch_x509_svid`] answers with when refused.
pub use tonic::{Code, Status};

/// The method's path: `/<package-less service>/<method>`, as in workload.proto.
pub const FETCH_X509_SVID: &str = "/SpiffeWorkloadAPI/FetchX509SVID";

#[derive(Clone, PartialEq, prost::Message)]
pub struct X509SvidRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct X509SvidResponse {
    #[prost(message, repeated, tag = "1")]
    pub svids: Vec<X509Svid>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub crl: Vec<Vec<u8>>,
    #[prost(map = "string, bytes", tag = "3")]
    pub federated_bundles: std::collections::HashMap<String, Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct X509Svid {
    #[prost(string, tag = "1")]
    pub spiffe_id: String,
    /// The certificate chain, DER certificates concatenated.
    #[prost(bytes = "vec", tag = "2")]
    pub x509_svid: Vec<u8>,
    /// The private key, PKCS#8 DER.
    #[prost(bytes = "vec", tag = "3")]
    pub x509_svid_key: Vec<u8>,
    /// The trust domain's CA certificates, DER concatenated.
    #[prost(bytes = "vec", tag = "4")]
    pub bundle: Vec<u8>,
    #[prost(string, tag = "5")]
    pub hint: String,
}

/// An SVID the fake agent serves to the workload.
#[derive(Clone, Debug)]
pub struct Svid {
    pub spiffe_id: String,
    /// Leaf first.
    pub chain_der: Vec<Vec<u8>>,
    pub key_pkcs8_der: Vec<u8>,
    /// The CA certificates of the SVID's trust domain.
    pub bundle_der: Vec<Vec<u8>>,
}

impl Svid {
    fn message(&self) -> X509Svid {
        X509Svid {
            spiffe_id: self.spiffe_id.clone(),
            x509_svid: self.chain_der.concat(),
            x509_svid_key: self.key_pkcs8_der.clone(),
            bundle: self.bundle_der.concat(),
            hint: String::new(),
        }
    }
}

/// A running fake agent; dropping it ends every stream and stops the server.
pub struct FakeSpire {
    pub socket: PathBuf,
    current: watch::Sender<Option<X509SvidResponse>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeSpire {
    /// Listens on `dir/agent.sock` (replacing a socket left there by an earlier agent);
    /// streams wait until the first [`FakeSpire::rotate`].
    pub async fn start(dir: &Path) -> FakeSpire {
        let socket = dir.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = tokio::net::UnixListener::bind(&socket)
            .unwrap_or_else(|e| panic!("fake SPIRE agent on {}: {e}", socket.display()));
        let current = watch::Sender::new(None);
        let service = WorkloadApi {
            current: current.subscribe(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        FakeSpire {
            socket,
            current,
            stop: Some(stop),
        }
    }

    /// Serves `svid` from now on, pushing it to every open stream.
    pub fn rotate(&self, svid: Svid) {
        self.rotate_many(vec![svid]);
    }

    /// Serves several SVIDs (the first is the default one) from now on.
    pub fn rotate_many(&self, svids: Vec<Svid>) {
        self.current.send_replace(Some(X509SvidResponse {
            svids: svids.iter().map(Svid::message).collect(),
            ..Default::default()
        }));
    }
}

impl Drop for FakeSpire {
    fn drop(&mut self) {
        // The watch sender goes too, which ends every open stream.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// One `FetchX509SVID` call by a bare gRPC client: the first response, or the status the
/// agent answered with. `header: false` leaves out the metadata every real client sends.
pub async fn fetch_x509_svid(
    socket: &Path,
    header: bool,
) -> Result<X509SvidResponse, tonic::Status> {
    let socket = socket.to_path_buf();
    let connector = tower::service_fn(move |_: http::Uri| {
        let socket = socket.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(socket).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://fake-spire")
        .connect_with_connector(connector)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("cannot connect: {e}")))?;
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(X509SvidRequest {});
    if header {
        request
            .metadata_mut()
            .insert("workload.spiffe.io", "true".parse().unwrap());
    }
    let path = http::uri::PathAndQuery::from_static(FETCH_X509_SVID);
    let codec = tonic_prost::ProstCodec::default();
    let mut responses = client
        .server_streaming(request, path, codec)
        .await?
        .into_inner();
    responses
        .message()
        .await?
        .ok_or_else(|| tonic::Status::unknown("the stream ended without a response"))
}

#[derive(Clone)]
struct WorkloadApi {
    current: watch::Receiver<Option<X509SvidResponse>>,
}

impl tonic::server::NamedService for WorkloadApi {
    const NAME: &'static str = "SpiffeWorkloadAPI";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Responses = Pin<Box<dyn Stream<Item = Result<X509SvidResponse, tonic::Status>> + Send>>;

struct FetchX509Svid(watch::Receiver<Option<X509SvidResponse>>);

impl tonic::server::ServerStreamingService<X509SvidRequest> for FetchX509Svid {
    type Response = X509SvidResponse;
    type ResponseStream = Responses;
    type Future = std::future::Ready<Result<tonic::Response<Responses>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<X509SvidRequest>) -> Self::Future {
        let header = request.metadata().get("workload.spiffe.io");
        if header.and_then(|v| v.to_str().ok()) != Some("true") {
            return std::future::ready(Err(tonic::Status::invalid_argument(
                "security header missing from request",
            )));
        }
        // The current response at once (if any), then every rotation.
        let updates = WatchStream::new(self.0.clone()).filter_map(|r| r.map(Ok));
        std::future::ready(Ok(tonic::Response::new(Box::pin(updates) as Responses)))
    }
}

impl<B> tower_service::Service<http::Request<B>> for WorkloadApi
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != FETCH_X509_SVID {
            return Box::pin(async {
                Ok(
                    tonic::Status::unimplemented("the fake agent serves FetchX509SVID only")
                        .into_http(),
                )
            });
        }
        let fetch = FetchX509Svid(self.current.clone());
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
            Ok(grpc.server_streaming(fetch, request).await)
        })
    }
}
