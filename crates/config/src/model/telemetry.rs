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
    /// The control API (`/config`, `/connections`, `POST /reload`...): TCP, on loopback
    /// unless a token guards it, or a unix socket.
    pub address: AdminAddress,
    /// The file holding the bearer token every control request must carry; required when
    /// `address` is not loopback.
    pub token_file: Option<std::path::PathBuf>,
    /// The read-only listener (status page, `/ready`, `/live`, `/metrics`), safe to bind
    /// where probes and scrapers reach it.
    pub probes: Option<SocketAddr>,
}

/// Where the control API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAddress {
    Tcp(SocketAddr),
    /// `unix:/run/causeway/admin.sock`: reachable only through the file's permissions.
    Unix(std::path::PathBuf),
}

impl std::fmt::Display for AdminAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminAddress::Tcp(address) => write!(f, "{address}"),
            AdminAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Serialize for AdminAddress {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
