//! The run itself: idle connections first, then churn, flaps and reloads until the time is
//! up, with a pause at the end of the warm-up and at the end to count what the gateway holds
//! with only the idle connections open; a progress line every 10 s.

use super::sample::{self, Sample, Stage};
use super::stats::{Kind, Rng};
use super::verdict::Quiet;
use super::{Soak, chaos, drivers, idle, seed};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Workers and the pause between connections of each kind: about 150 connections a second
/// in all, leaving room on a 2-core machine for the gateway.
const CHURN: [(Kind, usize, u64); 5] = [
    (Kind::Plain, 3, 10),
    (Kind::Tls, 2, 20),
    (Kind::Tunnel, 3, 10),
    (Kind::Fix, 2, 20),
    (Kind::Ssh, 1, 300),
];

pub struct Driven {
    pub samples: Vec<Sample>,
    pub warm: Quiet,
    pub end: Quiet,
    pub stalled: Vec<String>,
}

pub async fn drive(
    soak: &Arc<Soak>,
    total: Duration,
    warmup: Duration,
    csv: sample::Csv,
) -> crate::Result<Driven> {
    let begun = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample_every_second(
        soak.clone(),
        begun,
        samples.clone(),
        csv,
    ));
    let idle = idle::Idle::open(soak, &mut Rng::new(seed())).await?;
    let holder = {
        let soak = soak.clone();
        tokio::spawn(async move { idle.hold(&soak, Rng::new(seed())).await })
    };
    for (kind, workers, pause) in CHURN {
        drivers::churn(soak, kind, workers, Duration::from_millis(pause));
    }
    let authorizer = soak.authorizer.lock().unwrap().take();
    let flapper = {
        let soak = soak.clone();
        tokio::spawn(async move { chaos::flap_authorizer(&soak, authorizer).await })
    };
    let reloader = {
        let (soak, every) = (soak.clone(), soak.reload_every);
        tokio::spawn(async move { chaos::reload_loop(&soak, every).await })
    };
    let (mut warm, mut stalled, mut next_progress) = (None, Vec::new(), 10);
    while begun.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if warm.is_none() && begun.elapsed() >= warmup {
            warm = Some(quiet(soak, begun, true).await);
        }
        if warm.is_some() {
            check_stalls(soak, begun, &mut stalled);
        }
        if begun.elapsed().as_secs() >= next_progress {
            next_progress += 10;
            progress(soak, &samples, total);
        }
    }
    let end = quiet(soak, begun, false).await;
    soak.control.stop.store(true, Relaxed);
    for task in [flapper, reloader, holder] {
        let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), wait_idle(soak)).await;
    // A SIGHUP sent last may still be applying: the last sample must count it.
    let _ = tokio::time::timeout(Duration::from_secs(10), reloads_counted(soak)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    sampler.abort();
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    Ok(Driven {
        samples,
        warm: warm.unwrap_or(end),
        end,
        stalled,
    })
}

async fn sample_every_second(
    soak: Arc<Soak>,
    begun: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    mut csv: sample::Csv,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let sample = sample::take(&soak, begun.elapsed().as_secs_f64(), soak.stage()).await;
        csv.line(&sample.csv());
        samples.lock().unwrap().push(sample);
    }
}

/// Pauses the churn until only the idle connections are open, counts what the gateway
/// holds, and (after the warm-up) lets the churn go on. These samples are not fitted.
async fn quiet(soak: &Soak, begun: Instant, resume: bool) -> Quiet {
    soak.set_stage(Stage::Quiesce);
    soak.control.pause.store(true, Relaxed);
    let _ = tokio::time::timeout(Duration::from_secs(30), wait_idle(soak)).await;
    // The gateway ends a connection shortly after the client does: wait until its count of
    // active connections holds still.
    let mut last = sample::take(soak, 0.0, Stage::Quiesce).await;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sample::take(soak, begun.elapsed().as_secs_f64(), Stage::Quiesce).await;
        let settled = now.active == last.active;
        last = now;
        if settled {
            break;
        }
    }
    if resume {
        soak.control.pause.store(false, Relaxed);
        for kind in Kind::ALL {
            soak.stats(kind).touch();
        }
        soak.set_stage(Stage::Run);
    }
    Quiet {
        t: last.t,
        rss_kib: last.rss_kib,
        fds: last.fds,
        threads: last.threads,
        active: last.active,
    }
}

/// Waits until the gateway's reload counters account for every reload sent.
async fn reloads_counted(soak: &Soak) {
    loop {
        if let Ok((200, text)) = sample::http(soak.addresses.admin, "GET", "/metrics").await {
            let counted = sample::metric_sum(&text, "causeway_reloads_total", "");
            if counted as u64 >= soak.reloads.sent.load(Relaxed) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_idle(soak: &Soak) {
    while soak.control.in_flight.load(Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A kind that has not succeeded for longer than any flap explains has stopped working.
fn check_stalls(soak: &Soak, begun: Instant, stalled: &mut Vec<String>) {
    if soak.control.paused() {
        return;
    }
    for kind in Kind::ALL {
        let (since, limit) = (soak.stats(kind).since_ok(), kind.stall_limit_secs());
        let named = format!("{}: no connection succeeded", kind.name());
        if since > limit && !stalled.iter().any(|s| s.starts_with(&named)) {
            stalled.push(format!(
                "{named} for {since} s (at {} s)",
                begun.elapsed().as_secs()
            ));
        }
    }
}

fn progress(soak: &Soak, samples: &Mutex<Vec<Sample>>, total: Duration) {
    let Some(s) = samples.lock().unwrap().last().cloned() else {
        return;
    };
    let kinds: Vec<String> = Kind::ALL
        .iter()
        .zip(s.ok)
        .map(|(k, ok)| format!("{} {ok}", k.name()))
        .collect();
    println!(
        "soak {:>4.0}/{}s {:<7} rss {:.1} MiB fds {} threads {} active {} | {} | errors {} corrupted {} | reloads {} | authorizer {}",
        s.t,
        total.as_secs(),
        format!("{:?}", s.stage).to_lowercase(),
        s.rss_kib as f64 / 1024.0,
        s.fds,
        s.threads,
        s.active,
        kinds.join(" "),
        s.errors,
        s.corrupted,
        soak.reloads.sent.load(Relaxed),
        s.phase
    );
}
