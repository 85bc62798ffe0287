//! What the comparison reads of a proxy's processes: resident memory and CPU time, summed
//! over the process and its direct children (nginx's workers).

pub(super) fn rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// utime + stime of /proc/PID/stat (fields 14 and 15), in seconds.
pub(super) fn cpu_of(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = (after_name.split_whitespace().skip(11).take(2))
        .filter_map(|t| t.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf(3) reads a constant.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// `of` summed over `root` and its direct children (nginx's workers).
pub(super) fn tree_sum(root: u32, of: fn(u32) -> f64) -> f64 {
    let mut total = of(root);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let after = s.rsplit_once(')')?.1.to_string();
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if parent == Some(root) {
                total += of(pid);
            }
        }
    }
    total
}
