//! What Prometheus expects of every process (`process_*`: open and allowed descriptors,
//! resident memory, start time, as its client libraries name them) and which build runs
//! (`causeway_build_info`), reported beside the gateway's own series.

use proxy::Gateway;
use std::sync::Arc;
use telemetry::{Out, Source};

/// The gateway's series, then the process's.
pub struct Reported(pub Arc<Gateway>);

impl Source for Reported {
    fn report(&self, out: &mut Out<'_>) {
        self.0.report(out);
        admin::report(out);
        let build = vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("commit", env!("CAUSEWAY_COMMIT").to_string()),
        ];
        out.gauge("causeway_build_info", build, 1.0);
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            out.gauge("process_open_fds", vec![], fds.count() as f64);
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) writes the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
            out.gauge("process_max_fds", vec![], limit.rlim_cur as f64);
        }
        if let Some(rss) = resident_bytes() {
            out.gauge("process_resident_memory_bytes", vec![], rss);
        }
        if let Some(start) = start_time() {
            out.gauge("process_start_time_seconds", vec![], start);
        }
        out.fractional_counter("process_cpu_seconds_total", cpu_seconds());
    }
}

/// User and system CPU time of the whole process (every thread), from getrusage(2).
fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage(2) to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage(2) writes the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Resident set size: /proc/self/statm's second field, in pages.
fn resident_bytes() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf(3) reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    Some(pages * page)
}

/// Seconds since the Unix epoch when the process started: boot time (/proc/stat `btime`)
/// plus the process's start in clock ticks since boot (/proc/self/stat, field 22).
fn start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let ticks: f64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: f64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf(3) reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(btime + ticks / hz)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_started_a_moment_ago_and_holds_memory() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = super::start_time().unwrap();
        assert!(
            start <= now + 1.0 && start > now - 3600.0,
            "{start} vs {now}"
        );
        assert!(super::resident_bytes().unwrap() > 1e6);
    }
}
