//! `HostLock`: the host lock of DESIGN.md section 7, a **lease** on the host. The lease file
//! names its holder and an expiry on the host's clock; a script on the host, fed by one open
//! channel, takes it, renews it on each line it reads and ends it when its input closes. A
//! lease not renewed within [`LEASE_TTL`] is expired and the next berth takes it over, so a
//! partitioned or frozen holder locks a host out for a minute, not until sshd notices the dead
//! session. `flock` guards only the short reads and writes of the lease file, never the hold.
//! The scripts and the lock handle know nothing of SSH; this module must not talk to a host.

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::Result;
use crate::transport::quote;

/// How long a lease lasts without renewal: then the next berth may take it over.
pub const LEASE_TTL: Duration = Duration::from_secs(60);
/// How often a holder renews its lease: several renewals fit in one [`LEASE_TTL`], so one or
/// two lost to a slow link do not cost the lease.
pub const LEASE_RENEW_EVERY: Duration = Duration::from_secs(10);
/// How long a script waits for another's short section on the lease file (seconds).
const MUTEX_WAIT_SECS: u32 = 5;

/// Printed by the lock script once the lease is taken.
pub(crate) const READY: &str = "berth-lock-ready";
/// Printed by the lock script, followed by the holder line, when someone else holds the lease.
pub(crate) const BUSY: &str = "berth-lock-busy";
/// Printed before [`READY`] when the lease taken was another holder's expired one: the seconds
/// since it expired, then its holder line.
pub(crate) const TOOK_OVER: &str = "berth-lock-took-over";
/// Printed for each renewal that extended the lease.
pub(crate) const RENEWED: &str = "berth-lock-renewed";
/// Printed (then the script exits) when a renewal finds the lease is not this holder's any
/// more, followed by the current holder line (empty when the lease was removed).
pub(crate) const LOST: &str = "berth-lock-lost";
/// Printed by the removal script, followed by the holder line it removed.
pub(crate) const REMOVED: &str = "berth-lock-removed";
/// The lock script's exit status when the lease is held by someone else (EX_TEMPFAIL).
pub(crate) const BUSY_STATUS: u32 = 75;
/// What the holder writes to the script's stdin to renew the lease.
pub(crate) const RENEW_LINE: &[u8] = b"renew\n";

/// Whether a taken lock is still this berth's: `None` while held, else why it was lost.
pub(crate) type LockState = Option<String>;

/// A lease held on a host until this value is dropped or released.
///
/// The keeper task renews it every [`LEASE_RENEW_EVERY`] over the script's stdin. Dropping
/// the lock (or berth dying, even by SIGKILL, or the connection breaking) closes that stdin and
/// the script ends the lease at once; if the host never hears of it (a partition), the lease
/// expires after [`LEASE_TTL`].
#[derive(Debug)]
pub struct HostLock {
    host: String,
    path: String,
    took_over: Option<String>,
    release: Option<oneshot::Sender<()>>,
    state: watch::Receiver<LockState>,
    keeper: Option<JoinHandle<()>>,
}

impl HostLock {
    /// Wraps a lease whose `keeper` task renews it until `release` fires or is dropped, and
    /// sets `state` to the reason once the lease is lost.
    pub(crate) fn new(
        host: String,
        path: String,
        took_over: Option<String>,
        release: oneshot::Sender<()>,
        state: watch::Receiver<LockState>,
        keeper: JoinHandle<()>,
    ) -> Self {
        HostLock {
            host,
            path,
            took_over,
            release: Some(release),
            state,
            keeper: Some(keeper),
        }
    }

    /// The host id this lock is held on.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The lease file on the host.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// When taking the lock took over another holder's expired lease: that holder, and how
    /// long ago its lease expired.
    pub fn took_over(&self) -> Option<&str> {
        self.took_over.as_deref()
    }

    /// False once the lease was lost (taken over, removed, not renewable, connection gone):
    /// the host is unprotected.
    pub fn is_held(&self) -> bool {
        self.state.borrow().is_none()
    }

    /// Why the lease was lost, once it was; a sentence naming the host.
    pub fn lost_reason(&self) -> Option<String> {
        self.state.borrow().clone()
    }

    /// Resolves with the reason when the lease is lost; an executor can `select!` on it to
    /// stop touching the host.
    pub async fn lost(&self) -> String {
        let mut state = self.state.clone();
        match state.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The keeper is gone without saying why: the lease is not held.
            Err(_) => format!("the host lock on {} ended", self.host),
        }
    }

    /// Releases the lease and waits until the host has let go of it.
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

/// Shell functions both scripts use: `lock` takes the short flock on fd 9 (the lease file),
/// `unlock` lets it go by reopening fd 9 (the flock belongs to the open file), `read_lease`
/// sets `h0` (holder line), `owner` (pid of the holding script) and `until` (expiry, host
/// epoch seconds), and `alive PID` tells whether a holding script still runs. Taking a free
/// lock forks only `flock` and `date`: every other step is a shell builtin, since the first
/// start on each host waits for it.
fn lease_functions() -> String {
    format!(
        r#"lock() {{ flock -w {MUTEX_WAIT_SECS} 9; }}
unlock() {{ exec 9>&- 9>>"$p"; }}
read_lease() {{
  h0= l0=
  {{ {{ IFS= read -r h0; IFS= read -r l0; }} <"$p"; }} 2>/dev/null
  owner=; until=0
  set -- $l0
  if [ "$1" = lease ]; then owner=$2; until=$3; fi
  case $owner in ''|*[!0-9]*) owner= ;; esac
  case $until in ''|*[!0-9]*) until=0 ;; esac
}}
alive() {{
  if [ -d "/proc/$1" ]; then tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q 'berth: host lock'
  else kill -0 "$1" 2>/dev/null; fi
}}
"#
    )
}

/// The script that takes the lease at `path` for `holder` and keeps it.
///
/// Under the short flock it reads the lease: held by a live script and not expired, it prints
/// [`BUSY`] and the holder line and exits [`BUSY_STATUS`]; expired while its script still runs
/// (a holder that stopped renewing), it stops that script and prints [`TOOK_OVER`]; a lease
/// whose script is gone (its berth released it or died with its connection) is simply free.
/// It then writes `holder` and `lease PID EXPIRY`, prints [`READY`], and for each `renew` line
/// on stdin extends the lease by [`LEASE_TTL`] ([`RENEWED`]) or, if the lease is no longer its
/// own, prints [`LOST`] and exits. When stdin ends it empties the file if the lease is still
/// its own, so a finished holder is never named.
pub(crate) fn lock_script(path: &str, holder: &str) -> Result<String> {
    let p = quote(path)?;
    let holder = quote(&one_line(holder))?;
    let ttl = LEASE_TTL.as_secs();
    let functions = lease_functions();
    Ok(format!(
        r#"# berth: host lock {p}
p={p}
h={holder}
command -v flock >/dev/null 2>&1 || {{ echo "flock(1) is not installed on this host (it is in util-linux)" >&2; exit 127; }}
[ -d "${{p%/*}}" ] || mkdir -p -- "${{p%/*}}" || exit 1
exec 9>>"$p" || exit 1
{functions}
if ! lock; then
  read_lease
  printf '{BUSY} %s\n' "$h0"
  exit {BUSY_STATUS}
fi
read_lease
now=$(date +%s)
if [ -n "$h0" ] && [ -n "$owner" ] && [ "$owner" != "$$" ] && alive "$owner"; then
  if [ "$until" -gt "$now" ]; then
    printf '{BUSY} %s\n' "$h0"
    exit {BUSY_STATUS}
  fi
  # Its holder stopped renewing (partitioned or frozen): end its script, whose session sshd
  # may keep for hours, so nothing of the old holder is left on the host.
  kill -s TERM -- "-$owner" 2>/dev/null || kill -s TERM "$owner" 2>/dev/null
  printf '{TOOK_OVER} %s %s\n' "$((now - until))" "$h0"
fi
printf '%s\nlease %s %s\n' "$h" "$$" "$((now + {ttl}))" >"$p"
unlock
echo {READY}
while IFS= read -r line; do
  [ "$line" = renew ] || break
  lock || continue
  read_lease
  if [ "$owner" != "$$" ]; then
    printf '{LOST} %s\n' "$h0"
    exit 0
  fi
  printf '%s\nlease %s %s\n' "$h" "$$" "$(($(date +%s) + {ttl}))" >"$p"
  unlock
  echo {RENEWED}
done
if lock; then
  read_lease
  if [ "$owner" = "$$" ]; then : >"$p"; fi
fi
"#
    ))
}

/// The script that removes whatever lease is at `path` (`force-unlock --host`), printing
/// [`REMOVED`] and the holder line it removed, or nothing when there is none. The holder's
/// next renewal finds the lease gone and gives up the host.
pub(crate) fn remove_script(path: &str) -> Result<String> {
    let p = quote(path)?;
    let functions = lease_functions();
    Ok(format!(
        r#"# berth: remove host lock {p}
p={p}
[ -s "$p" ] || exit 0
command -v flock >/dev/null 2>&1 || {{ echo "flock(1) is not installed on this host (it is in util-linux)" >&2; exit 127; }}
exec 9>>"$p" || exit 1
{functions}
lock || {{ echo "another process holds $p locked for longer than {MUTEX_WAIT_SECS} s" >&2; exit 1; }}
read_lease
[ -n "$h0" ] || exit 0
: >"$p"
printf '{REMOVED} %s\n' "$h0"
"#
    ))
}

/// The holder as one printable line: the lease file is read back line by line.
fn one_line(holder: &str) -> String {
    holder
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// The rest of the first line of `stdout` that starts with `tag`, trimmed.
pub(crate) fn tagged<'a>(stdout: &'a str, tag: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(tag).map(str::trim))
}

/// What the lock script said when it could not take the lock: the holder line, if any.
pub(crate) fn busy_holder(stdout: &str) -> Option<String> {
    tagged(stdout, BUSY).map(|holder| {
        if holder.is_empty() {
            "an unknown holder (the lock file names no one)".to_string()
        } else {
            holder.to_string()
        }
    })
}

/// What the lock script said when it took over an expired lease: its holder and how long ago
/// it expired, as one phrase.
pub(crate) fn took_over(stdout: &str) -> Option<String> {
    let rest = tagged(stdout, TOOK_OVER)?;
    let (secs, holder) = rest.split_once(' ').unwrap_or((rest, ""));
    let secs: u64 = secs.parse().unwrap_or(0);
    Some(format!(
        "{holder} (its lease was not renewed for {} s and expired {secs} s ago)",
        LEASE_TTL.as_secs() + secs
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_is_one_quoted_line() {
        let script = lock_script("/var/lib/berth/.lock", "id 1\nuser@h 'x'").unwrap();
        assert!(script.contains("p=/var/lib/berth/.lock\n"), "{script}");
        let line = quote("id 1 user@h 'x'").unwrap();
        assert!(script.contains(&format!("h={line}\n")), "{script}");
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

    #[test]
    fn take_over_reply_names_the_expired_holder() {
        assert_eq!(
            took_over("berth-lock-took-over 3 lock 7 ops@a pid 12 (apply)\nberth-lock-ready\n")
                .as_deref(),
            Some(
                "lock 7 ops@a pid 12 (apply) (its lease was not renewed for 63 s and expired 3 s ago)"
            )
        );
        assert_eq!(took_over("berth-lock-ready\n"), None);
    }
}
