//! Ctrl-C, SIGTERM and SIGHUP (the terminal or the SSH session to a bastion closed) outside an
//! apply: berth's lock is released and berth exits 130, so an interrupted plan, drift or
//! confirmation prompt leaves no stale lock. A handler cannot run destructors, so it truncates
//! the descriptor the state backend's guard names (`StateGuard::interrupt_fd`: sled's lock
//! file); a backend without one releases its lock when the process ends. During an apply the
//! executor handles the signals itself (finish running steps, then cancel).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static LOCK_FD: AtomicI32 = AtomicI32::new(-1);
static APPLYING: AtomicBool = AtomicBool::new(false);

/// Installs the handlers; call once, early.
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only reads atomics and calls ftruncate and _exit, which are
        // async-signal-safe.
        let _ = unsafe { signal_hook_registry::register(signal, on_signal) };
    }
}

fn on_signal() {
    if APPLYING.load(Ordering::SeqCst) {
        return;
    }
    let fd = LOCK_FD.load(Ordering::SeqCst);
    // SAFETY: async-signal-safe calls on a descriptor this process owns.
    unsafe {
        if fd >= 0 {
            libc::ftruncate(fd, 0);
        }
        libc::_exit(130);
    }
}

/// The descriptor to truncate if berth is interrupted: the state guard's `interrupt_fd`.
pub fn guard_lock(fd: Option<RawFd>) {
    LOCK_FD.store(fd.unwrap_or(-1), Ordering::SeqCst);
}

/// While alive, signals are left to the apply's executor.
pub struct Applying(());

impl Applying {
    pub fn start() -> Self {
        APPLYING.store(true, Ordering::SeqCst);
        Applying(())
    }
}

impl Drop for Applying {
    fn drop(&mut self) {
        APPLYING.store(false, Ordering::SeqCst);
    }
}
