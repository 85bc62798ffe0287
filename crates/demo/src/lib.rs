//! The servers `causeway demo` and its helper commands (`echo`, `fix-acceptor`,
//! `authorizer`) run beside the gateway: greeting echo servers that can be stopped and
//! started again, FIX venues, a throwaway PKI, a small SFTP server and a test ext_authz
//! server. They ship in the product binary, so test-only helpers live in `testkit`, which
//! builds on this crate.

pub mod authorizer;
mod backend;
pub mod fix;
pub mod otlp;
pub mod pki;
pub mod sftp_server;

pub use backend::{Backend, echo};
