//! The sled backend's state lock: an OS file lock on `berth.lock` plus who holds it, stale-holder
//! detection and force-unlock; must not touch the store itself (it is taken before the store is
//! opened). `LockInfo` and `LockOptions` are every backend's words for a holder and a request.
//!
//! The lock file is never deleted, only emptied: deleting it would let a second berth lock a
//! fresh file while the first still holds the old one.

use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StateError};
use crate::ids::{format_unix, now_unix, random_hex};
use crate::private_fs::{ensure_private_dir, open_private_rw};

/// The lock file's name inside the state directory.
pub(crate) const LOCK_FILE: &str = "berth.lock";

const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Who holds (or held) the state lock, as written in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Short random hex id, what `berth force-unlock` takes.
    pub id: String,
    /// The holder's process id, on `hostname`.
    pub pid: u32,
    /// The machine the holder runs on.
    pub hostname: String,
    /// The user running the holder.
    pub user: String,
    /// The command holding the lock (`apply`, `plan`...).
    pub operation: String,
    /// When the lock was taken, in Unix seconds.
    pub started_at: u64,
    /// The CI run the holder belongs to, when it runs in CI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<CiRun>,
}

/// A CI job, as its usual environment variables describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiRun {
    /// Where to see the run (a URL when the CI gives one).
    pub run: String,
    /// The commit it runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

impl CiRun {
    /// The CI run this process belongs to, from GitHub Actions', GitLab CI's or Buildkite's
    /// variables; `None` outside CI.
    pub fn from_env() -> Option<CiRun> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(id) = var("GITHUB_RUN_ID") {
            let run = match (var("GITHUB_SERVER_URL"), var("GITHUB_REPOSITORY")) {
                (Some(server), Some(repo)) => format!("{server}/{repo}/actions/runs/{id}"),
                _ => format!("GitHub Actions run {id}"),
            };
            return Some(CiRun {
                run,
                commit: var("GITHUB_SHA"),
            });
        }
        if let Some(run) = var("CI_JOB_URL").or_else(|| var("CI_PIPELINE_URL")) {
            return Some(CiRun {
                run,
                commit: var("CI_COMMIT_SHA"),
            });
        }
        if let Some(run) = var("BUILDKITE_BUILD_URL") {
            return Some(CiRun {
                run,
                commit: var("BUILDKITE_COMMIT"),
            });
        }
        None
    }
}

impl LockInfo {
    /// This process as a holder of a lock for `operation`, with a fresh id.
    pub(crate) fn for_this_process(operation: &str) -> Result<LockInfo> {
        Ok(LockInfo {
            id: random_hex(4)?,
            pid: std::process::id(),
            hostname: this_hostname(),
            user: current_user(),
            operation: operation.to_owned(),
            started_at: now_unix(),
            ci: CiRun::from_env(),
        })
    }

    /// `, CI run URL at COMMIT` when the holder runs in CI, else empty.
    pub fn ci_suffix(&self) -> String {
        match &self.ci {
            Some(CiRun {
                run,
                commit: Some(c),
            }) => format!(", CI {run} at {c}"),
            Some(CiRun { run, commit: None }) => format!(", CI {run}"),
            None => String::new(),
        }
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lock {} held by {}@{} pid {} ({}{}, since {})",
            self.id,
            self.user,
            self.hostname,
            self.pid,
            self.operation,
            self.ci_suffix(),
            format_unix(self.started_at)
        )
    }
}

/// How long to wait for the lock and whether to take over a stale one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockOptions {
    /// How long to keep retrying while another berth holds the lock; zero fails at once.
    pub timeout: Duration,
    /// Take over a lock whose holder is gone (stale, or an unreadable lock file nobody holds).
    pub force: bool,
}

/// The held lock file; released (file emptied, OS lock dropped) on `release` or drop.
#[derive(Debug)]
pub(crate) struct StateLock {
    file: Option<File>,
    path: PathBuf,
    info: LockInfo,
    took_over: Option<LockInfo>,
}

/// What the lock file says, as far as it can be read.
enum Content {
    Empty,
    Holder(LockInfo),
    Unreadable(String),
}

/// Why the last attempt could not take the lock.
enum Busy {
    Holder(LockInfo),
    Unknown(String),
}

impl StateLock {
    /// The lock file's descriptor, so that a signal handler can empty it before the process
    /// dies (the kernel then drops the OS lock).
    pub(crate) fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.file.as_ref().map(|f| f.as_raw_fd())
    }

    /// Takes the lock of the state in `dir` (created 0700 if missing) for `operation`.
    pub(crate) fn acquire(dir: &Path, operation: &str, opts: &LockOptions) -> Result<StateLock> {
        ensure_private_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        let mut file = open_private_rw(&path)?;
        let deadline = Instant::now() + opts.timeout;
        loop {
            let busy = match file.try_lock() {
                // Every way out of this arm that does not keep the lock unlocks explicitly:
                // closing the file is not enough, since a child process forked meanwhile by
                // another thread shares the open file description (and with it the lock)
                // until it execs.
                Ok(()) => match read_content(&mut file, &path) {
                    Err(e) => {
                        unlock(&file, &path)?;
                        return Err(e);
                    }
                    Ok(Content::Empty) => return Self::take(file, path, operation, None),
                    Ok(Content::Holder(prev)) if is_stale(&prev) => {
                        if opts.force {
                            return Self::take(file, path, operation, Some(prev));
                        }
                        unlock(&file, &path)?;
                        return Err(StateError::StaleLock {
                            holder: Box::new(prev),
                        });
                    }
                    Ok(Content::Holder(prev)) => {
                        // The OS lock is free but the holder may be alive (the pid was reused, or
                        // it runs on another machine sharing this directory): keep waiting.
                        unlock(&file, &path)?;
                        Busy::Holder(prev)
                    }
                    Ok(Content::Unreadable(detail)) => {
                        if opts.force {
                            return Self::take(file, path, operation, None);
                        }
                        unlock(&file, &path)?;
                        return Err(StateError::UnreadableLock { path, detail });
                    }
                },
                Err(TryLockError::WouldBlock) => match read_content(&mut file, &path)? {
                    Content::Holder(holder) => Busy::Holder(holder),
                    // The holder may be between taking the OS lock and writing its info.
                    Content::Empty => Busy::Unknown("the file is empty".to_owned()),
                    Content::Unreadable(detail) => Busy::Unknown(detail),
                },
                Err(TryLockError::Error(e)) => return Err(StateError::io("lock", &path, e)),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(match busy {
                    Busy::Holder(holder) => StateError::Locked {
                        held_for: Duration::from_secs(now_unix().saturating_sub(holder.started_at)),
                        holder: Box::new(holder),
                    },
                    Busy::Unknown(detail) => StateError::LockedByUnknown { path, detail },
                });
            }
            std::thread::sleep(RETRY_EVERY.min(deadline - now));
        }
    }

    fn take(
        mut file: File,
        path: PathBuf,
        operation: &str,
        took_over: Option<LockInfo>,
    ) -> Result<StateLock> {
        let info = LockInfo::for_this_process(operation)?;
        let json = serde_json::to_vec(&info).map_err(|e| StateError::Encode {
            what: "lock info".to_owned(),
            detail: e.to_string(),
        })?;
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(&json))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            // Leave no half-written holder behind for the next berth to puzzle over.
            let _ = file.set_len(0);
            let _ = file.unlock();
            return Err(StateError::io("write", &path, e));
        }
        Ok(StateLock {
            file: Some(file),
            path,
            info,
            took_over,
        })
    }

    /// Who holds the lock now: this process.
    pub(crate) fn info(&self) -> &LockInfo {
        &self.info
    }

    /// The stale holder this lock replaced, when it was taken with `force` over one.
    pub(crate) fn took_over(&self) -> Option<&LockInfo> {
        self.took_over.as_ref()
    }

    /// Releases the lock, reporting a failure to empty the lock file (drop ignores it); a second
    /// call does nothing.
    pub(crate) fn release(&mut self) -> Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // Empty the file while still holding the OS lock, so nobody reads a gone holder.
        let cleared = file
            .set_len(0)
            .and_then(|()| file.sync_all())
            .map_err(|e| StateError::io("clear", &self.path, e));
        let unlocked = unlock(&file, &self.path);
        cleared.and(unlocked)
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// Who holds the lock of the state in `dir`, if anyone wrote it (for display).
///
/// An empty or missing file reads as `None`; an unreadable one is an error.
pub(crate) fn read_lock_info(dir: &Path) -> Result<Option<LockInfo>> {
    let path = dir.join(LOCK_FILE);
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StateError::io("open", &path, e)),
    };
    match read_content(&mut file, &path)? {
        Content::Empty => Ok(None),
        Content::Holder(info) => Ok(Some(info)),
        Content::Unreadable(detail) => Err(StateError::UnreadableLock { path, detail }),
    }
}

/// Removes the lock `id` of the state in `dir` when its holder no longer holds it, returning
/// what was removed.
///
/// Refuses when `id` is not the current lock's, and when a process still holds the OS lock.
pub(crate) fn force_unlock(dir: &Path, id: &str) -> Result<LockInfo> {
    let path = dir.join(LOCK_FILE);
    let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StateError::NotLocked {
                place: format!("{} is empty or missing", path.display()),
            });
        }
        Err(e) => return Err(StateError::io("open", &path, e)),
    };
    let holder = expect_holder(read_content(&mut file, &path)?, &path, id)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(StateError::LockInUse {
                holder: Box::new(holder),
            });
        }
        Err(TryLockError::Error(e)) => return Err(StateError::io("lock", &path, e)),
    }
    // Between the read and the OS lock the holder may have released and another berth come
    // and gone: check again under the lock.
    let result = expect_holder(read_content(&mut file, &path)?, &path, id).and_then(|holder| {
        file.set_len(0)
            .and_then(|()| file.sync_all())
            .map_err(|e| StateError::io("clear", &path, e))?;
        Ok(holder)
    });
    unlock(&file, &path)?;
    result
}

fn expect_holder(content: Content, path: &Path, id: &str) -> Result<LockInfo> {
    match content {
        Content::Empty => Err(StateError::NotLocked {
            place: format!("{} is empty or missing", path.display()),
        }),
        Content::Unreadable(detail) => Err(StateError::UnreadableLock {
            path: path.to_path_buf(),
            detail,
        }),
        Content::Holder(holder) if holder.id != id => Err(StateError::LockIdMismatch {
            given: id.to_owned(),
            holder: Box::new(holder),
        }),
        Content::Holder(holder) => Ok(holder),
    }
}

fn read_content(file: &mut File, path: &Path) -> Result<Content> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| StateError::io("read", path, e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Content::Empty);
    }
    Ok(match serde_json::from_slice::<LockInfo>(&bytes) {
        Ok(info) => Content::Holder(info),
        Err(e) => Content::Unreadable(format!("not a berth lock record: {e}")),
    })
}

fn unlock(file: &File, path: &Path) -> Result<()> {
    file.unlock().map_err(|e| StateError::io("unlock", path, e))
}

/// A holder is stale when it ran on this machine and its process is gone.
pub(crate) fn is_stale(holder: &LockInfo) -> bool {
    holder.hostname == this_hostname() && !pid_alive(holder.pid)
}

fn pid_alive(pid: u32) -> bool {
    // Pid 0 or one that does not fit a pid_t would make kill(2) signal a process group.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    // EPERM: it exists but belongs to another user.
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

pub(crate) fn this_hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

pub(crate) fn current_user() -> String {
    if let Ok(user) = std::env::var("USER")
        && !user.is_empty()
    {
        return user;
    }
    // SAFETY: getuid cannot fail.
    user_name(unsafe { libc::getuid() })
}

/// The login name of `uid`, or `uid N` when the user database has none.
pub(crate) fn user_name(uid: libc::uid_t) -> String {
    // SAFETY: getpwuid_r writes only into `pwd` and `buf`, whose sizes it is given; `pw_name`
    // points into `buf`, which outlives its use here.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            return std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    format!("uid {uid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_pid_is_alive_and_invalid_pids_are_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX));
    }
}
