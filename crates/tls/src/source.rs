//! Where identity material comes from, behind one trait: a source publishes material on a
//! watch channel, every later value is a rotation. Handshakes read the channel's current
//! value, so a rotation reaches new handshakes at once and never touches live connections.

use crate::material::Material;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A producer of identity material: PEM files, the SPIFFE Workload API, or a test.
pub trait Source: Send + 'static {
    /// Loads material and publishes it and every change until `stop`. A failed load is
    /// reported through [`Publisher::failed`]; the last good material stays in use.
    fn run(
        self: Box<Self>,
        publisher: Publisher,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

#[derive(Debug, Default)]
pub struct IdentityStats {
    /// New material after the first.
    pub rotations: AtomicU64,
    /// Loads that failed (bad file, agent unreachable...); the previous material stayed.
    pub failures: AtomicU64,
}

/// What a source publishes through; counts rotations and failures for metrics.
pub struct Publisher {
    name: Arc<str>,
    updates: watch::Sender<Option<Arc<Material>>>,
    stats: Arc<IdentityStats>,
}

impl Publisher {
    pub fn publish(&self, material: Material) {
        let first = self.updates.borrow().is_none();
        if !first {
            self.stats.rotations.fetch_add(1, Relaxed);
        }
        let spiffe_id = material
            .leaf
            .as_ref()
            .and_then(|l| l.identity.spiffe_id.clone());
        tracing::info!(identity = %self.name, spiffe_id = ?spiffe_id, seconds_left = ?material.seconds_left(), rotation = !first, "identity material loaded");
        self.updates.send_replace(Some(Arc::new(material)));
    }

    pub fn failed(&self, error: &dyn std::fmt::Display) {
        self.stats.failures.fetch_add(1, Relaxed);
        tracing::error!(identity = %self.name, "cannot load identity material (the previous one stays in use): {error}");
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A named identity while it runs: its source's latest material.
#[derive(Debug)]
pub struct Identity {
    pub name: Arc<str>,
    current: watch::Receiver<Option<Arc<Material>>>,
    pub stats: Arc<IdentityStats>,
    stop: CancellationToken,
}

impl Identity {
    /// Starts `source` on the current tokio runtime, from `initial` material if it was
    /// loaded already.
    pub fn start(name: &str, source: Box<dyn Source>, initial: Option<Material>) -> Arc<Identity> {
        let (updates, current) = watch::channel(initial.map(Arc::new));
        let stats = Arc::new(IdentityStats::default());
        let stop = CancellationToken::new();
        let publisher = Publisher {
            name: name.into(),
            updates,
            stats: stats.clone(),
        };
        tokio::spawn(source.run(publisher, stop.clone()));
        Arc::new(Identity {
            name: name.into(),
            current,
            stats,
            stop,
        })
    }

    /// The material in use now; `None` until the source first loaded it.
    pub fn current(&self) -> Option<Arc<Material>> {
        self.current.borrow().clone()
    }

    /// Changes with every rotation.
    pub fn changes(&self) -> watch::Receiver<Option<Arc<Material>>> {
        self.current.clone()
    }

    /// Waits until the source has published material (or `stop`ped); `false` if it never did.
    pub async fn ready(&self) -> bool {
        let mut changes = self.current.clone();
        changes.wait_for(Option::is_some).await.is_ok()
    }

    /// Stops the source (its material stays readable).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
