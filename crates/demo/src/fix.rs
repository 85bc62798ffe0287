//! FIX venues: the fixsim engine's acceptor behind a [`Backend`] that can be stopped and
//! started again (failover).

use crate::backend::Backend;
use fixsim::Venue;
use std::sync::Arc;

/// A FIX acceptor (a venue) on 127.0.0.1 answering as `comp_id`; what it saw.
pub async fn acceptor(comp_id: &str) -> (Backend, Arc<Venue>) {
    let venue = Arc::new(Venue::default());
    let kept = venue.clone();
    let comp_id = comp_id.to_string();
    let backend =
        Backend::start(move |stream| fixsim::accept(stream, comp_id.clone(), kept.clone())).await;
    (backend, venue)
}
