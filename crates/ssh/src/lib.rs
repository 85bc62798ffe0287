//! SSH for the gateway: what it reads from key files, the algorithms it offers, the SSH
//! client it is to upstream servers, the channel relay between the two sessions, and the
//! SFTP audit read off the relayed stream. The server side (authentication, routing) lives
//! with the pipeline in the proxy crate.

pub mod algorithms;
pub mod audit;
pub mod channel;
pub mod credentials;
pub mod upstream;

pub use russh;
