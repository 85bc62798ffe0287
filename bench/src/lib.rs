//! The load tool: each mode drives echo traffic at a target (a proxy in front of an echo
//! backend, or the backend itself for the direct baseline) and checks the answers.

pub mod affinity;
pub mod compare;
pub mod first_messages;
pub mod modes;
pub mod proxies;
pub mod report;
pub mod soak;
pub mod targets;
pub mod tls;

/// What went wrong in a run: the tool refuses to report figures from a broken run.
pub type Result<T> = std::result::Result<T, String>;
