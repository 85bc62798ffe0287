//! The connection pipeline of Causeway.
//!
//! accept ([`listener`]) → [`attributes`] → route ([`routing`]) → dial ([`cluster`]) →
//! [`relay`] → close. Each stage is a module; [`Gateway`] wires them up and shuts them down.

pub mod access_log;
pub mod admission;
pub mod attributes;
mod authorize;
pub mod cluster;
mod connection;
mod end;
pub mod error;
mod gateway;
mod inspect;
pub mod listener;
mod proxy_out;
pub mod registry;
pub mod relay;
pub mod routing;
mod session;
pub mod sessions;
mod socket;
pub mod ssh;
pub mod stream;
pub mod tunnel;

pub use error::{Error, Kind, Side};
pub use gateway::{Gateway, ReloadStats, ReloadSummary, ShutdownReport, StartError};
