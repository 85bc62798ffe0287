//! systemd's service protocol (sd_notify, for `Type=notify` units): `READY=1` once the
//! listeners are bound and the admin API serves, `RELOADING=1` … `READY=1` around a reload,
//! `STOPPING=1` when the drain begins, and `WATCHDOG=1` at half the interval systemd sets in
//! `WATCHDOG_USEC`. Nothing at all when systemd did not start us (no `NOTIFY_SOCKET`).

use sd_notify::NotifyState;

fn tell(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot tell systemd {states:?}: {e}");
    }
}

pub fn ready() {
    tell(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// Around a reload: systemd shows the unit reloading until the next `READY=1`.
pub fn reloading() {
    let now = NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading"));
    tell(&[NotifyState::Reloading, now]);
}

pub fn reloaded() {
    tell(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

pub fn stopping() {
    tell(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// When systemd watches us, a heartbeat at half its interval, from the runtime: a wedged
/// runtime stops it, and systemd restarts the service.
pub fn spawn_watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled().filter(|i| !i.is_zero()) else {
        return;
    };
    let every = interval / 2;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            tell(&[NotifyState::Watchdog]);
        }
    });
}
