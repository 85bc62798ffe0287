//! Identity material from PEM files (certificate chain, key, trust bundle), reloaded when
//! they change. The files' directories are watched rather than the files, so a rename over
//! them (cert-manager, a Kubernetes Secret's symlink swap) is seen. A half-written rotation
//! (new certificate, old key) fails to load and the previous material stays until the
//! next change completes it.

use crate::material::Material;
use crate::source::{Publisher, Source};
use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Quiet time after a change before the files are read: writers touch them one by one.
const SETTLE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Files {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub bundle: Option<PathBuf>,
    /// Revocation lists for the bundle.
    pub crls: Vec<PathBuf>,
    /// The contents already loaded (by [`Files::load_now`]), so the source starts from them.
    loaded: Option<Vec<Option<Vec<u8>>>>,
}

impl Files {
    pub fn new(cert: Option<PathBuf>, key: Option<PathBuf>, bundle: Option<PathBuf>) -> Files {
        Files {
            cert,
            key,
            bundle,
            crls: Vec::new(),
            loaded: None,
        }
    }

    pub fn with_crls(mut self, crls: Vec<PathBuf>) -> Files {
        self.crls = crls;
        self
    }

    pub fn load(&self) -> Result<Material, crate::TlsError> {
        Material::from_pem_files(
            self.cert.as_deref(),
            self.key.as_deref(),
            self.bundle.as_deref(),
            &self.crls,
        )
    }

    /// Loads at once (so a gateway refuses to start on unusable files); the material is
    /// published first and the watch takes over from there.
    pub fn load_now(&mut self) -> Result<Material, crate::TlsError> {
        let contents = self.contents();
        let material = self.load()?;
        self.loaded = Some(contents);
        Ok(material)
    }

    /// The files' contents, to tell a real change from directory noise.
    fn contents(&self) -> Vec<Option<Vec<u8>>> {
        self.paths().map(|p| std::fs::read(p).ok()).collect()
    }

    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.cert, &self.key, &self.bundle]
            .into_iter()
            .flatten()
            .chain(&self.crls)
    }

    fn directories(&self) -> BTreeSet<PathBuf> {
        self.paths()
            .map(|p| {
                p.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf()
            })
            .collect()
    }
}

impl Source for Files {
    fn run(
        self: Box<Self>,
        publisher: Publisher,
        stop: CancellationToken,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move {
            use notify::Watcher;
            let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
            let watcher = notify::recommended_watcher(move |e: notify::Result<notify::Event>| {
                if e.is_ok() {
                    let _ = tx.send(());
                }
            });
            let mut watcher = match watcher {
                Ok(w) => Some(w),
                Err(e) => {
                    publisher.failed(&format!("cannot watch the files, rotation is off: {e}"));
                    None
                }
            };
            for dir in self.directories() {
                if let Some(Err(e)) = watcher
                    .as_mut()
                    .map(|w| w.watch(&dir, notify::RecursiveMode::NonRecursive))
                {
                    publisher.failed(&format!("cannot watch {}: {e}", dir.display()));
                }
            }
            // Watching starts before the first read: a change in between is not lost.
            let mut seen = self.loaded.clone().unwrap_or_default();
            loop {
                let now = self.contents();
                if now != seen {
                    seen = now;
                    match self.load() {
                        Ok(material) => publisher.publish(material),
                        Err(e) => publisher.failed(&e),
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    event = changed.recv() => if event.is_none() { return },
                }
                // Let the writer finish, then take every event queued meanwhile.
                tokio::time::sleep(SETTLE).await;
                while changed.try_recv().is_ok() {}
            }
        })
    }
}
