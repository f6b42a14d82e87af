//! Files and directories only their owner can read (0600/0700), and atomic writes; knows
//! nothing of sled, locks or plan contents.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Result, StateError};
use crate::ids;

pub(crate) const FILE_MODE: u32 = 0o600;
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) as 0700 when it is missing; an existing directory keeps
/// its mode, since the operator may have chosen it.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(StateError::io(
                "use as the state directory",
                dir,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "not a directory"),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StateError::io("read", dir, e)),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| StateError::io("create the state directory", dir, e))?;
    // mkdir's mode passes through the umask; set it exactly.
    set_mode(dir, DIR_MODE)
}

/// Makes `dir` and every directory below it 0700 and every regular file below it 0600.
///
/// sled creates its files with the process umask, so this runs after each flush; sled's
/// directory holds only a handful of files, so the walk is cheap. Symlinks are left alone.
pub(crate) fn secure_tree(dir: &Path) -> Result<()> {
    let meta = fs::metadata(dir).map_err(|e| StateError::io("read", dir, e))?;
    if meta.permissions().mode() & 0o7777 != DIR_MODE {
        set_mode(dir, DIR_MODE)?;
    }
    secure_below(dir)
}

fn secure_below(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| StateError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StateError::io("list", dir, e))?;
        let path = entry.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // sled removes old snapshot files as it goes.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StateError::io("read", &path, e)),
        };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_dir() {
            if mode != DIR_MODE {
                set_mode(&path, DIR_MODE)?;
            }
            secure_below(&path)?;
        } else if meta.is_file() && mode != FILE_MODE {
            set_mode(&path, FILE_MODE)?;
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    match fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StateError::io("restrict the permissions of", path, e)),
    }
}

/// Opens (creating if needed) a read-write file that is 0600 whatever the umask.
pub(crate) fn open_private_rw(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| StateError::io("open", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| StateError::io("read", path, e))?;
    if meta.permissions().mode() & 0o7777 != FILE_MODE {
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| StateError::io("restrict the permissions of", path, e))?;
    }
    Ok(file)
}

/// Writes `bytes` to `path` as a 0600 file that either holds all of them or is left as it was:
/// a temp file beside it, synced, then renamed over it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.{}.tmp", ids::random_hex(4)?));

    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(|e| StateError::io("write", path, e))?;
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(|e| StateError::io("restrict the permissions of", path, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| StateError::io("write", path, e))?;
        fs::rename(&tmp, path).map_err(|e| StateError::io("write", path, e))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
        return written;
    }
    // The rename is durable only once the directory entry is.
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_state_dir_is_0700_even_with_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/.berth");
        ensure_private_dir(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn state_dir_that_is_a_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("state");
        fs::write(&file, b"x").unwrap();
        let err = ensure_private_dir(&file).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn secure_tree_fixes_loose_modes_of_the_dir_and_below() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let sub = tmp.path().join("blobs");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
        let file = sub.join("conf");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();

        secure_tree(tmp.path()).unwrap();

        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(tmp.path()), 0o700);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("plan.json");
        fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("plan.json")]);
    }

    #[test]
    fn atomic_write_into_a_missing_dir_fails_cleanly() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("missing/plan.json");
        let err = write_atomic(&path, b"x").unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
