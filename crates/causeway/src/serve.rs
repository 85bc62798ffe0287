//! Running a gateway until a signal, then draining it.

use proxy::Gateway;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use tokio::signal::unix::{Signal, SignalKind, signal};

pub fn run(path: &Path, config: config::Config) -> ExitCode {
    let runtime = match runtime(config.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Before anything announces itself: a signal sent right after must find its handler.
        let signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let gateway = match Gateway::start(&config) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(workers = config.workers, "causeway running");
        serve_until_signal(gateway, signals, Some(path)).await;
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

/// SIGTERM, SIGINT and SIGHUP, caught from the moment this exists.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Serves until SIGTERM or SIGINT, then drains; a second signal closes everything at once.
/// SIGHUP reloads the configuration file (when there is one).
pub async fn serve_until_signal(gateway: Gateway, signals: Signals, config_path: Option<&Path>) {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let which = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => reload(&gateway, config_path),
        }
    };
    tracing::info!("{which}: draining (a second signal stops at once)");
    tokio::select! {
        report = gateway.shutdown() => {
            tracing::info!(drained = report.drained, closed = report.closed, "stopped");
        }
        _ = term.recv() => tracing::warn!("second signal: stopping now"),
        _ = int.recv() => tracing::warn!("second signal: stopping now"),
    }
}

/// Reads the configuration file again and applies it; an invalid file changes nothing.
fn reload(gateway: &Gateway, path: Option<&Path>) {
    let Some(path) = path else {
        tracing::info!("SIGHUP: no configuration file to reload");
        return;
    };
    tracing::info!(config = %path.display(), "SIGHUP: reloading");
    match config::load(path) {
        Ok(config) => {
            // Success and failure are logged and counted by the gateway.
            let _ = gateway.reload(&config);
        }
        Err(e) => {
            gateway.reloads.failed.fetch_add(1, Relaxed);
            tracing::error!("reload refused, the previous configuration stays:\n{e}");
        }
    }
}
