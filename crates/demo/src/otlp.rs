//! OTLP trace receivers, over gRPC (tonic) and HTTP/protobuf (hyper): they keep every span
//! that arrives, flattened into what tests assert on (and what `causeway trace-receiver`
//! prints).

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// One span as it arrived, ids in lowercase hex, every attribute as text.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub name: String,
    /// `server`, `client`, `internal`...
    pub kind: &'static str,
    pub attributes: BTreeMap<String, String>,
    pub events: Vec<String>,
    /// `trace_id-span_id` of each link.
    pub links: Vec<String>,
    /// The status message when the span ended in error.
    pub error: Option<String>,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
}

impl std::fmt::Display for ReceivedSpan {
    /// One line: ids, service, kind, name, duration, then every attribute.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let micros = self.end_unix_nano.saturating_sub(self.start_unix_nano) / 1000;
        write!(
            f,
            "trace={} span={} parent={} {} {} \"{}\" {micros}us",
            self.trace_id,
            self.span_id,
            if self.parent_span_id.is_empty() {
                "-"
            } else {
                &self.parent_span_id
            },
            self.service,
            self.kind,
            self.name
        )?;
        for (key, value) in &self.attributes {
            write!(f, " {key}={value:?}")?;
        }
        for event in &self.events {
            write!(f, " event={event}")?;
        }
        if let Some(error) = &self.error {
            write!(f, " error={error:?}")?;
        }
        Ok(())
    }
}

const LOCAL_ANY_PORT: &str = "127.0.0.1:0";

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// One log record as it arrived (the access log's: its body is the JSON line).
#[derive(Debug, Clone)]
pub struct ReceivedLog {
    pub service: String,
    pub body: String,
    pub trace_id: String,
    pub span_id: String,
}

#[derive(Default)]
struct Kept {
    spans: Mutex<Vec<ReceivedSpan>>,
    logs: Mutex<Vec<ReceivedLog>>,
    /// The request headers of the last export (`authorization`, API keys...).
    headers: Mutex<Vec<(String, String)>>,
    seen: watch::Sender<usize>,
    /// Count spans without keeping them (a benchmark's collector).
    only_count: std::sync::atomic::AtomicBool,
}

impl Kept {
    fn keep(&self, request: ExportTraceServiceRequest, headers: Vec<(String, String)>) {
        if self.only_count.load(std::sync::atomic::Ordering::Relaxed) {
            let spans = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
            let n: usize = spans.map(|s| s.spans.len()).sum();
            self.seen.send_modify(|seen| *seen += n);
            return;
        }
        let mut spans = self.spans.lock().unwrap();
        spans.extend(flatten(request));
        *self.headers.lock().unwrap() = headers;
        self.seen.send_replace(spans.len());
    }

    fn keep_logs(&self, request: ExportLogsServiceRequest) {
        let mut logs = self.logs.lock().unwrap();
        for resource_logs in request.resource_logs {
            let resource = resource_logs.resource.unwrap_or_default();
            let service = text_of(&resource.attributes, "service.name").unwrap_or_default();
            for record in resource_logs
                .scope_logs
                .into_iter()
                .flat_map(|s| s.log_records)
            {
                logs.push(ReceivedLog {
                    service: service.clone(),
                    body: text(record.body.as_ref().and_then(|b| b.value.as_ref())),
                    trace_id: hex(&record.trace_id),
                    span_id: hex(&record.span_id),
                });
            }
        }
        self.seen.send_modify(|_| {});
    }
}

pub struct OtlpReceiver {
    pub address: SocketAddr,
    kept: Arc<Kept>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl OtlpReceiver {
    /// `http://ADDRESS`: the endpoint to configure.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// From now on only counts what arrives ([`Self::count`]), keeping nothing.
    pub fn only_count(self) -> Self {
        (self.kept.only_count).store(true, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// Spans received so far.
    pub fn count(&self) -> usize {
        *self.kept.seen.borrow()
    }

    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.kept.logs.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until `n` log records have arrived; returns them.
    pub async fn wait_for_logs(&self, n: usize) -> Vec<ReceivedLog> {
        let mut seen = self.kept.seen.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let logs = self.logs();
                if logs.len() >= n {
                    return logs;
                }
                let _ = seen.changed().await;
            }
        });
        match waited.await {
            Ok(logs) => logs,
            Err(_) => panic!(
                "timed out waiting for {n} log records; got {:#?}",
                self.logs()
            ),
        }
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.kept.spans.lock().unwrap().clone()
    }

    pub fn last_headers(&self) -> Vec<(String, String)> {
        self.kept.headers.lock().unwrap().clone()
    }

    /// Waits until more than `seen` spans have arrived; how many there are.
    pub async fn more_than(&self, seen: usize) -> usize {
        let mut count = self.kept.seen.subscribe();
        *count.wait_for(|n| *n > seen).await.unwrap()
    }

    /// Waits (at most 10 s) until the spans received satisfy `done`; returns them.
    pub async fn wait_until(
        &self,
        what: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let mut seen = self.kept.seen.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let spans = self.spans();
                if done(&spans) {
                    return spans;
                }
                let _ = seen.changed().await;
            }
        });
        match waited.await {
            Ok(spans) => spans,
            Err(_) => panic!(
                "timed out waiting for spans: {what}; got {:#?}",
                self.spans()
            ),
        }
    }

    /// An OTLP/gRPC receiver on 127.0.0.1.
    pub async fn grpc() -> OtlpReceiver {
        Self::grpc_at(LOCAL_ANY_PORT.parse().unwrap()).await
    }

    pub async fn grpc_at(address: SocketAddr) -> OtlpReceiver {
        Self::grpc_serving(address, tonic::transport::Server::builder()).await
    }

    /// An OTLP/gRPC receiver on 127.0.0.1 over TLS with `cert_pem`/`key_pem`, requiring a
    /// client certificate from `client_ca_pem` when given (mTLS).
    pub async fn grpc_tls(
        cert_pem: &str,
        key_pem: &str,
        client_ca_pem: Option<&str>,
    ) -> OtlpReceiver {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
        if let Some(ca) = client_ca_pem {
            tls = tls.client_ca_root(Certificate::from_pem(ca));
        }
        let server = tonic::transport::Server::builder().tls_config(tls).unwrap();
        Self::grpc_serving(LOCAL_ANY_PORT.parse().unwrap(), server).await
    }

    async fn grpc_serving(
        address: SocketAddr,
        mut server: tonic::transport::Server,
    ) -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let kept = Arc::new(Kept::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = TraceServiceServer::new(Grpc(kept.clone()));
        let server = server
            .add_service(service)
            .add_service(LogsServiceServer::new(Grpc(kept.clone())))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            );
        tokio::spawn(server);
        OtlpReceiver {
            address,
            kept,
            _stop: stop,
        }
    }

    /// An OTLP/HTTP receiver on 127.0.0.1 taking protobuf at `/v1/traces`.
    pub async fn http() -> OtlpReceiver {
        Self::http_at(LOCAL_ANY_PORT.parse().unwrap()).await
    }

    pub async fn http_at(address: SocketAddr) -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let kept = Arc::new(Kept::default());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = kept.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                    _ = &mut stopped => return,
                };
                let kept = serving.clone();
                let service = hyper::service::service_fn(move |request| {
                    let kept = kept.clone();
                    async move { Ok::<_, std::convert::Infallible>(http_export(&kept, request).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let connection =
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service);
                tokio::spawn(connection);
            }
        });
        OtlpReceiver {
            address,
            kept,
            _stop: stop,
        }
    }
}

async fn http_export(
    kept: &Kept,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    use http_body_util::BodyExt;
    use prost::Message;
    let answer = |status: u16| {
        let mut response = hyper::Response::new(http_body_util::Full::default());
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        response
    };
    let path = request.uri().path().to_string();
    let protobuf =
        (request.headers().get("content-type")).is_some_and(|v| v == "application/x-protobuf");
    if !protobuf || (path != "/v1/traces" && path != "/v1/logs") {
        return answer(404);
    }
    let headers = (request.headers().iter())
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let Ok(body) = request.into_body().collect().await else {
        return answer(400);
    };
    let body = body.to_bytes();
    if path == "/v1/logs" {
        return match ExportLogsServiceRequest::decode(body) {
            Ok(export) => {
                kept.keep_logs(export);
                answer(200)
            }
            Err(_) => answer(400),
        };
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(export) => {
            kept.keep(export, headers);
            answer(200)
        }
        Err(_) => answer(400),
    }
}

struct Grpc(Arc<Kept>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = (request.metadata().clone().into_headers().iter())
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        self.0.keep(request.into_inner(), headers);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.keep_logs(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        let service = text_of(&resource.attributes, "service.name").unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    kind: kind_name(span.kind),
                    name: span.name,
                    attributes: (span.attributes.iter())
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    events: span.events.into_iter().map(|e| e.name).collect(),
                    links: (span.links.iter())
                        .map(|l| format!("{}-{}", hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    error: span.status.filter(|s| s.code == 2).map(|s| s.message),
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                });
            }
        }
    }
    out
}

fn kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

fn text_of(
    attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    let kv = attributes.iter().find(|kv| kv.key == key)?;
    Some(text(kv.value.as_ref()?.value.as_ref()))
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
