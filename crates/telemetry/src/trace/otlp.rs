//! OTLP transports: gRPC (`TraceService/Export`, `LogsService/Export`) and HTTP/protobuf (a
//! POST to `/v1/traces` or `/v1/logs`), each with the configured headers, timeout and TLS
//! (mTLS) towards the collector.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

// One per process: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub(super) enum Transport {
    Grpc {
        channel: Channel,
        headers: MetadataMap,
        timeout: Duration,
    },
    Http(HttpExporter),
}

impl Transport {
    pub fn new(config: &config::OtlpExporter) -> Result<Transport, String> {
        let fail = |e: &dyn std::fmt::Display| format!("tracing: {e}");
        match config.protocol {
            config::OtlpProtocol::Grpc => {
                let mut endpoint = Endpoint::from_shared(config.endpoint.clone())
                    .map_err(|e| fail(&e))?
                    .connect_timeout(config.timeout)
                    .tcp_nodelay(true);
                if let Some(tls) = &config.tls {
                    endpoint = endpoint.tls_config(grpc_tls(tls)?).map_err(|e| fail(&e))?;
                }
                let mut headers = MetadataMap::new();
                for (name, value) in &config.headers {
                    let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes());
                    let value = MetadataValue::try_from(value.as_str());
                    match (key, value) {
                        (Ok(k), Ok(v)) => headers.insert(k, v),
                        _ => return Err(format!("tracing: header `{name}` cannot be sent")),
                    };
                }
                Ok(Transport::Grpc {
                    channel: endpoint.connect_lazy(),
                    headers,
                    timeout: config.timeout,
                })
            }
            config::OtlpProtocol::HttpProtobuf => Ok(Transport::Http(HttpExporter::new(config)?)),
        }
    }

    /// Sends one export request, bounded by the timeout.
    pub async fn export<R: Request>(&mut self, request: R) -> Result<(), String> {
        match self {
            Transport::Grpc {
                channel,
                headers,
                timeout,
            } => {
                let call = grpc_call(request, headers, *timeout);
                answered(*timeout, R::send(channel.clone(), call)).await
            }
            Transport::Http(http) => http.export(R::SIGNAL, request.encode_to_vec()).await,
        }
    }
}

/// An OTLP export request: spans or log records, each to its own gRPC service (or path).
pub(super) trait Request: Message + Sized + Send + 'static {
    const SIGNAL: Signal;
    fn send(
        channel: Channel,
        call: tonic::Request<Self>,
    ) -> impl std::future::Future<Output = Result<(), tonic::Status>> + Send;
}

impl Request for ExportTraceServiceRequest {
    const SIGNAL: Signal = Signal::Traces;
    async fn send(channel: Channel, call: tonic::Request<Self>) -> Result<(), tonic::Status> {
        TraceServiceClient::new(channel)
            .export(call)
            .await
            .map(|_| ())
    }
}

impl Request for ExportLogsServiceRequest {
    const SIGNAL: Signal = Signal::Logs;
    async fn send(channel: Channel, call: tonic::Request<Self>) -> Result<(), tonic::Status> {
        LogsServiceClient::new(channel)
            .export(call)
            .await
            .map(|_| ())
    }
}

#[derive(Clone, Copy)]
pub(super) enum Signal {
    Traces,
    Logs,
}

fn grpc_call<T>(message: T, headers: &MetadataMap, timeout: Duration) -> tonic::Request<T> {
    let mut call = tonic::Request::new(message);
    *call.metadata_mut() = headers.clone();
    call.set_timeout(timeout);
    call
}

async fn answered(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<(), tonic::Status>>,
) -> Result<(), String> {
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err("timed out".into()),
        Ok(Err(status)) => Err(format!("{}: {}", status.code(), status.message())),
        Ok(Ok(())) => Ok(()),
    }
}

fn grpc_tls(tls: &config::CollectorTls) -> Result<ClientTlsConfig, String> {
    let mut config = ClientTlsConfig::new();
    if let Some(ca) = &tls.ca {
        config = config.ca_certificate(Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&tls.certificate, &tls.key) {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(config)
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("tracing.tls: {}: {e}", path.display()))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// OTLP/HTTP: one kept-alive HTTP/1.1 connection, made again when it is lost.
pub(super) struct HttpExporter {
    uri: http::Uri,
    authority: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    timeout: Duration,
    connection: Option<Sender>,
}

impl HttpExporter {
    fn new(config: &config::OtlpExporter) -> Result<HttpExporter, String> {
        let uri: http::Uri = (config.endpoint.parse())
            .map_err(|e| format!("tracing.endpoint `{}`: {e}", config.endpoint))?;
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let tls = match (uri.scheme_str(), &config.tls) {
            (Some("https"), tls) => {
                let host = uri
                    .host()
                    .unwrap_or_default()
                    .trim_matches(['[', ']'])
                    .to_string();
                let name = rustls_pki_types::ServerName::try_from(host)
                    .map_err(|e| format!("tracing.endpoint: {e}"))?;
                Some((http_tls(tls.as_ref())?, name))
            }
            _ => None,
        };
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let pair = (
                http::HeaderName::try_from(name.as_str()),
                http::HeaderValue::try_from(value.as_str()),
            );
            match pair {
                (Ok(n), Ok(v)) => headers.push((n, v)),
                _ => return Err(format!("tracing: header `{name}` cannot be sent")),
            }
        }
        Ok(HttpExporter {
            uri,
            authority,
            tls,
            headers,
            timeout: config.timeout,
            connection: None,
        })
    }

    /// POSTs `body` to the signal's path, bounded by the timeout.
    async fn export(&mut self, signal: Signal, body: Vec<u8>) -> Result<(), String> {
        let path = match signal {
            Signal::Traces => self.uri.path().to_string(),
            // The traces URL's `/v1/traces` becomes `/v1/logs`.
            Signal::Logs => match self.uri.path().strip_suffix("/v1/traces") {
                Some(base) => format!("{base}/v1/logs"),
                None => "/v1/logs".into(),
            },
        };
        match tokio::time::timeout(self.timeout, self.post(&path, body)).await {
            Err(_) => {
                self.connection = None;
                Err("timed out".into())
            }
            Ok(result) => result,
        }
    }

    async fn post(&mut self, path: &str, body: Vec<u8>) -> Result<(), String> {
        let mut request = http::Request::post(path)
            .header(http::header::HOST, &self.authority)
            .header(http::header::CONTENT_TYPE, "application/x-protobuf");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let sender = match self.connection.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        let mut sender = sender;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        // Read the (small) answer so the connection can carry the next export.
        let _ = response.into_body().collect().await;
        self.connection = Some(sender);
        match status.is_success() {
            true => Ok(()),
            false => Err(format!("the collector answered {status}")),
        }
    }

    async fn connect(&self) -> Result<Sender, String> {
        let port = self.uri.port_u16().unwrap_or(4318);
        let host = self.uri.host().unwrap_or_default().trim_matches(['[', ']']);
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| e.to_string())?;
                handshake(tls).await
            }
        }
    }
}

async fn handshake<S>(stream: S) -> Result<Sender, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    Ok(sender)
}

fn http_tls(tls: Option<&config::CollectorTls>) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let ca = tls
        .and_then(|t| t.ca.as_ref())
        .ok_or("tracing.tls.ca: an https collector needs its CA")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("tracing.tls.ca: {e}"))? {
        let cert = cert.map_err(|e| format!("tracing.tls.ca: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("tracing.tls.ca: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match tls.and_then(|t| t.certificate.as_ref().zip(t.key.as_ref())) {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("tracing.tls.certificate: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("tracing.tls.key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tracing.tls: {e}"))?
        }
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
