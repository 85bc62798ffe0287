//! Running a gateway until a signal, then draining it.

use proxy::Gateway;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};

pub fn run(config: config::Config) -> ExitCode {
    let runtime = match runtime(config.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let gateway = match Gateway::start(&config) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(workers = config.workers, "causeway running");
        serve_until_signal(gateway).await;
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

/// Serves until SIGTERM or SIGINT, then drains; a second signal closes everything at once.
pub async fn serve_until_signal(gateway: Gateway) {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            tracing::error!("cannot install signal handlers");
            return;
        }
    };
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
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
