//! Running a gateway: its admin API, signals (SIGTERM/SIGINT drain, SIGHUP reloads, SIGUSR1
//! reopens the access log), and the drain at the end.

use crate::process_metrics::Reported;
use proxy::{Gateway, ReloadSummary};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use telemetry::Telemetry;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;

pub fn run(path: &Path, config: config::Config) -> ExitCode {
    let runtime = match runtime(config.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let running = match Running::start(&config, Some(path.to_path_buf())).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(workers = config.workers, "causeway running");
        crate::systemd::ready();
        crate::systemd::spawn_watchdog();
        running.serve_until_stopped().await;
        ExitCode::SUCCESS
    })
}

pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
}

/// A started gateway with its admin API and signal handlers.
pub struct Running {
    pub gateway: Arc<Gateway>,
    /// Where the admin API listens (`control` is `None` on a unix socket).
    pub admin: Option<admin::Bound>,
    control: Arc<ProcessControl>,
    signals: Signals,
    /// Events in the configuration file's directory, when `reload.watch` is on.
    changes: Option<(
        notify::RecommendedWatcher,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    )>,
}

impl Running {
    /// Signal handlers first (a signal sent right after start must find its handler), then
    /// the gateway, then the admin API.
    pub async fn start(config: &config::Config, path: Option<PathBuf>) -> Result<Running, String> {
        let signals =
            Signals::install().map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let gateway = Arc::new(Gateway::start(config).map_err(|e| e.to_string())?);
        let telemetry = Arc::new(Telemetry::new(&config.metrics)?);
        let waiting = gateway.clone();
        tokio::spawn(async move {
            let missing = waiting.identities_ready(Duration::from_secs(10)).await;
            if !missing.is_empty() {
                tracing::warn!(
                    ?missing,
                    "identities still without material after 10s: TLS handshakes that need them fail until it arrives"
                );
            }
        });
        if let Some(statsd) = &config.metrics.statsd {
            telemetry
                .clone()
                .spawn_flusher(Arc::new(Reported(gateway.clone())), statsd.flush_interval);
        }
        let control = Arc::new(ProcessControl {
            gateway: gateway.clone(),
            telemetry,
            last_read: std::sync::Mutex::new(
                path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()),
            ),
            path,
            drain_requested: Notify::new(),
        });
        let admin = match &config.admin {
            Some(admin) => Some(admin::serve(admin, gateway.clone(), control.clone()).await?),
            None => None,
        };
        let changes = match (&control.path, config.reload.watch) {
            (Some(path), true) => Some(watch(path)?),
            _ => None,
        };
        Ok(Running {
            gateway,
            admin,
            control,
            signals,
            changes,
        })
    }

    /// Serves until SIGTERM, SIGINT or POST /drain, then drains; a second signal closes
    /// everything at once. SIGHUP reloads the configuration file; SIGUSR1 reopens the access
    /// log.
    pub async fn serve_until_stopped(self) {
        let Signals {
            mut term,
            mut int,
            mut hup,
            mut usr1,
        } = self.signals;
        let (_watcher, mut changes) = match self.changes {
            Some((watcher, changes)) => (Some(watcher), Some(changes)),
            None => (None, None),
        };
        let why = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = self.control.drain_requested.notified() => break "drain requested",
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    let _ = self.control.reload_now();
                }
                // logrotate's `postrotate`: the access log moved, open it again.
                _ = usr1.recv() => self.gateway.reopen_access_log(),
                Some(()) = next_change(&mut changes) => {
                    // Let a burst of events (an editor's save, a symlink swap) settle.
                    let settle = tokio::time::sleep(std::time::Duration::from_millis(200));
                    tokio::pin!(settle);
                    while tokio::select! {
                        _ = &mut settle => false,
                        _ = next_change(&mut changes) => true,
                    } {}
                    if self.control.changed_on_disk() {
                        tracing::info!("configuration file changed: reloading");
                        let _ = self.control.reload_now();
                    }
                }
            }
        };
        tracing::info!("{why}: draining (a second signal stops at once)");
        crate::systemd::stopping();
        tokio::select! {
            report = self.gateway.shutdown() => {
                tracing::info!(drained = report.drained, closed = report.closed, "stopped");
            }
            _ = term.recv() => tracing::warn!("second signal: stopping now"),
            _ = int.recv() => tracing::warn!("second signal: stopping now"),
        }
    }
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }
}

async fn next_change(changes: &mut Option<tokio::sync::mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match changes {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Watches the directory of `path`: editors replace files and Kubernetes swaps a symlink,
/// so watching the file itself would miss changes.
fn watch(
    path: &Path,
) -> Result<
    (
        notify::RecommendedWatcher,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    ),
    String,
> {
    use notify::Watcher;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("cannot watch the configuration: {e}"))?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    tracing::info!(directory = %dir.display(), "watching the configuration for changes");
    Ok((watcher, rx))
}

/// Reload and drain, as SIGHUP / SIGTERM and the admin API ask for them.
struct ProcessControl {
    gateway: Arc<Gateway>,
    telemetry: Arc<Telemetry>,
    path: Option<PathBuf>,
    drain_requested: Notify,
    /// The file's text as last read, to tell a real change from directory noise.
    last_read: std::sync::Mutex<Option<String>>,
}

impl ProcessControl {
    fn changed_on_disk(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let now = std::fs::read_to_string(path).ok();
        *self.last_read.lock().unwrap() != now
    }

    /// Reads the configuration file again and applies it; an invalid file changes nothing.
    /// systemd is told a reload is under way until it is over.
    fn reload_now(&self) -> Result<ReloadSummary, String> {
        crate::systemd::reloading();
        let reloaded = self.read_and_apply();
        crate::systemd::reloaded();
        reloaded
    }

    fn read_and_apply(&self) -> Result<ReloadSummary, String> {
        let Some(path) = &self.path else {
            return Err("no configuration file to reload (built-in configuration)".into());
        };
        *self.last_read.lock().unwrap() = std::fs::read_to_string(path).ok();
        match config::load(path) {
            // Success and failure to apply are logged and counted by the gateway.
            Ok(config) => self.gateway.reload(&config).map_err(|e| e.to_string()),
            Err(e) => {
                self.gateway.reloads.record(Err(&e.to_string()));
                tracing::error!("reload refused, the previous configuration stays:\n{e}");
                Err(e.to_string())
            }
        }
    }
}

impl admin::Control for ProcessControl {
    fn reload(&self) -> Result<ReloadSummary, String> {
        self.reload_now()
    }

    fn drain(&self) {
        // Draining shows at once, before the serve loop wakes up to run the drain.
        self.gateway.begin_draining();
        self.drain_requested.notify_one();
    }

    fn set_log_level(&self, filter: &str) -> Result<(), String> {
        crate::logging::set_level(filter)
    }

    fn metrics(&self) -> String {
        self.telemetry.render(&Reported(self.gateway.clone()))
    }
}
