//! How the C allocator (glibc malloc) gives memory back to the kernel.
//!
//! By default glibc returns the top of a heap to the kernel as soon as more than a dynamic
//! threshold (128 KiB to a few MiB) of it is free, and serves large blocks with mmap(2). A
//! bulk tunnel frees and reallocates HTTP/2 frame buffers of up to 256 KiB all the time, so
//! every freed block went back to the kernel and came back as fresh pages: a page fault per
//! 4 KiB relayed, a quarter of the edge's CPU (bench/compare: tunnel single stream 520 →
//! 700 MiB/s with these settings). Keeping up to [`TRIM_THRESHOLD`] free per heap arena costs
//! that much memory at most, whatever the number of connections; idle connections do not
//! grow it.

#[cfg_attr(not(target_env = "gnu"), allow(dead_code))]
/// Free bytes at the top of a heap that stay with the process.
const TRIM_THRESHOLD: i32 = 32 * 1024 * 1024;
#[cfg_attr(not(target_env = "gnu"), allow(dead_code))]
/// Blocks from this size up are mmap'd on their own (and unmapped when freed).
const MMAP_THRESHOLD: i32 = 4 * 1024 * 1024;

/// Applies the thresholds, unless the operator set malloc tunables (`GLIBC_TUNABLES`).
pub fn keep_freed_memory() {
    let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
    if tuned {
        return;
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
