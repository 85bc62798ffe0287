//! Telemetry: metrics (statsd), the access log, the admin API.

use super::text::{as_optional_text, as_text};
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessLog {
    /// A file to append to; `None`: standard output.
    pub path: Option<std::path::PathBuf>,
    /// Also a line for each connection still open, this often.
    #[serde(serialize_with = "as_optional_text")]
    pub open_connections_interval: Option<Duration>,
    /// Lines waiting for the writer at most; more are dropped and counted.
    pub max_queued_lines: usize,
    /// Also send each line as an OTLP log record to the tracing collector.
    pub otlp: bool,
}

/// Prometheus metrics are always served by the admin API; statsd is optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Metrics {
    pub statsd: Option<Statsd>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statsd {
    /// `host:port` of the statsd server (UDP).
    pub address: String,
    /// Put in front of every metric name, with a dot.
    pub prefix: String,
    #[serde(serialize_with = "as_text")]
    pub flush_interval: Duration,
    pub mode: StatsdMode,
}

/// How labels travel: DogStatsD tags, or folded into dotted names (plain statsd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsdMode {
    Dogstatsd,
    Plain,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Admin {
    pub address: SocketAddr,
}
