//! `HostLock`: the host lock of DESIGN.md section 7, a `flock` held on the host by a script
//! that lives as long as one open channel. The script and the lock handle know nothing of SSH
//! (any transport that can keep a script's stdin open can hold one); this module must not
//! talk to a host itself.

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::Result;
use crate::transport::quote;

/// Printed by the lock script once the lock is taken.
pub(crate) const READY: &str = "berth-lock-ready";
/// Printed by the lock script, followed by the holder line, when someone else holds the lock.
pub(crate) const BUSY: &str = "berth-lock-busy";
/// The lock script's exit status when the lock is taken (EX_TEMPFAIL).
pub(crate) const BUSY_STATUS: u32 = 75;

/// A lock held on a host until this value is dropped or released, or its connection ends.
///
/// On the host, a script holds `flock` on the lock file and blocks reading its stdin; berth
/// keeps that stdin open. Dropping the lock (or berth dying, even by SIGKILL, or the connection
/// breaking) closes it, the script exits and the kernel drops the `flock`.
#[derive(Debug)]
pub struct HostLock {
    host: String,
    path: String,
    release: Option<oneshot::Sender<()>>,
    held: watch::Receiver<bool>,
    keeper: Option<JoinHandle<()>>,
}

impl HostLock {
    /// Wraps a lock whose `keeper` task holds the script until `release` fires or is dropped,
    /// and sets `held` to false when the script is gone.
    pub(crate) fn new(
        host: String,
        path: String,
        release: oneshot::Sender<()>,
        held: watch::Receiver<bool>,
        keeper: JoinHandle<()>,
    ) -> Self {
        HostLock {
            host,
            path,
            release: Some(release),
            held,
            keeper: Some(keeper),
        }
    }

    /// The host id this lock is held on.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The lock file on the host.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// False once the lock was lost (its connection or script ended): the host is unprotected.
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Resolves when the lock is lost; an executor can `select!` on it to stop touching the host.
    pub async fn lost(&self) {
        let mut held = self.held.clone();
        let _ = held.wait_for(|held| !*held).await;
    }

    /// Releases the lock and waits until the host has let go of it.
    pub async fn release(mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.await;
        }
    }
}

impl Drop for HostLock {
    fn drop(&mut self) {
        // Dropping the sender wakes the keeper task, which closes the script's stdin.
        self.release.take();
    }
}

/// The script that takes `flock -n` on `path` (creating its directory), writes `holder` into
/// the lock file, prints [`READY`] and holds the lock until its stdin closes; it then empties
/// the file while still holding the lock, so a finished holder is never named. When the lock
/// is taken it prints [`BUSY`] and the current holder line, and exits [`BUSY_STATUS`].
pub(crate) fn lock_script(path: &str, holder: &str) -> Result<String> {
    let p = quote(path)?;
    let holder = quote(&one_line(holder))?;
    Ok(format!(
        r#"# berth: host lock {p}
p={p}
command -v flock >/dev/null 2>&1 || {{ echo "flock(1) is not installed on this host (it is in util-linux)" >&2; exit 127; }}
mkdir -p -- "$(dirname -- "$p")" || exit 1
exec 9>>"$p" || exit 1
if ! flock -n 9; then
  # The holder writes its line right after locking: give it a moment before reading.
  i=0; h=
  while [ -z "$h" ] && [ "$i" -lt 20 ]; do
    h=$(head -n 1 -- "$p" 2>/dev/null)
    [ -n "$h" ] || sleep 0.05 2>/dev/null || sleep 1
    i=$((i + 1))
  done
  printf '{BUSY} %s\n' "$h"
  exit {BUSY_STATUS}
fi
printf '%s\n' {holder} >"$p"
echo {READY}
cat >/dev/null
: >"$p"
"#
    ))
}

/// The holder as one printable line: the lock file is read back with `head -n 1`.
fn one_line(holder: &str) -> String {
    holder
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// What the lock script said when it could not take the lock: the holder line, if any.
pub(crate) fn busy_holder(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|line| {
        let rest = line.strip_prefix(BUSY)?;
        let holder = rest.trim();
        Some(if holder.is_empty() {
            "an unknown holder (the lock file names no one)".to_string()
        } else {
            holder.to_string()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_is_one_quoted_line() {
        let script = lock_script("/var/lib/berth/.lock", "id 1\nuser@h 'x'").unwrap();
        assert!(script.contains("p=/var/lib/berth/.lock\n"), "{script}");
        let line = quote("id 1 user@h 'x'").unwrap();
        assert!(
            script.contains(&format!("printf '%s\\n' {line} >\"$p\"")),
            "{script}"
        );
    }

    #[test]
    fn busy_reply_names_the_holder() {
        assert_eq!(
            busy_holder("berth-lock-busy lock 7 ops@a pid 12 apply\n").as_deref(),
            Some("lock 7 ops@a pid 12 apply")
        );
        assert!(
            busy_holder("berth-lock-busy \n")
                .unwrap()
                .contains("unknown holder")
        );
        assert_eq!(busy_holder("other\n"), None);
    }
}
