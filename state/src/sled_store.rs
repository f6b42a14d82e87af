//! The sled implementation of `StateStore`: layout of the trees, the format check and file
//! modes; must not be opened without berth's lock held (that is the caller's job).

use std::path::{Path, PathBuf};

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

/// A state store in a directory, backed by sled.
pub struct SledStore {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    resources: sled::Tree,
    intents: sled::Tree,
    selections: sled::Tree,
    history: sled::Tree,
}

impl SledStore {
    /// Opens the store in `dir` (created 0700 if missing), creating its meta on first use and
    /// refusing a store written by a newer berth.
    pub fn open(dir: &Path) -> Result<SledStore> {
        ensure_private_dir(dir)?;
        let db_path = dir.join(DB_DIR);
        let db = sled::Config::new()
            .path(&db_path)
            .open()
            .map_err(|e| open_error(dir, e))?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| store_error(dir, e));
        let store = SledStore {
            meta: tree(META_TREE)?,
            resources: tree(RESOURCES_TREE)?,
            intents: tree(INTENTS_TREE)?,
            selections: tree(SELECTIONS_TREE)?,
            history: tree(HISTORY_TREE)?,
            dir: dir.to_path_buf(),
            db,
        };
        store.init_meta()?;
        store.flush()?;
        Ok(store)
    }

    /// The state directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        secure_tree(&self.dir.join(DB_DIR))
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
        source,
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
            path: dir.to_path_buf(),
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
    use std::sync::Arc;

    use super::*;
    use crate::record::{HistoryChange, ResourceKind, ResourceStatus};

    fn record(address: &str) -> ResourceRecord {
        let mut attributes = BTreeMap::new();
        attributes.insert("port".to_owned(), serde_json::json!(8080));
        attributes.insert(
            "command".to_owned(),
            serde_json::json!("llama-server -m /srv/m.gguf --api-key '<redacted>'"),
        );
        ResourceRecord {
            address: address.to_owned(),
            kind: ResourceKind::Model,
            host: "gpu-a".to_owned(),
            status: ResourceStatus::Ready,
            fingerprint: Some("f1".to_owned()),
            attributes,
            updated_at: 1_700_000_000,
        }
    }

    fn serial(store: &SledStore) -> u64 {
        store.meta().unwrap().serial
    }

    #[test]
    fn first_open_creates_a_private_dir_and_a_fresh_meta() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(".berth");
        let store = SledStore::open(&dir).unwrap();
        let meta = store.meta().unwrap();
        assert_eq!(meta.lineage.len(), 32);
        assert!(meta.lineage.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(meta.hmac_key.len(), 64);
        assert!(meta.hmac_key.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(meta.serial, 0);
        assert_eq!(meta.format_version, STATE_FORMAT_VERSION);
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        let other = SledStore::open(&tmp.path().join("other")).unwrap();
        assert_ne!(other.meta().unwrap().lineage, meta.lineage);
        assert_ne!(other.meta().unwrap().hmac_key, meta.hmac_key);
    }

    #[test]
    fn everything_written_survives_a_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let intent = Intent {
            address: "model.b@gpu-a".into(),
            action: "replace".into(),
            pid: 42,
            started_at: 5,
        };
        let selection = Selection {
            group: "main".into(),
            host: "gpu-a".into(),
            model: "qwen".into(),
            selected_at: 6,
        };
        let entry = HistoryEntry {
            serial: 3,
            operation: "apply".into(),
            user: "ops".into(),
            hostname: "laptop".into(),
            started_at: 1,
            finished_at: 2,
            changes: vec![HistoryChange {
                address: "model.a@gpu-a".into(),
                action: "create".into(),
                outcome: "ok".into(),
            }],
        };
        let meta_before = {
            let store = SledStore::open(&dir).unwrap();
            store.put_resource(&record("model.a@gpu-a")).unwrap();
            store.put_intent(&intent).unwrap();
            store.put_selection(&selection).unwrap();
            store.append_history(&entry).unwrap();
            store.meta().unwrap()
        };

        let store = SledStore::open(&dir).unwrap();
        assert_eq!(store.meta().unwrap(), meta_before);
        assert_eq!(store.resources().unwrap(), vec![record("model.a@gpu-a")]);
        assert_eq!(
            store.resource("model.a@gpu-a").unwrap(),
            Some(record("model.a@gpu-a"))
        );
        assert_eq!(store.resource("model.zz@gpu-a").unwrap(), None);
        assert_eq!(store.intents().unwrap(), vec![intent]);
        assert_eq!(store.selections().unwrap(), vec![selection]);
        assert_eq!(store.history().unwrap(), vec![entry]);
    }

    #[test]
    fn serial_counts_changes_of_resources_and_selections_only() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SledStore::open(tmp.path()).unwrap();
        assert_eq!(serial(&store), 0);
        store.put_resource(&record("model.a@gpu-a")).unwrap();
        assert_eq!(serial(&store), 1);
        store.put_resource(&record("model.a@gpu-a")).unwrap();
        assert_eq!(serial(&store), 2);
        assert!(store.remove_resource("model.a@gpu-a").unwrap());
        assert_eq!(serial(&store), 3);
        assert!(!store.remove_resource("model.a@gpu-a").unwrap());
        assert_eq!(serial(&store), 3, "removing nothing changes nothing");

        let selection = Selection {
            group: "g".into(),
            host: "h".into(),
            model: "m".into(),
            selected_at: 0,
        };
        store.put_selection(&selection).unwrap();
        assert_eq!(serial(&store), 4);
        assert!(store.remove_selection("g", "h").unwrap());
        assert!(!store.remove_selection("g", "h").unwrap());
        assert_eq!(serial(&store), 5);

        let intent = Intent {
            address: "model.a@gpu-a".into(),
            action: "create".into(),
            pid: 1,
            started_at: 0,
        };
        store.put_intent(&intent).unwrap();
        store.clear_intent(&intent.address).unwrap();
        store.clear_intent(&intent.address).unwrap();
        assert_eq!(store.intents().unwrap(), vec![]);
        assert_eq!(serial(&store), 5, "intents are bookkeeping, not state");
    }

    #[test]
    fn concurrent_writers_each_get_their_own_serial_bump() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(tmp.path()).unwrap());
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..10 {
                        store
                            .put_resource(&record(&format!("model.m{w}-{i}@gpu-a")))
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(serial(&store), 40);
        assert_eq!(store.resources().unwrap().len(), 40);
    }

    #[test]
    fn lists_are_sorted_by_address_and_history_is_oldest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SledStore::open(tmp.path()).unwrap();
        for address in [
            "model.b@gpu-a",
            "backend.cuda@gpu-a",
            "host.gpu-a",
            "model.a@gpu-b",
        ] {
            store.put_resource(&record(address)).unwrap();
        }
        let addresses: Vec<_> = store
            .resources()
            .unwrap()
            .into_iter()
            .map(|r| r.address)
            .collect();
        assert_eq!(
            addresses,
            [
                "backend.cuda@gpu-a",
                "host.gpu-a",
                "model.a@gpu-b",
                "model.b@gpu-a"
            ]
        );

        for (group, host) in [("main", "gpu-b"), ("aux", "gpu-a"), ("main", "gpu-a")] {
            store
                .put_selection(&Selection {
                    group: group.into(),
                    host: host.into(),
                    model: "m".into(),
                    selected_at: 0,
                })
                .unwrap();
        }
        let pairs: Vec<_> = store
            .selections()
            .unwrap()
            .into_iter()
            .map(|s| (s.group, s.host))
            .collect();
        assert_eq!(
            pairs,
            [
                ("aux".to_owned(), "gpu-a".to_owned()),
                ("main".to_owned(), "gpu-a".to_owned()),
                ("main".to_owned(), "gpu-b".to_owned())
            ]
        );

        // More entries than one byte can count, so a little-endian key would misorder them.
        for serial in 0..300u64 {
            store
                .append_history(&HistoryEntry {
                    serial,
                    operation: "apply".into(),
                    user: "u".into(),
                    hostname: "h".into(),
                    started_at: 0,
                    finished_at: 0,
                    changes: vec![],
                })
                .unwrap();
        }
        let serials: Vec<_> = store
            .history()
            .unwrap()
            .into_iter()
            .map(|e| e.serial)
            .collect();
        assert_eq!(serials, (0..300).collect::<Vec<_>>());
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
