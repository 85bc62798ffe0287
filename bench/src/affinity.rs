//! `--pin-load CPU`: the load tool (this process, its client) and the echo backend on one
//! CPU, every proxy on the others, so a proxy's figures are its own cores' work and adding
//! workers shows what they add (issue 20's "2 workers vs 1, load tool on its own core").

use std::sync::OnceLock;

/// The CPUs proxies run on, once the load was pinned.
static PROXY_CPUS: OnceLock<libc::cpu_set_t> = OnceLock::new();

/// Pins this process (and what it starts from now on) to `cpu`; proxies started later go to
/// every other CPU. Returns those CPUs.
pub fn pin_load(cpu: usize) -> crate::Result<Vec<usize>> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpu >= cpus || cpus < 2 {
        return Err(format!(
            "--pin-load {cpu}: this machine has {cpus} CPUs; it needs 2 or more and a CPU below {cpus}"
        ));
    }
    let others: Vec<usize> = (0..cpus).filter(|c| *c != cpu).collect();
    set_affinity(&set_of(&[cpu])).map_err(|e| format!("sched_setaffinity: {e}"))?;
    let _ = PROXY_CPUS.set(set_of(&others));
    Ok(others)
}

/// What a proxy's process runs on (None: wherever it likes).
pub fn proxy_cpus() -> Option<libc::cpu_set_t> {
    PROXY_CPUS.get().copied()
}

fn set_of(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: a cpu_set_t is plain bits; CPU_SET only sets one of them.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in cpus {
            libc::CPU_SET(*cpu, &mut set);
        }
        set
    }
}

/// Sets the calling process's affinity. Allocates nothing, even failing: usable between fork
/// and exec.
pub fn set_affinity(set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: sched_setaffinity(2) on ourselves with a valid set.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
