//! The sled backend: a state directory holding berth's lock file and the sled store; joins
//! `lock` and `sled_store` behind `StateBackend` and adds no behaviour of its own.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::{HeldLock, StateBackend, StateGuard};
use crate::error::Result;
use crate::lock::{self, LockInfo, LockOptions, StateLock};
use crate::sled_store::SledStore;
use crate::snapshot::Snapshot;
use crate::store::StateStore;

/// A sled state in a directory (created 0700 on first lock), with its lock file beside the store.
#[derive(Debug, Clone)]
pub struct SledBackend {
    dir: PathBuf,
}

impl SledBackend {
    /// The state in `dir`; nothing is touched until it is locked.
    pub fn new(dir: impl Into<PathBuf>) -> SledBackend {
        SledBackend { dir: dir.into() }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl StateBackend for SledBackend {
    fn lock(&self, operation: &str, opts: &LockOptions) -> Result<StateGuard> {
        let lock = StateLock::acquire(&self.dir, operation, opts)?;
        let info = lock.info().clone();
        let took_over = lock.took_over().cloned();
        let held = SledLock {
            lock,
            dir: self.dir.clone(),
        };
        Ok(StateGuard::new(Box::new(held), info, took_over))
    }

    fn holder(&self) -> Result<Option<LockInfo>> {
        lock::read_lock_info(&self.dir)
    }

    fn force_unlock(&self, id: &str) -> Result<LockInfo> {
        lock::force_unlock(&self.dir, id)
    }

    fn describe(&self) -> String {
        format!("sled state in {}", self.dir.display())
    }

    fn snapshot(&self) -> Result<Option<Snapshot>> {
        Snapshot::read(&self.dir)
    }
}

/// The lock file held, and where the store it guards lives.
struct SledLock {
    lock: StateLock,
    dir: PathBuf,
}

impl HeldLock for SledLock {
    fn open_store(&self) -> Result<Arc<dyn StateStore>> {
        Ok(Arc::new(SledStore::open(&self.dir)?))
    }

    fn release(&mut self) -> Result<()> {
        self.lock.release()
    }

    fn interrupt_fd(&self) -> Option<RawFd> {
        self.lock.raw_fd()
    }
}
