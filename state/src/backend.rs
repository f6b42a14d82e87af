//! The `StateBackend` seam: one configured state, its lock and the guard that opens its store.
//! Holds no implementation; every implementation passes the suite in `state/tests/conformance`.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::Result;
use crate::lock::{LockInfo, LockOptions};
use crate::snapshot::Snapshot;
use crate::store::StateStore;

/// One configured state: where it lives, how it is locked and how its store is opened.
///
/// The store is reached only through the [`StateGuard`] that [`lock`](StateBackend::lock)
/// returns, so nothing writes a state whose lock it does not hold.
pub trait StateBackend: Send + Sync {
    /// Takes the lock for `operation` (`apply`, `plan`...), waiting up to `opts.timeout` while
    /// another berth holds it, and taking over a stale holder when `opts.force` is set.
    fn lock(&self, operation: &str, opts: &LockOptions) -> Result<StateGuard>;

    /// Who holds the lock now, read without taking it; `None` when nobody does.
    fn holder(&self) -> Result<Option<LockInfo>>;

    /// Removes the lock `id` when its holder is gone, returning whom it named.
    ///
    /// Refuses an id other than the current lock's (without revealing the current one) and a
    /// holder that is still running.
    fn force_unlock(&self, id: &str) -> Result<LockInfo>;

    /// What this state is, for messages: `sled state in .berth`.
    fn describe(&self) -> String;

    /// The state as of its last committed change, read without the lock, for read-only
    /// commands while another berth holds it; `None` when there is none (nothing was ever
    /// written, or the backend keeps no snapshot: readers then wait for the lock).
    fn snapshot(&self) -> Result<Option<Snapshot>> {
        Ok(None)
    }
}

/// What a backend's held lock does; `StateGuard` wraps it so every backend's guard behaves alike.
pub(crate) trait HeldLock: Send + Sync {
    /// Opens the store of the locked state; called at most once per guard.
    fn open_store(&self) -> Result<Arc<dyn StateStore>>;

    /// Gives the lock up and clears its holder record; a second call does nothing.
    fn release(&mut self) -> Result<()>;

    /// A descriptor whose truncation clears the holder record, for a signal handler that cannot
    /// run destructors.
    fn interrupt_fd(&self) -> Option<RawFd>;

    /// What clears the holder record when the backend cannot do it through a descriptor.
    fn interrupt_release(&self) -> Option<InterruptRelease> {
        None
    }
}

/// Clears a held lock's holder record from a signal handler that is about to end the process
/// without running destructors: it blocks for at most a few seconds, and does nothing when the
/// lock was released already. Safe to run from any thread, inside a tokio runtime or not.
pub type InterruptRelease = Arc<dyn Fn() + Send + Sync>;

/// The held lock of one state: names its holder, opens the store, releases on drop or
/// [`release`](StateGuard::release).
///
/// Drop every clone of the store before the guard: the lock protects the store only while both
/// live.
pub struct StateGuard {
    // Declared before `held`, so that on drop the store closes before the lock is released.
    store: Mutex<Option<Arc<dyn StateStore>>>,
    held: Box<dyn HeldLock>,
    info: LockInfo,
    took_over: Option<LockInfo>,
}

impl StateGuard {
    pub(crate) fn new(
        held: Box<dyn HeldLock>,
        info: LockInfo,
        took_over: Option<LockInfo>,
    ) -> StateGuard {
        StateGuard {
            store: Mutex::new(None),
            held,
            info,
            took_over,
        }
    }

    /// Who holds the lock now: this process.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// The stale holder this lock replaced, when it was taken with `force` over one.
    pub fn took_over(&self) -> Option<&LockInfo> {
        self.took_over.as_ref()
    }

    /// The store of the locked state, opened on first use and shared by later calls.
    pub fn store(&self) -> Result<Arc<dyn StateStore>> {
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = store.as_ref() {
            return Ok(Arc::clone(open));
        }
        let open = self.held.open_store()?;
        *store = Some(Arc::clone(&open));
        Ok(open)
    }

    /// A descriptor a signal handler may truncate to clear the holder record before the process
    /// dies; `None` when the backend clears it by other means.
    pub fn interrupt_fd(&self) -> Option<RawFd> {
        self.held.interrupt_fd()
    }

    /// What a signal handler runs to clear the holder record before the process dies, for a
    /// backend whose record is not a descriptor (a database row); `None` when not needed.
    pub fn interrupt_release(&self) -> Option<InterruptRelease> {
        self.held.interrupt_release()
    }

    /// Closes the store and releases the lock, reporting a failure to clear the holder record
    /// (drop ignores it).
    pub fn release(mut self) -> Result<()> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<()> {
        self.store
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.held.release()
    }
}

impl Drop for StateGuard {
    fn drop(&mut self) {
        let _ = self.release_inner();
    }
}

impl std::fmt::Debug for StateGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateGuard")
            .field("info", &self.info)
            .field("took_over", &self.took_over)
            .finish_non_exhaustive()
    }
}
