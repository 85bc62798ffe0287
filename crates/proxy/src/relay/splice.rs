//! Zero-copy forwarding between two plain TCP sockets: socket → pipe → socket with
//! splice(2), so bulk bytes never cross into user space (the kernel's copies to and from our
//! buffer are most of a bulk relay's CPU).
//!
//! A pipe is held only while bytes are in it: taken from a small per-thread pool when a
//! socket is readable, given back as soon as the receiver took everything (an idle
//! connection holds none). Pipes are two descriptors each, so there are at most
//! [`MAX_PIPES`] in the process; without one, the relay copies as before.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// What one splice moves at most; the pipe is sized for it.
pub(super) const PIPE_SIZE: usize = 256 * 1024;
/// Pipes in the process at most, in use or pooled.
const MAX_PIPES: usize = 64;
/// Idle pipes kept per worker thread.
const POOLED: usize = 8;

static PIPES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// Pipes in the process now, in use or pooled.
pub fn pipes() -> usize {
    PIPES.load(Relaxed)
}

pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    /// A pipe from this thread's pool, or a new one while under [`MAX_PIPES`].
    pub(super) fn take() -> Option<Pipe> {
        if let Some(pipe) = POOL.with_borrow_mut(Vec::pop) {
            return Some(pipe);
        }
        if PIPES.fetch_add(1, Relaxed) >= MAX_PIPES {
            PIPES.fetch_sub(1, Relaxed);
            return None;
        }
        Pipe::new()
            .inspect_err(|_| {
                PIPES.fetch_sub(1, Relaxed);
            })
            .ok()
    }

    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2(2) writes two descriptors into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Best effort: a smaller pipe only means smaller splices.
        // SAFETY: fcntl(2) on a descriptor we own.
        unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_SIZE as libc::c_int,
            )
        };
        Ok(Pipe { read, write })
    }

    /// Back to the pool (it must be empty), or closed when the pool is full.
    pub(super) fn give_back(self) {
        POOL.with_borrow_mut(|pool| {
            if pool.len() < POOLED {
                pool.push(self);
            }
        });
    }

    /// From `socket` into the pipe: bytes moved, 0 at the socket's end.
    pub(super) fn fill_from(&self, socket: RawFd) -> io::Result<usize> {
        splice(socket, self.write.as_raw_fd(), PIPE_SIZE)
    }

    /// From the pipe on to `socket`, at most `len` bytes: bytes moved.
    pub(super) fn drain_to(&self, socket: RawFd, len: usize) -> io::Result<usize> {
        splice(self.read.as_raw_fd(), socket, len)
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        PIPES.fetch_sub(1, Relaxed);
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: splice(2) between two descriptors the caller keeps open; no user memory.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
