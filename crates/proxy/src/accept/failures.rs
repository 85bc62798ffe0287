//! What the accept loop does when accept(2) fails. A connection reset while it waited in the
//! queue is its own failure: take the next. Running out of file descriptors or memory is the
//! gateway's: accepting again at once would spin on the same error, so the loop waits,
//! longer each time (up to a second), until an accept succeeds; the queued connections wait
//! in the kernel meanwhile. Each failure is counted; the log says when it starts and ends.

use super::ListenerStats;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// `causeway_listener_accept_errors_total` by `reason`.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    /// EMFILE, ENFILE: the process's or the system's open-file limit.
    fd_exhausted: AtomicU64,
    /// ENOBUFS, ENOMEM.
    out_of_memory: AtomicU64,
    /// The connection's own (reset or aborted while queued), or anything else.
    other: AtomicU64,
}

impl AcceptErrors {
    pub(crate) fn by_reason(&self) -> [(&'static str, u64); 3] {
        [
            ("fd_exhausted", self.fd_exhausted.load(Relaxed)),
            ("out_of_memory", self.out_of_memory.load(Relaxed)),
            ("other", self.other.load(Relaxed)),
        ]
    }
}

/// The failures since the last accept that succeeded.
#[derive(Debug, Default)]
pub(super) struct FailureStreak {
    failures: u32,
    pause: Duration,
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
        let (counter, resources) = match error.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => (&errors.fd_exhausted, true),
            Some(libc::ENOBUFS | libc::ENOMEM) => (&errors.out_of_memory, true),
            _ => (&errors.other, false),
        };
        counter.fetch_add(1, Relaxed);
        if !resources {
            tracing::debug!(listener, %error, "a connection failed while it was accepted");
            return None;
        }
        if self.failures == 0 {
            tracing::warn!(listener, %error, "cannot accept: pausing until it can (causeway_listener_accept_errors_total)");
        }
        self.failures += 1;
        self.pause = (self.pause * 2).clamp(FIRST_PAUSE, LONGEST_PAUSE);
        Some(self.pause)
    }

    pub(super) fn succeeded(&mut self, listener: &str) {
        if self.failures > 0 {
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

    #[test]
    fn running_out_of_files_pauses_longer_each_time_up_to_a_second() {
        let stats = ListenerStats::default();
        let mut streak = FailureStreak::default();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<_> = (0..10)
            .map(|_| streak.failed(&emfile, "l", &stats).unwrap())
            .collect();
        assert_eq!(pauses[0], FIRST_PAUSE);
        assert_eq!(pauses[1], FIRST_PAUSE * 2);
        assert_eq!(pauses[9], LONGEST_PAUSE);
        streak.succeeded("l");
        assert_eq!(streak.failed(&emfile, "l", &stats), Some(FIRST_PAUSE));
        assert_eq!(stats.accept_errors.by_reason()[0], ("fd_exhausted", 11));
    }

    #[test]
    fn a_connection_reset_in_the_queue_is_not_waited_for() {
        let stats = ListenerStats::default();
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert_eq!(FailureStreak::default().failed(&aborted, "l", &stats), None);
        assert_eq!(stats.accept_errors.by_reason()[2], ("other", 1));
    }
}
