//! The sled implementation of `StateStore`: layout of the trees, the format check and file
//! modes; must not be opened without berth's lock held (that is the caller's job).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionError,
    TransactionalTree,
};

use crate::error::{Result, StateError};
use crate::ids::random_hex;
use crate::private_fs::{ensure_private_dir, secure_tree};
use crate::record::{HistoryEntry, Intent, Meta, ResourceRecord, Selection};
use crate::snapshot::SnapshotWriter;
use crate::store::StateStore;

/// The store layout this berth reads and writes; a newer one is refused on open.
pub const STATE_FORMAT_VERSION: u32 = 1;

/// sled's own directory inside the state directory.
pub(crate) const DB_DIR: &str = "db";
pub(crate) const META_TREE: &str = "meta";
pub(crate) const META_KEY: &[u8] = b"meta";
const RESOURCES_TREE: &str = "resources";
const INTENTS_TREE: &str = "intents";
const SELECTIONS_TREE: &str = "selections";
const HISTORY_TREE: &str = "history";

/// A state store in a directory, backed by sled; reached through `SledBackend`.
pub(crate) struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    resources: sled::Tree,
    intents: sled::Tree,
    selections: sled::Tree,
    history: sled::Tree,
    snapshot: SnapshotWriter,
}

impl SledStore {
    /// Opens the store in `dir` (created 0700 if missing), creating its meta on first use and
    /// refusing a store written by a newer berth.
    pub(crate) fn open(dir: &Path) -> Result<SledStore> {
        ensure_private_dir(dir)?;
        let db_path = dir.join(DB_DIR);
        let db = open_db(dir, &db_path)?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| store_error(dir, e));
        let store = SledStore {
            meta: tree(META_TREE)?,
            resources: tree(RESOURCES_TREE)?,
            intents: tree(INTENTS_TREE)?,
            selections: tree(SELECTIONS_TREE)?,
            history: tree(HISTORY_TREE)?,
            snapshot: SnapshotWriter::new(dir),
            dir: dir.to_path_buf(),
            db,
        };
        store.init_meta()?;
        store.flush()?;
        Ok(store)
    }

    fn init_meta(&self) -> Result<()> {
        if let Some(raw) = self.meta.get(META_KEY).map_err(|e| self.store_err(e))? {
            decode_meta(&self.dir, &raw)?;
            return Ok(());
        }
        let meta = Meta {
            lineage: random_hex(16)?,
            serial: 0,
            format_version: STATE_FORMAT_VERSION,
            hmac_key: random_hex(32)?,
        };
        let bytes = encode(&meta, "state meta")?;
        // One Db per process and berth's lock around it: nobody can race this insert.
        self.meta
            .insert(META_KEY, bytes)
            .map_err(|e| self.store_err(e))?;
        Ok(())
    }

    fn store_err(&self, e: sled::Error) -> StateError {
        store_error(&self.dir, e)
    }

    /// Runs `change` on `tree` in one transaction with the meta tree, bumping the serial when
    /// `change` reports that it changed something, then flushes.
    fn counted_change<R>(
        &self,
        tree: &sled::Tree,
        change: impl Fn(&TransactionalTree) -> ConflictableTransactionResult<(R, bool), StateError>,
    ) -> Result<R> {
        let dir = &self.dir;
        let result = (&self.meta, tree)
            .transaction(|(meta, tree)| {
                let (out, changed) = change(tree)?;
                if changed {
                    let raw = meta.get(META_KEY)?.ok_or_else(|| {
                        abort(StateError::corrupt(
                            META_TREE,
                            "meta",
                            "the meta record is missing",
                        ))
                    })?;
                    let mut current = decode_meta(dir, &raw).map_err(abort)?;
                    current.serial += 1;
                    meta.insert(META_KEY, encode(&current, "state meta").map_err(abort)?)?;
                }
                Ok(out)
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => self.store_err(e),
            })?;
        self.flush()?;
        Ok(result)
    }

    fn put_plain(&self, tree: &sled::Tree, key: &[u8], bytes: Vec<u8>) -> Result<()> {
        tree.insert(key, bytes).map_err(|e| self.store_err(e))?;
        self.flush()
    }

    fn list<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        show_key: fn(&[u8]) -> String,
    ) -> Result<Vec<T>> {
        tree.iter()
            .map(|item| {
                let (key, value) = item.map_err(|e| self.store_err(e))?;
                serde_json::from_slice(&value)
                    .map_err(|e| StateError::corrupt(name, show_key(&key), e))
            })
            .collect()
    }
}

impl StateStore for SledStore {
    fn meta(&self) -> Result<Meta> {
        let raw = self
            .meta
            .get(META_KEY)
            .map_err(|e| self.store_err(e))?
            .ok_or_else(|| StateError::corrupt(META_TREE, "meta", "the meta record is missing"))?;
        decode_meta(&self.dir, &raw)
    }

    fn resources(&self) -> Result<Vec<ResourceRecord>> {
        // sled iterates in byte order of the keys, which for UTF-8 is the order of the strings.
        self.list(&self.resources, RESOURCES_TREE, utf8_key)
    }

    fn resource(&self, address: &str) -> Result<Option<ResourceRecord>> {
        let Some(raw) = self
            .resources
            .get(address.as_bytes())
            .map_err(|e| self.store_err(e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| StateError::corrupt(RESOURCES_TREE, address, e))
    }

    fn put_resource(&self, record: &ResourceRecord) -> Result<()> {
        let bytes = encode(record, "resource record")?;
        let key = record.address.as_bytes();
        self.counted_change(&self.resources, |tree| {
            tree.insert(key, bytes.as_slice())?;
            Ok(((), true))
        })
    }

    fn remove_resource(&self, address: &str) -> Result<bool> {
        self.counted_change(&self.resources, |tree| {
            let existed = tree.remove(address.as_bytes())?.is_some();
            Ok((existed, existed))
        })
    }

    fn put_intent(&self, intent: &Intent) -> Result<()> {
        let bytes = encode(intent, "intent")?;
        self.put_plain(&self.intents, intent.address.as_bytes(), bytes)
    }

    fn clear_intent(&self, address: &str) -> Result<()> {
        self.intents
            .remove(address.as_bytes())
            .map_err(|e| self.store_err(e))?;
        self.flush()
    }

    fn intents(&self) -> Result<Vec<Intent>> {
        self.list(&self.intents, INTENTS_TREE, utf8_key)
    }

    fn selections(&self) -> Result<Vec<Selection>> {
        self.list(&self.selections, SELECTIONS_TREE, selection_key_display)
    }

    fn put_selection(&self, selection: &Selection) -> Result<()> {
        let bytes = encode(selection, "selection")?;
        let key = selection_key(&selection.group, &selection.host);
        self.counted_change(&self.selections, |tree| {
            tree.insert(key.as_slice(), bytes.as_slice())?;
            Ok(((), true))
        })
    }

    fn remove_selection(&self, group: &str, host: &str) -> Result<bool> {
        let key = selection_key(group, host);
        self.counted_change(&self.selections, |tree| {
            let existed = tree.remove(key.as_slice())?.is_some();
            Ok((existed, existed))
        })
    }

    fn history(&self) -> Result<Vec<HistoryEntry>> {
        self.list(&self.history, HISTORY_TREE, history_key_display)
    }

    fn append_history(&self, entry: &HistoryEntry) -> Result<()> {
        let bytes = encode(entry, "history entry")?;
        // Monotonic across restarts, and big-endian so byte order is age order.
        let id = self.db.generate_id().map_err(|e| self.store_err(e))?;
        self.put_plain(&self.history, &id.to_be_bytes(), bytes)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.store_err(e))?;
        // Only sled's own directory: the state dir may be shared with the user's files.
        secure_tree(&self.dir.join(DB_DIR))?;
        // Every change ends here: what readers without the lock see follows it.
        self.snapshot.changed(self)
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        let _ = self.snapshot.finish(self);
    }
}

/// How long a reopen waits for a closed handle of this process to let go of sled's directory.
const REOPEN_GRACE: Duration = Duration::from_secs(2);

/// Opens sled's db, waiting briefly while another handle holds it.
///
/// sled unlocks its directory only when its background threads drop their last reference to a
/// closed handle, a little after the handle itself is gone; so a second lock of the same state
/// in one process (a test, a long-running berth) can find the directory still taken. Berth's own
/// lock is held here, so a holder that stays past the grace period is a foreign process.
fn open_db(dir: &Path, db_path: &Path) -> Result<sled::Db> {
    let deadline = Instant::now() + REOPEN_GRACE;
    loop {
        match sled::Config::new().path(db_path).open() {
            Ok(db) => return Ok(db),
            Err(e) => {
                let e = open_error(dir, e);
                if !matches!(e, StateError::StoreInUse { .. }) || Instant::now() >= deadline {
                    return Err(e);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn abort(e: StateError) -> ConflictableTransactionError<StateError> {
    ConflictableTransactionError::Abort(e)
}

fn store_error(dir: &Path, source: sled::Error) -> StateError {
    match source {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            return StateError::permission("open the store in", dir, dir, io);
        }
        _ => {}
    }
    StateError::Store {
        path: dir.to_path_buf(),
        detail: source.to_string(),
    }
}

/// sled reports a db held by another handle only as an `Other` I/O error with this wording.
fn open_error(dir: &Path, e: sled::Error) -> StateError {
    if let sled::Error::Io(io) = &e
        && io.to_string().contains("could not acquire lock")
    {
        return StateError::StoreInUse {
            path: dir.to_path_buf(),
        };
    }
    store_error(dir, e)
}

fn encode<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StateError::Encode {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}

/// Reads the format version before the rest, so that a newer layout is reported as newer rather
/// than as unreadable.
fn decode_meta(dir: &Path, raw: &[u8]) -> Result<Meta> {
    #[derive(serde::Deserialize)]
    struct Version {
        format_version: u32,
    }
    let version: Version =
        serde_json::from_slice(raw).map_err(|e| StateError::corrupt(META_TREE, "meta", e))?;
    if version.format_version > STATE_FORMAT_VERSION {
        return Err(StateError::NewerFormat {
            place: dir.display().to_string(),
            found: version.format_version,
            supported: STATE_FORMAT_VERSION,
        });
    }
    serde_json::from_slice(raw).map_err(|e| StateError::corrupt(META_TREE, "meta", e))
}

// Ids cannot hold NUL, so it separates the parts and sorts by group, then host.
fn selection_key(group: &str, host: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(group.len() + host.len() + 1);
    key.extend_from_slice(group.as_bytes());
    key.push(0);
    key.extend_from_slice(host.as_bytes());
    key
}

fn utf8_key(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

fn selection_key_display(key: &[u8]) -> String {
    utf8_key(key).replace('\0', "@")
}

fn history_key_display(key: &[u8]) -> String {
    match <[u8; 8]>::try_from(key) {
        Ok(bytes) => u64::from_be_bytes(bytes).to_string(),
        Err(_) => hex::encode(key),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::record::{ResourceKind, ResourceStatus};

    fn record(address: &str) -> ResourceRecord {
        let mut attributes = BTreeMap::new();
        attributes.insert("port".to_owned(), serde_json::json!(8080));
        attributes.insert(
            "command".to_owned(),
            serde_json::json!("llama-server -m /srv/m.gguf --api-key '<redacted>'"),
        );
        ResourceRecord {
            address: address.parse().unwrap(),
            kind: ResourceKind::Model,
            host: "gpu-a".to_owned(),
            status: ResourceStatus::Ready,
            fingerprint: Some("f1".to_owned()),
            attributes,
            updated_at: 1_700_000_000,
        }
    }

    #[test]
    fn first_open_creates_a_private_dir_and_records_the_format() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".berth");
        let store = SledStore::open(&dir).unwrap();
        assert_eq!(store.meta().unwrap().format_version, STATE_FORMAT_VERSION);
        assert!(
            dir.join(DB_DIR).is_dir(),
            "sled keeps its files in {DB_DIR}/"
        );
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn every_state_file_is_owner_only_whatever_the_umask() {
        // SAFETY: umask is process-wide but only ever narrows permissions; 022 is the common
        // default, under which sled would leave its files world-readable.
        unsafe { libc::umask(0o022) };
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let store = SledStore::open(&dir).unwrap();
        store.put_resource(&record("model.a@gpu-a")).unwrap();
        store
            .append_history(&HistoryEntry {
                serial: 1,
                operation: "apply".into(),
                user: "u".into(),
                hostname: "h".into(),
                started_at: 0,
                finished_at: 0,
                changes: vec![],
                interrupted: false,
            })
            .unwrap();

        let mut files = 0;
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let mode = meta.permissions().mode() & 0o777;
                if meta.is_dir() {
                    assert_eq!(mode, 0o700, "{}", path.display());
                    stack.push(path);
                } else {
                    assert_eq!(mode, 0o600, "{}", path.display());
                    files += 1;
                }
            }
        }
        assert!(files >= 2, "sled wrote no files?");
    }

    #[test]
    fn a_state_from_a_newer_berth_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::create_dir(&dir).unwrap();
        {
            let db = sled::open(dir.join(DB_DIR)).unwrap();
            let meta = db.open_tree(META_TREE).unwrap();
            // A newer layout may also change the shape of meta: only format_version is read.
            meta.insert(
                META_KEY,
                br#"{"format_version": 2, "lineage": {"v2": true}}"#.as_slice(),
            )
            .unwrap();
            db.flush().unwrap();
        }
        let err = SledStore::open(&dir)
            .err()
            .expect("a newer format must be refused");
        assert!(matches!(
            err,
            StateError::NewerFormat {
                found: 2,
                supported: 1,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            format!(
                "state at {} was written by a newer berth (format 2; this berth reads 1)",
                dir.display()
            )
        );
    }

    #[test]
    fn a_second_open_of_the_same_store_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = SledStore::open(tmp.path()).unwrap();
        let err = SledStore::open(tmp.path())
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StateError::StoreInUse { .. }), "{err:?}");
        assert!(err.to_string().contains("already open"), "{err}");
    }

    #[test]
    fn a_corrupt_record_names_its_key_and_can_still_be_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SledStore::open(tmp.path()).unwrap();
        store.put_resource(&record("model.a@gpu-a")).unwrap();
        store
            .resources
            .insert(b"model.bad@gpu-a".as_slice(), b"{not json".as_slice())
            .unwrap();

        let err = store.resources().unwrap_err();
        assert!(err.to_string().contains("`model.bad@gpu-a`"), "{err}");
        let err = store.resource("model.bad@gpu-a").unwrap_err();
        let help = miette::Diagnostic::help(&err).unwrap().to_string();
        assert!(help.contains("berth state rm model.bad@gpu-a"), "{help}");

        assert!(store.remove_resource("model.bad@gpu-a").unwrap());
        assert_eq!(store.resources().unwrap(), vec![record("model.a@gpu-a")]);
    }
}
