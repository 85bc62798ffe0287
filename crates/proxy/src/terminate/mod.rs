//! The terminate stage: where the route says so, the gateway ends the client's TLS ([`tls`])
//! and reads what is inside; an SSH listener always terminates SSH ([`ssh`]: its keys and
//! users) and routes by the user who logs in.

pub mod ssh;
pub(crate) mod ssh_limits;
pub(crate) mod tls;
