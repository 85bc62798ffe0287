//! A test ext_authz server (Envoy's `envoy.service.auth.v3.Authorization`), what
//! `causeway authorizer` runs: answers as told and keeps every request, so tests can see
//! what the gateway sent.

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value};
use envoy_types::pb::google::rpc;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How the test authorizer answers.
#[derive(Debug, Clone)]
pub enum Verdict {
    Allow,
    /// Status PERMISSION_DENIED (7) with this message.
    Deny(String),
    /// A gRPC error instead of an answer.
    Error,
    /// Never answers.
    Hang,
    /// Allow, with `dynamic_metadata` = `{"causeway": FIELDS}` (string values; a value
    /// starting with `{` is not parsed — maps are given as nested pairs).
    Route(Vec<(String, Value)>),
}

#[derive(Clone)]
struct Service {
    verdict: Arc<Mutex<Verdict>>,
    requests: Arc<Mutex<Vec<CheckRequest>>>,
    /// The `traceparent` metadata of each request (empty when none was sent).
    traceparents: Arc<Mutex<Vec<String>>>,
    seen: watch::Sender<usize>,
    /// Checks being held unanswered by [`Verdict::Hang`] now: one ends when its caller
    /// gives up on it (cancelling the call drops its future).
    hanging: watch::Sender<usize>,
    /// The most checks held at once so far.
    most_hanging: Arc<std::sync::atomic::AtomicUsize>,
}

/// One check held by [`Verdict::Hang`], counted while it lives.
struct Held(watch::Sender<usize>);

impl Held {
    fn new(service: &Service) -> Held {
        service.hanging.send_modify(|n| {
            *n += 1;
            (service.most_hanging).fetch_max(*n, std::sync::atomic::Ordering::Relaxed);
        });
        Held(service.hanging.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

#[tonic::async_trait]
impl Authorization for Service {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let verdict = self.verdict.lock().unwrap().clone();
        {
            let traceparent = request.metadata().get("traceparent");
            let traceparent = traceparent
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            self.traceparents
                .lock()
                .unwrap()
                .push(traceparent.to_string());
            let mut requests = self.requests.lock().unwrap();
            requests.push(request.into_inner());
            self.seen.send_replace(requests.len());
        }
        let status = |code: i32, message: &str| rpc::Status {
            code,
            message: message.into(),
            details: vec![],
        };
        let response = match verdict {
            Verdict::Allow => CheckResponse {
                status: Some(status(0, "")),
                ..Default::default()
            },
            Verdict::Deny(why) => CheckResponse {
                status: Some(status(7, &why)),
                ..Default::default()
            },
            Verdict::Error => return Err(tonic::Status::unavailable("test authorizer error")),
            Verdict::Hang => {
                let _held = Held::new(self);
                std::future::pending().await
            }
            Verdict::Route(fields) => CheckResponse {
                status: Some(status(0, "")),
                dynamic_metadata: Some(Struct {
                    fields: [("causeway".to_string(), authz::metadata::structure(fields))]
                        .into_iter()
                        .collect(),
                }),
                ..Default::default()
            },
        };
        Ok(tonic::Response::new(response))
    }
}

pub struct TestAuthorizer {
    pub address: SocketAddr,
    service: Service,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestAuthorizer {
    /// Serves on 127.0.0.1 (a free port, or `address`), answering `verdict`.
    pub async fn start(verdict: Verdict) -> TestAuthorizer {
        Self::start_at("127.0.0.1:0".parse().unwrap(), verdict).await
    }

    pub async fn start_at(address: SocketAddr, verdict: Verdict) -> TestAuthorizer {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let service = Service {
            verdict: Arc::new(Mutex::new(verdict)),
            requests: Arc::default(),
            traceparents: Arc::default(),
            seen: watch::Sender::new(0),
            hanging: watch::Sender::new(0),
            most_hanging: Arc::default(),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(AuthorizationServer::new(service.clone()))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            );
        tokio::spawn(server);
        TestAuthorizer {
            address,
            service,
            stop: Some(stop),
        }
    }

    /// Answers `verdict` from now on.
    pub fn set(&self, verdict: Verdict) {
        *self.service.verdict.lock().unwrap() = verdict;
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<CheckRequest> {
        self.service.requests.lock().unwrap().clone()
    }

    /// The `traceparent` each request carried in its gRPC metadata ("" for none).
    pub fn traceparents(&self) -> Vec<String> {
        self.service.traceparents.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until at least `n` requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        let mut seen = self.service.seen.subscribe();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            seen.wait_for(|c| *c >= n),
        )
        .await
        .unwrap_or_else(|_| panic!("the authorizer did not get {n} requests"))
        .unwrap();
    }
}

impl TestAuthorizer {
    /// The most checks [`Verdict::Hang`] has held at once.
    pub fn most_hanging(&self) -> usize {
        (self.service.most_hanging).load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits (at most 10 s) until exactly `n` checks are held unanswered by
    /// [`Verdict::Hang`] (0: every caller has given up on its check).
    pub async fn wait_for_hanging(&self, n: usize) {
        let mut hanging = self.service.hanging.subscribe();
        let waited = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            hanging.wait_for(|h| *h == n),
        )
        .await;
        let now = *self.service.hanging.borrow();
        assert!(waited.is_ok(), "{now} checks hang, not {n}");
    }
}

impl Drop for TestAuthorizer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
