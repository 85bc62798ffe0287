//! The test kit: a gateway spawned in-process on port 0 from a config string, backends
//! that announce who they are, clients, and waiters bounded in time that wait on signals
//! rather than sleeps. The servers the demo runs too (echo, FIX venue, PKI, SFTP server,
//! ext_authz server) live in the `demo` crate and are reached from here.

pub mod authorizer;
mod backend;
mod client;
pub mod fix;
mod gateway;
pub mod isolated;
pub mod spire;
pub mod ssh;
pub mod tls_peer;
mod wait;

pub use backend::{Backend, echo};
pub use client::{Client, closed_port};
pub use demo::{otlp, pki, sftp_server};
pub use gateway::{TestGateway, metric_in};
pub use wait::{TEST_TIMEOUT, accepting, bounded, eventually};
