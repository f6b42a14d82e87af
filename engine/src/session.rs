//! Opening berth's state for one command: the configured backend is built, its lock taken
//! (naming the holder if it is busy), then the store opened through the lock's guard; the config
//! is placed against what the state remembers. It also publishes how to release the held lock
//! if the process must end at once (a signal outside an apply): whoever handles signals calls
//! [`release_for_interrupt`].

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use berth_state::{
    InterruptRelease, LockInfo, LockOptions, PgBackend, PgSettings, PgUrl, SledBackend, Snapshot,
    StateBackend, StateError, StateGuard, StateStore,
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::{self, StateBackendKind, StateSettings, VarInputs};
use crate::error::{Error, Result};
use crate::ops::{Notice, Notices};
use crate::plan::StateView;
use crate::workspace::Workspace;

/// The environment variable that holds the postgres connection URL; it wins over `state { url }`.
pub const PG_URL_ENV: &str = "BERTH_PG_URL";

/// The backend of the configured state; the one place that names backend types.
pub fn backend(state: &StateSettings) -> Result<Box<dyn StateBackend>> {
    Ok(match state.backend {
        StateBackendKind::Sled => Box::new(SledBackend::new(&state.dir)),
        StateBackendKind::Postgres => Box::new(pg_backend(state, false)?),
    })
}

/// The postgres URL: `BERTH_PG_URL`, else `state { url }`. Holds credentials: never show it.
pub fn pg_url_text(state: &StateSettings) -> Option<String> {
    std::env::var(PG_URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| state.url.as_ref().map(|u| u.0.clone()))
}

/// The configured postgres workspace; `create` lets the first lock create it (`state init`,
/// `state migrate`), which other commands refuse so that a misspelt name fails.
pub fn pg_backend(state: &StateSettings, create: bool) -> Result<PgBackend> {
    let url = pg_url_text(state).ok_or(StateError::PgNoUrl)?;
    Ok(PgBackend::new(PgSettings {
        url: PgUrl::parse(&url)?,
        // The config check requires it; a default keeps a half-loaded config usable.
        workspace: state
            .workspace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        create_workspace: create,
    }))
}

/// The state of one command, held under its backend's lock until dropped.
pub struct Session {
    pub store: Arc<dyn StateStore>,
    // Dropped after the store (fields drop in declaration order), so the lock outlives it.
    pub lock: StateGuard,
    pub backend: Box<dyn StateBackend>,
    /// The holder of the stale lock that this session took over (`--force`), for the caller
    /// to tell the user.
    pub took_over: Option<String>,
}

impl Session {
    /// Takes the lock of the state of `backend` for `operation`, then opens the store.
    pub fn open(
        backend: Box<dyn StateBackend>,
        operation: &str,
        lock: &LockOptions,
    ) -> Result<Session> {
        let lock = backend.lock(operation, lock)?;
        let took_over = lock.took_over().map(ToString::to_string);
        publish_for_interrupt(lock.interrupt_fd(), lock.interrupt_release());
        let store = lock.store()?;
        Ok(Session {
            store,
            lock,
            backend,
            took_over,
        })
    }

    /// Everything the planner needs from the state.
    pub fn view(&self) -> Result<StateView> {
        Ok(StateView {
            meta: self.store.meta()?,
            records: self
                .store
                .resources()?
                .into_iter()
                .map(|r| (r.address.clone(), r))
                .collect(),
            intents: self.store.intents()?,
            selections: self.store.selections()?,
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The lock's descriptor closes with it: a later signal must not touch whatever file
        // reuses that number.
        publish_for_interrupt(None, None);
    }
}

/// The descriptor of the held state lock (sled's lock file), or -1.
static INTERRUPT_FD: AtomicI32 = AtomicI32::new(-1);
/// What clears the held lock's holder record when it is not a file (postgres's row).
static INTERRUPT_RELEASE: Mutex<Option<InterruptRelease>> = Mutex::new(None);

fn publish_for_interrupt(fd: Option<RawFd>, release: Option<InterruptRelease>) {
    INTERRUPT_FD.store(fd.unwrap_or(-1), Ordering::SeqCst);
    *INTERRUPT_RELEASE
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = release;
}

/// Releases the state lock that a session holds, for a process that must end at once without
/// running destructors (a signal outside an apply): empties sled's lock file, or deletes the
/// postgres holder row (the server frees the advisory lock itself when the process is gone).
/// Does nothing when no session holds a lock. Call it from a thread, not a signal handler.
pub fn release_for_interrupt() {
    let fd = INTERRUPT_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: a descriptor the state session owns and keeps open while it is published.
        unsafe {
            libc::ftruncate(fd, 0);
        }
    }
    let release = INTERRUPT_RELEASE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(release) = release {
        release();
    }
}

/// The state as a read-only command sees it: read under the lock when it is free, otherwise
/// the last committed snapshot, so that such commands never wait behind an apply.
pub struct ReadState {
    pub snapshot: Snapshot,
    /// Who held the lock when the state was read from its snapshot.
    pub held_by: Option<LockInfo>,
}

impl ReadState {
    /// Reads the state of `backend` for `operation`. When another berth holds the lock and
    /// the backend keeps no snapshot, waits for the lock as `lock` says.
    pub fn read(backend: &dyn StateBackend, operation: &str, lock: &LockOptions) -> Result<Self> {
        let at_once = LockOptions {
            timeout: std::time::Duration::ZERO,
            force: lock.force,
        };
        let guard = match backend.lock(operation, &at_once) {
            Ok(guard) => guard,
            Err(StateError::Locked { holder, .. }) => match backend.snapshot()? {
                Some(snapshot) => {
                    return Ok(ReadState {
                        snapshot,
                        held_by: Some(*holder),
                    });
                }
                None => backend.lock(operation, lock)?,
            },
            Err(e) => return Err(e.into()),
        };
        let snapshot = Snapshot::of(guard.store()?.as_ref())?;
        guard.release()?;
        Ok(ReadState {
            snapshot,
            held_by: None,
        })
    }

    /// Says on stderr, when the state came from its snapshot, that an operation was running.
    pub fn note_if_busy(&self) {
        if let Some(holder) = &self.held_by {
            errln!(
                "note: {} ({}@{}) holds the state lock; this is the state as of its last saved change",
                holder.operation,
                holder.user,
                holder.hostname
            );
        }
    }

    /// Everything the planner needs from the state.
    pub fn view(&self) -> StateView {
        let s = &self.snapshot;
        StateView {
            meta: s.meta.clone(),
            records: s
                .resources
                .iter()
                .map(|r| (r.address.clone(), r.clone()))
                .collect(),
            intents: s.intents.clone(),
            selections: s.selections.clone(),
        }
    }
}

/// A loaded config, its state and its placements.
pub struct Prepared {
    pub ws: Workspace,
    pub session: Session,
    pub view: StateView,
}

/// Loads the config in `dir`, opens its state under the lock (telling `notices` when it took
/// over a stale one) and places the models.
pub fn prepare(
    dir: &std::path::Path,
    vars: &VarInputs,
    operation: &str,
    lock: &LockOptions,
    notices: &Notices,
) -> Result<Prepared> {
    let loaded =
        config::load(dir, vars).map_err(|invalid| Error::InvalidConfig(Box::new(invalid)))?;
    let state = loaded.config.settings.state(&loaded.config.dir);
    let session = Session::open(backend(&state)?, operation, lock)?;
    if let Some(previous) = &session.took_over {
        notices.send(Notice::StaleStateLockTakenOver {
            previous: previous.clone(),
        });
    }
    let view = session.view()?;
    let ws = Workspace::from_loaded(loaded, &view.previous())?;
    Ok(Prepared { ws, session, view })
}

/// A hash of the config files and variable values; variable values enter only through an HMAC
/// keyed per state, so the hash reveals no secret.
pub fn config_hash(ws: &Workspace, key: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for (_, file) in ws.config.sources.iter() {
        // The file name alone: where berth runs from must not change the hash.
        let name = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(file.text.as_bytes());
        hasher.update([0]);
    }
    let values: Vec<(String, String)> = ws
        .config
        .variables
        .iter()
        .map(|v| {
            (
                v.name.value.clone(),
                v.value.as_ref().map(|x| x.to_string()).unwrap_or_default(),
            )
        })
        .collect();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(
        serde_json::to_string(&values)
            .expect("serialisable")
            .as_bytes(),
    );
    hasher.update(mac.finalize().into_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}
