//! The gateway as a whole: draining on shutdown, reloading.

use super::text::as_text;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drain {
    /// From the shutdown signal, how long live connections may take to finish.
    #[serde(serialize_with = "as_text")]
    pub timeout: Duration,
    /// From the signal, how long listeners keep accepting (while /ready says 503) so load
    /// balancers notice first.
    #[serde(serialize_with = "as_text")]
    pub delay: Duration,
    /// The last part of the window, over which the connections still open are closed one
    /// by one rather than all at once.
    #[serde(serialize_with = "as_text")]
    pub spread: Duration,
}

/// How bytes move between plain TCP sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Relay {
    /// Forward with splice(2) through a pipe (no copy into user space) between two plain
    /// TCP legs; off: read into a buffer and write.
    pub splice: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reload {
    /// Reload when the configuration file changes (its directory is watched, so a
    /// Kubernetes ConfigMap's symlink swap is seen).
    pub watch: bool,
    /// What happens to live connections of a cluster that a reload removes or replaces.
    pub removed_cluster_connections: RemovedConnections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovedConnections {
    /// They stay until they end.
    Keep,
    /// They are closed (spread over the drain spread).
    Close,
}
