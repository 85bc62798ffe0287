//! OpenTelemetry traces: where spans are exported, how many are kept.

use super::text::as_text;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tracing {
    pub exporter: OtlpExporter,
    /// `service.name` of the resource.
    pub service_name: String,
    /// More resource attributes (`deployment.environment`, `host.name`...).
    pub resource: Vec<(String, String)>,
    pub sampler: Sampler,
    /// A connection's span is ended after this long and a linked continuation started, so
    /// a session of days is visible while it lives.
    #[serde(serialize_with = "as_text")]
    pub span_max_duration: Duration,
    pub batch: Batch,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OtlpExporter {
    /// `http://HOST:PORT` or `https://…`; for HTTP, the whole URL spans are POSTed to.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Sent with every export (an API key...); shown as `<hidden>` in `/config`.
    #[serde(serialize_with = "hidden_values")]
    pub headers: Vec<(String, String)>,
    /// TLS towards the collector (an `https` endpoint): its CA, and our certificate for mTLS.
    pub tls: Option<CollectorTls>,
    #[serde(serialize_with = "as_text")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectorTls {
    /// PEM CA certificates the collector's certificate must chain to; none: the system's.
    pub ca: Option<PathBuf>,
    /// PEM certificate chain and key for mTLS to the collector.
    pub certificate: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Which traces are recorded: a trace started here with probability `ratio`; a trace
/// continued from a trusted caller as the caller decided, when `parent_based`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Sampler {
    pub ratio: f64,
    pub parent_based: bool,
}

/// The export queue, off the connection path: spans beyond `max_queue_size` are dropped
/// and counted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Batch {
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
    #[serde(serialize_with = "as_text")]
    pub schedule_delay: Duration,
}

fn hidden_values<S: serde::Serializer>(
    headers: &[(String, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(headers.len()))?;
    for (name, _) in headers {
        map.serialize_entry(name, "<hidden>")?;
    }
    map.end()
}
