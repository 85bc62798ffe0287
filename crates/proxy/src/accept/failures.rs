//! What the accept loop does when accept(2) fails. A connection aborted or reset while it
//! waited in the queue is its own failure: take the next at once. Anything else (out of file
//! descriptors or memory, a security module's refusal, a socket gone bad) would fail again
//! at once, and tokio keeps the socket readable after an error, so retrying would spin: the
//! loop pauses, longer each time (up to a second). A streak ends only after a second without
//! a failure, so a gateway at its descriptor limit, where each freed descriptor lets one
//! accept through, keeps pausing instead of logging twice per connection. Each failure is
//! counted; the log says when a streak starts and ends.

use super::ListenerStats;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// How long accepts must go without a failure for a streak to end.
const QUIET: Duration = Duration::from_secs(1);

/// `causeway_listener_accept_errors_total` by `reason`.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    /// EMFILE, ENFILE: the process's or the system's open-file limit.
    fd_exhausted: AtomicU64,
    /// ENOBUFS, ENOMEM.
    out_of_memory: AtomicU64,
    /// ECONNABORTED, ECONNRESET, EPROTO: the queued connection's own failure.
    connection_aborted: AtomicU64,
    /// Anything else (EPERM from a security module, ...).
    other: AtomicU64,
}

impl AcceptErrors {
    pub(crate) fn by_reason(&self) -> [(&'static str, u64); 4] {
        [
            ("fd_exhausted", self.fd_exhausted.load(Relaxed)),
            ("out_of_memory", self.out_of_memory.load(Relaxed)),
            ("connection_aborted", self.connection_aborted.load(Relaxed)),
            ("other", self.other.load(Relaxed)),
        ]
    }
}

/// The failures since the accept loop last went [`QUIET`] without one.
#[derive(Debug, Default)]
pub(super) struct FailureStreak {
    failures: u32,
    pause: Duration,
    last: Option<Instant>,
}

impl FailureStreak {
    /// Counts `error`; returns how long to wait before accepting again (none for a
    /// failure of the connection's own).
    pub(super) fn failed(
        &mut self,
        error: &io::Error,
        listener: &str,
        stats: &ListenerStats,
    ) -> Option<Duration> {
        let errors = &stats.accept_errors;
        let counter = match error.raw_os_error() {
            Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO) => {
                errors.connection_aborted.fetch_add(1, Relaxed);
                tracing::debug!(listener, %error, "a connection failed while it was accepted");
                return None;
            }
            Some(libc::EMFILE | libc::ENFILE) => &errors.fd_exhausted,
            Some(libc::ENOBUFS | libc::ENOMEM) => &errors.out_of_memory,
            _ => &errors.other,
        };
        counter.fetch_add(1, Relaxed);
        if self.failures == 0 {
            tracing::warn!(listener, %error, "cannot accept: pausing until it can (causeway_listener_accept_errors_total)");
        }
        self.failures += 1;
        self.last = Some(Instant::now());
        self.pause = (self.pause * 2).clamp(FIRST_PAUSE, LONGEST_PAUSE);
        Some(self.pause)
    }

    pub(super) fn succeeded(&mut self, listener: &str) {
        let Some(last) = self.last else { return };
        if last.elapsed() >= QUIET {
            tracing::warn!(
                listener,
                failures = self.failures,
                "accepting again after failed accepts"
            );
            *self = FailureStreak::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn running_out_of_files_pauses_longer_each_time_until_a_quiet_second() {
        let stats = ListenerStats::default();
        let mut streak = FailureStreak::default();
        let pauses: Vec<_> = (0..10)
            .map(|_| streak.failed(&error(libc::EMFILE), "l", &stats).unwrap())
            .collect();
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert_eq!(pauses[1], FIRST_PAUSE * 2);
        assert_eq!(pauses[9], LONGEST_PAUSE);
        // One accept through (a descriptor freed) does not end the streak...
        streak.succeeded("l");
        assert_eq!(
            streak.failed(&error(libc::EMFILE), "l", &stats),
            Some(LONGEST_PAUSE)
        );
        // ...a quiet second does.
        streak.last = Some(Instant::now() - QUIET);
        streak.succeeded("l");
        assert_eq!(
            streak.failed(&error(libc::ENFILE), "l", &stats),
            Some(FIRST_PAUSE)
        );
        assert_eq!(stats.accept_errors.by_reason()[0], ("fd_exhausted", 12));
    }

    #[test]
    fn only_a_queued_connections_own_failure_is_not_waited_for() {
        let stats = ListenerStats::default();
        for own in [libc::ECONNABORTED, libc::ECONNRESET, libc::EPROTO] {
            let pause = FailureStreak::default().failed(&error(own), "l", &stats);
            assert_eq!(pause, None);
        }
        for persistent in [libc::EPERM, libc::EINVAL, libc::ENOBUFS] {
            let pause = FailureStreak::default().failed(&error(persistent), "l", &stats);
            assert_eq!(pause, Some(FIRST_PAUSE), "{persistent}");
        }
        let counts = stats.accept_errors.by_reason();
        assert_eq!(counts[1], ("out_of_memory", 1));
        assert_eq!(counts[2], ("connection_aborted", 3));
        assert_eq!(counts[3], ("other", 2));
    }
}
