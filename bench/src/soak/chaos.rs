//! What the soak does to the gateway besides connecting: configuration reloads every few
//! seconds (alternating the admin API and SIGHUP, and two configuration variants) and an
//! authorizer that flaps — says no for a while, goes away and comes back, hangs past the
//! gateway's timeout.

use super::Soak;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use testkit::authorizer::{TestAuthorizer, Verdict};

/// What the authorizer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Allow,
    /// Answers PERMISSION_DENIED.
    Deny,
    /// Not listening: every check fails to connect.
    Down,
    /// Never answers: every check times out.
    Hang,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Allow => "allow",
            Phase::Deny => "deny",
            Phase::Down => "down",
            Phase::Hang => "hang",
        }
    }
}

/// The authorizer's phase as the drivers read it: the epoch changes with every phase, so a
/// connection can tell whether the answer changed while it was being decided.
pub struct AuthzState {
    current: Mutex<(u64, Phase, Instant)>,
    pub flaps: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub epoch: u64,
    pub phase: Phase,
    pub since_change: Duration,
}

impl AuthzState {
    pub fn new() -> AuthzState {
        AuthzState {
            current: Mutex::new((0, Phase::Allow, Instant::now())),
            flaps: AtomicU64::new(0),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let (epoch, phase, since) = *self.current.lock().unwrap();
        Snapshot {
            epoch,
            phase,
            since_change: since.elapsed(),
        }
    }

    fn set(&self, phase: Phase) {
        let mut current = self.current.lock().unwrap();
        *current = (current.0 + 1, phase, Instant::now());
        if phase != Phase::Allow {
            self.flaps.fetch_add(1, Relaxed);
        }
    }
}

/// How long each phase lasts: every flap is short and followed by a longer Allow, so every
/// kind keeps succeeding between flaps.
const CYCLE: [(Phase, u64); 6] = [
    (Phase::Allow, 8),
    (Phase::Deny, 3),
    (Phase::Allow, 8),
    (Phase::Down, 3),
    (Phase::Allow, 8),
    (Phase::Hang, 3),
];

/// Flaps the authorizer until the soak stops; leaves it allowing.
pub async fn flap_authorizer(soak: &Soak, mut authorizer: Option<TestAuthorizer>) {
    let address = soak.addresses.authorizer;
    'run: loop {
        for (phase, seconds) in CYCLE {
            if soak.control.stopped() {
                break 'run;
            }
            match phase {
                Phase::Down => authorizer = None,
                _ if authorizer.is_none() => authorizer = Some(restart(address).await),
                _ => {}
            }
            if let Some(authorizer) = &authorizer {
                authorizer.set(match phase {
                    Phase::Deny => Verdict::Deny("soak: denied for a while".into()),
                    Phase::Hang => Verdict::Hang,
                    _ => Verdict::Allow,
                });
            }
            soak.authz.set(phase);
            sleep_unless_stopped(soak, Duration::from_secs(seconds)).await;
        }
    }
    if authorizer.is_none() {
        authorizer = Some(restart(address).await);
    }
    if let Some(authorizer) = &authorizer {
        authorizer.set(Verdict::Allow);
    }
    soak.authz.set(Phase::Allow);
    // Kept until the end: dropping it would take the authorizer down again.
    *soak.authorizer.lock().unwrap() = authorizer;
}

/// The authorizer on its old address again (retried: the old socket may linger a moment).
async fn restart(address: std::net::SocketAddr) -> TestAuthorizer {
    loop {
        // start_at panics when it cannot bind: caught by the task.
        match tokio::spawn(TestAuthorizer::start_at(address, Verdict::Allow)).await {
            Ok(authorizer) => return authorizer,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn sleep_unless_stopped(soak: &Soak, duration: Duration) {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline && !soak.control.stopped() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reloads counted by how they were asked and how they went.
#[derive(Default)]
pub struct Reloads {
    pub sent: AtomicU64,
    pub refused: AtomicU64,
    pub messages: Mutex<Vec<String>>,
}

/// Every `every`, switches the configuration to the other variant and reloads it: by
/// `POST /reload` and SIGHUP in turn.
pub async fn reload_loop(soak: &Soak, every: Duration) {
    let mut variant_b = false;
    while !soak.control.stopped() {
        sleep_unless_stopped(soak, every).await;
        if soak.control.stopped() {
            break;
        }
        variant_b = !variant_b;
        let result = reload(soak, variant_b).await;
        soak.reloads.sent.fetch_add(1, Relaxed);
        if let Err(e) = result {
            soak.reloads.refused.fetch_add(1, Relaxed);
            let mut messages = soak.reloads.messages.lock().unwrap();
            if messages.len() < 5 {
                messages.push(e);
            }
        }
    }
}

async fn reload(soak: &Soak, variant_b: bool) -> crate::Result<()> {
    let text = super::config::yaml(&soak.addresses, &soak.files, variant_b);
    super::config::write(&soak.config_path, &text)?;
    let sent = soak.reloads.sent.load(Relaxed);
    match sent % 2 {
        0 => {
            let (status, body) =
                super::sample::http(soak.addresses.admin, "POST", "/reload").await?;
            match status {
                200 => Ok(()),
                _ => Err(format!("POST /reload: {status} {body}")),
            }
        }
        _ => {
            // SAFETY: kill(2) on our own child.
            match unsafe { libc::kill(soak.gateway_pid as i32, libc::SIGHUP) } {
                0 => Ok(()),
                _ => Err(format!("SIGHUP: {}", std::io::Error::last_os_error())),
            }
        }
    }
}
