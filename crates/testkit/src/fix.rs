//! FIX venues for tests: the fixsim engine's acceptor behind a [`Backend`] that can be
//! stopped and started again (failover).

use crate::backend::Backend;
pub use fixsim::{Received, Session, Transcript};
use std::sync::{Arc, Mutex};

/// A FIX acceptor (a venue) on 127.0.0.1 answering as `comp_id`, keeping the transcript of
/// every finished session.
pub async fn acceptor(comp_id: &str) -> (Backend, Arc<Mutex<Vec<Transcript>>>) {
    let transcripts = Arc::new(Mutex::new(Vec::new()));
    let kept = transcripts.clone();
    let comp_id = comp_id.to_string();
    let backend =
        Backend::start(move |stream| fixsim::accept(stream, comp_id.clone(), kept.clone())).await;
    (backend, transcripts)
}
