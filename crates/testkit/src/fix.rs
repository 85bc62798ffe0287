//! FIX venues for tests: the demo's FIX acceptor ([`demo::fix::acceptor`]) as a test
//! [`Backend`] that can be stopped and started again (failover).

use crate::backend::Backend;
pub use fixsim::{Received, Session, Transcript, Venue};
use std::sync::Arc;

/// A FIX acceptor (a venue) on 127.0.0.1 answering as `comp_id`; what it saw.
pub async fn acceptor(comp_id: &str) -> (Backend, Arc<Venue>) {
    let (backend, venue) = demo::fix::acceptor(comp_id).await;
    (backend.into(), venue)
}
