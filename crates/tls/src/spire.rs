//! PLACEHOLDER (helper-1 replaces this file): SPIFFE Workload API source.

use crate::source::{Publisher, Source};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use tokio_util::sync::CancellationToken;

pub struct WorkloadApi {
    pub socket: PathBuf,
    pub spiffe_id: Option<String>,
}

impl Source for WorkloadApi {
    fn run(
        self: Box<Self>,
        publisher: Publisher,
        _stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { publisher.failed(&"not built yet") })
    }
}
