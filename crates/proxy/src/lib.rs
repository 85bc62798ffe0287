//! The connection pipeline of Causeway, one module per stage, in the order a connection
//! meets them (ARCHITECTURE.md draws it):
//!
//! [`accept`] (listeners, admission) → [`proxy_header`] → [`inspect`] → [`route`] →
//! [`terminate`] (TLS; the SSH server) → [`authorize`] → [`dial`] (clusters, tunnels
//! through a CONNECT proxy, PROXY headers out) → [`relay`] → [`end`] (timeouts,
//! re-authorization, close requests, the registry of live connections, access log).
//!
//! What a connection is known by travels in its [`attributes`]. The front ends in
//! [`drive`] — streams (plain, TLS, FIX, MQ), CONNECT tunnels, SSH — compose the stages;
//! [`Gateway`] wires listeners, clusters and reloads. Dependencies point one way: no stage
//! imports a driver, no driver imports another (a test checks the module graph).

pub mod accept;
pub mod attributes;
mod authorize;
pub mod dial;
mod drive;
pub mod end;
pub mod error;
mod gateway;
mod inspect;
mod proxy_header;
pub mod relay;
pub mod route;
mod socket;
pub mod terminate;

pub use error::{Error, Kind, Side};
pub use gateway::snapshot;
pub use gateway::{
    Audience, Gateway, LastReload, ReloadStats, ReloadSummary, ShutdownReport, StartError, Status,
    check_files,
};
