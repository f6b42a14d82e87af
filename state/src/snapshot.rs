//! The last committed state as one file beside the store (`snapshot.json`, mode 0600), for
//! readers that must not wait behind an apply's lock (`state list`, `endpoints`...). Only the
//! lock holder writes it, after each committed change; anyone reads it, without the lock.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StateError};
use crate::ids::now_unix;
use crate::private_fs::write_atomic;
use crate::record::{HistoryEntry, Intent, Meta, ResourceRecord, Selection};
use crate::store::StateStore;

/// The snapshot's file name inside the state directory.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot.json";

/// Everything a state holds, as of one committed change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: Meta,
    pub resources: Vec<ResourceRecord>,
    pub intents: Vec<Intent>,
    pub selections: Vec<Selection>,
    pub history: Vec<HistoryEntry>,
    /// When it was taken, in Unix seconds.
    pub taken_at: u64,
}

impl Snapshot {
    /// Reads the whole of `store`.
    pub fn of(store: &dyn StateStore) -> Result<Snapshot> {
        Ok(Snapshot {
            meta: store.meta()?,
            resources: store.resources()?,
            intents: store.intents()?,
            selections: store.selections()?,
            history: store.history()?,
            taken_at: now_unix(),
        })
    }

    /// The snapshot in the state directory `dir`, if one was written.
    pub(crate) fn read(dir: &Path) -> Result<Option<Snapshot>> {
        let path = dir.join(SNAPSHOT_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io("read", &path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::corrupt("snapshot", SNAPSHOT_FILE, e))
    }
}

/// Writes the snapshot of a store after its changes. A write costs time in proportion to the
/// state; when that grows past [`CHEAP`], writes are spaced so that they take at most a tenth of
/// the time, and the change that was skipped is written by the next change or when the store
/// closes.
pub(crate) struct SnapshotWriter {
    path: PathBuf,
    pace: Mutex<Pace>,
}

#[derive(Default)]
struct Pace {
    last: Option<(Instant, Duration)>,
    pending: bool,
}

/// A write this cheap is always made at once.
const CHEAP: Duration = Duration::from_millis(20);

impl SnapshotWriter {
    pub(crate) fn new(dir: &Path) -> SnapshotWriter {
        SnapshotWriter {
            path: dir.join(SNAPSHOT_FILE),
            pace: Mutex::default(),
        }
    }

    /// Records that `store` changed, writing its snapshot unless writes must be spaced.
    pub(crate) fn changed(&self, store: &dyn StateStore) -> Result<()> {
        let mut pace = self.pace.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, cost)) = pace.last
            && cost > CHEAP
            && at.elapsed() < cost * 10
        {
            pace.pending = true;
            return Ok(());
        }
        self.write(store, &mut pace)
    }

    /// Writes the change a spaced write skipped, if any.
    pub(crate) fn finish(&self, store: &dyn StateStore) -> Result<()> {
        let mut pace = self.pace.lock().unwrap_or_else(|e| e.into_inner());
        if pace.pending {
            self.write(store, &mut pace)?;
        }
        Ok(())
    }

    fn write(&self, store: &dyn StateStore, pace: &mut Pace) -> Result<()> {
        let started = Instant::now();
        let snapshot = Snapshot::of(store)?;
        let json = serde_json::to_vec(&snapshot).map_err(|e| StateError::Encode {
            what: "state snapshot".to_owned(),
            detail: e.to_string(),
        })?;
        write_atomic(&self.path, &json)?;
        *pace = Pace {
            last: Some((Instant::now(), started.elapsed())),
            pending: false,
        };
        Ok(())
    }
}
