//! What the gateway tells about itself, as written: the admin API, metrics, the access log,
//! traces.

use crate::duration::HumanDuration;
use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub enabled: Option<bool>,
    pub address: Option<Spanned<String>>,
    /// Gone: a control API off loopback needs `token_file` (named in the error).
    pub allow_non_loopback: Option<Spanned<bool>>,
    pub token_file: Option<Spanned<String>>,
    pub probes: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    pub statsd: Option<Statsd>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statsd {
    pub address: Spanned<String>,
    pub prefix: Option<String>,
    pub flush_interval: Option<Spanned<HumanDuration>>,
    pub mode: Option<StatsdMode>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum StatsdMode {
    Dogstatsd,
    Plain,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    pub path: Option<String>,
    pub otlp: Option<bool>,
    pub open_connections_interval: Option<Spanned<HumanDuration>>,
    pub max_queued_lines: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    pub endpoint: Spanned<String>,
    pub protocol: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    pub tls: Option<CollectorTls>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub service_name: Option<String>,
    #[serde(default)]
    pub resource: std::collections::BTreeMap<String, String>,
    pub sampler: Option<Sampler>,
    pub span_max_duration: Option<Spanned<HumanDuration>>,
    pub batch: Option<Batch>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorTls {
    pub ca: Option<String>,
    pub certificate: Option<String>,
    pub key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampler {
    pub ratio: Option<Spanned<f64>>,
    pub parent_based: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub max_queue_size: Option<Spanned<usize>>,
    pub max_export_batch_size: Option<Spanned<usize>>,
    pub schedule_delay: Option<Spanned<HumanDuration>>,
}
