//! One command on a host over an SSH session channel: the command line that runs it under
//! POSIX sh and reports its process group, collecting what the channel brings back, and
//! stopping the whole process group when it runs out of time or is abandoned. It must not
//! open connections or decide timeouts; `SshTransport` does.
//!
//! Why not a channel `signal` request: sshd refuses it for root logins ("session signalling
//! requires privilege separation": root sessions skip post-auth privilege separation), and
//! root is the common login on GPU hosts. So the command reports its process group id first,
//! and stopping it runs `kill` against that group over a second channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use russh::client::{Handle, Msg};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::time::timeout;

use super::host_key::ClientHandler;
use crate::Result;
use crate::transport::quote;

/// The first line the wrapper writes to stderr; stripped before the caller sees stderr.
const PGID_TAG: &str = "berth-pgid ";

/// Runs `$1` in this sh after reporting `$$`, with no positional parameters left (as `sh -c`
/// would give it). sshd makes each session's process a new session (setsid), and the login
/// shell's `exec` keeps that pid, so `$$` is the id of the process group that the script and
/// its children (unless they leave it) live in. `eval` rather than `exec sh -c`: one shell
/// fewer to start for every command berth runs on a host.
const WRAPPER: &str =
    r#"printf 'berth-pgid %s\n' "$$" >&2; berth_script=$1; shift; eval "$berth_script""#;

/// Stderr bytes searched for the wrapper's line before giving up on it.
const MAX_HEADER: usize = 4096;
/// How long a stopped command gets between SIGTERM and SIGKILL, in tenths of a second.
const TERM_GRACE_TENTHS: u32 = 20;
/// How long stopping waits for the kill command and then for the channel to close.
const STOP_WAIT: Duration = Duration::from_secs(5);
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The command line sshd hands to the user's login shell: only `exec sh -c '...' berth '...'`,
/// which every login shell parses the same way, so the login shell does not matter.
pub(crate) fn remote_command(script: &str) -> Result<String> {
    Ok(format!(
        "exec sh -c {} berth {}",
        quote(WRAPPER)?,
        quote(script)?
    ))
}

/// Stops process group `pgid`: SIGTERM, up to 2 s for it to go, then SIGKILL. Falls back to
/// the leader alone if the group does not exist (it was not a group leader after all).
fn kill_script(pgid: u32) -> String {
    format!(
        "# berth: stop process group {pgid}\n\
         kill -s TERM -- -{pgid} 2>/dev/null || kill -s TERM {pgid} 2>/dev/null || exit 0\n\
         i=0\n\
         while [ \"$i\" -lt {TERM_GRACE_TENTHS} ] && kill -s 0 -- -{pgid} 2>/dev/null; do\n\
         \x20 sleep 0.1 2>/dev/null || sleep 1; i=$((i + 1))\n\
         done\n\
         kill -s KILL -- -{pgid} 2>/dev/null || kill -s KILL {pgid} 2>/dev/null\n\
         exit 0\n"
    )
}

/// What a command's channel has brought back so far.
#[derive(Default)]
pub(crate) struct Collected {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// stderr bytes before the wrapper's first line is complete.
    header: Vec<u8>,
    header_done: bool,
    /// The command's process group id once reported (0 = not yet); shared with the guard.
    pgid: Arc<AtomicU32>,
    pub(crate) status: Option<u32>,
    pub(crate) signalled: bool,
    /// The server closed the channel (as opposed to the connection dying under it).
    pub(crate) closed: bool,
    /// The server denied the exec request.
    pub(crate) refused: bool,
}

impl Collected {
    /// Takes in one message of the channel.
    pub(crate) fn absorb(&mut self, msg: ChannelMsg) {
        match msg {
            ChannelMsg::Data { data } => self.stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => self.absorb_stderr(&data),
            ChannelMsg::ExitStatus { exit_status } => self.status = Some(exit_status),
            ChannelMsg::ExitSignal { .. } => self.signalled = true,
            ChannelMsg::Failure => self.refused = true,
            ChannelMsg::Close => self.closed = true,
            _ => {}
        }
    }

    fn absorb_stderr(&mut self, data: &[u8]) {
        if self.header_done {
            self.stderr.extend_from_slice(data);
            return;
        }
        self.header.extend_from_slice(data);
        // Lines before ours come from the login shell (a locale warning, say): keep them.
        let mut start = 0;
        while let Some(end) = self.header[start..].iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&self.header[start..start + end]);
            if let Some(pgid) = line
                .strip_prefix(PGID_TAG)
                .and_then(|p| p.trim().parse::<u32>().ok())
            {
                self.pgid.store(pgid, Ordering::Release);
                self.header_done = true;
                let after = start + end + 1;
                self.stderr.extend_from_slice(&self.header[..start]);
                self.stderr.extend_from_slice(&self.header[after..]);
                self.header.clear();
                return;
            }
            start += end + 1;
        }
        if self.header.len() > MAX_HEADER {
            // Whatever this is, it is not our wrapper: pass it on untouched.
            self.finish();
        }
    }

    /// The process group of the command, once it has started.
    pub(crate) fn pgid(&self) -> Option<u32> {
        Some(self.pgid.load(Ordering::Acquire)).filter(|p| *p > 1)
    }

    /// Stderr as the command wrote it (the wrapper's line removed).
    pub(crate) fn finish(&mut self) {
        if !self.header_done {
            self.stderr.append(&mut self.header);
            self.header_done = true;
        }
    }

    /// True when the channel ended the normal way (exit status, signal or close).
    pub(crate) fn ended(&self) -> bool {
        self.status.is_some() || self.signalled || (self.closed && !self.refused)
    }
}

/// Feeds stdin (then EOF) while collecting output into `state`, until the channel is gone.
/// Both run at once: a command that writes a lot before reading its input must not deadlock.
pub(crate) async fn drive(
    rx: &mut ChannelReadHalf,
    tx: &ChannelWriteHalf<Msg>,
    stdin: &[u8],
    state: &mut Collected,
) {
    let feed = async {
        // A command that does not read its input closes the channel early: not an error.
        if !stdin.is_empty() {
            let _ = tx.data(stdin).await;
        }
        let _ = tx.eof().await;
    };
    let collect = async {
        while let Some(msg) = rx.wait().await {
            state.absorb(msg);
        }
    };
    tokio::pin!(feed, collect);
    let mut fed = false;
    loop {
        tokio::select! {
            () = &mut feed, if !fed => fed = true,
            () = &mut collect => return,
        }
    }
}

/// Ends a command that is still running: kills its process group (waiting briefly for the
/// group id if the command has not reported it yet), then closes its channel.
pub(crate) async fn stop(
    handle: &Handle<ClientHandler>,
    tx: &ChannelWriteHalf<Msg>,
    rx: &mut ChannelReadHalf,
    state: &mut Collected,
) {
    if state.pgid().is_none() {
        // A slow login (shell start-up files) may not have reached the wrapper yet.
        let _ = timeout(CLOSE_WAIT, async {
            while state.pgid().is_none() {
                match rx.wait().await {
                    Some(msg) => state.absorb(msg),
                    None => break,
                }
            }
        })
        .await;
    }
    if let Some(pgid) = state.pgid() {
        kill_group(handle, pgid).await;
    }
    let _ = timeout(CLOSE_WAIT, async {
        while let Some(msg) = rx.wait().await {
            state.absorb(msg);
        }
    })
    .await;
    let _ = tx.close().await;
}

/// Runs the kill script on a channel of its own. It takes no channel slot: stopping must work
/// when every slot is busy, and OpenSSH's default MaxSessions (10) leaves room above berth's
/// default of 8.
async fn kill_group(handle: &Handle<ClientHandler>, pgid: u32) {
    let Ok(mut channel) = handle.channel_open_session().await else {
        return;
    };
    let Ok(command) = quote(&kill_script(pgid)) else {
        return;
    };
    if channel
        .exec(true, format!("exec sh -c {command}"))
        .await
        .is_err()
    {
        return;
    }
    let _ = timeout(STOP_WAIT, async { while channel.wait().await.is_some() {} }).await;
}

/// Kills the remote command when `exec` is abandoned mid-flight (its future dropped), so a
/// cancelled operation never leaves it running unseen.
pub(crate) struct AbandonGuard {
    handle: Arc<Handle<ClientHandler>>,
    tx: Arc<ChannelWriteHalf<Msg>>,
    pgid: Arc<AtomicU32>,
    armed: bool,
}

impl AbandonGuard {
    pub(crate) fn new(
        handle: Arc<Handle<ClientHandler>>,
        tx: Arc<ChannelWriteHalf<Msg>>,
        state: &Collected,
    ) -> Self {
        AbandonGuard {
            handle,
            tx,
            pgid: Arc::clone(&state.pgid),
            armed: true,
        }
    }

    /// The command finished or was stopped: nothing to clean up.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let handle = Arc::clone(&self.handle);
        let tx = Arc::clone(&self.tx);
        let pgid = self.pgid.load(Ordering::Acquire);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if pgid > 1 {
                    kill_group(&handle, pgid).await;
                }
                let _ = tx.close().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stderr_msg(s: &str) -> ChannelMsg {
        ChannelMsg::ExtendedData {
            data: s.as_bytes().to_vec().into(),
            ext: 1,
        }
    }

    #[test]
    fn remote_command_wraps_the_script_as_one_word() {
        let script = "echo 'a b' \"$HOME\"; exit 3";
        let words = shlex::split(&remote_command(script).unwrap()).unwrap();
        assert_eq!(words, ["exec", "sh", "-c", WRAPPER, "berth", script]);
        assert!(remote_command("a\0b").is_err());
    }

    #[test]
    fn the_pgid_line_is_taken_out_of_stderr_even_when_split() {
        let mut c = Collected::default();
        c.absorb(stderr_msg("berth-pg"));
        assert_eq!(c.pgid(), None);
        c.absorb(stderr_msg("id 4242\nreal "));
        c.absorb(stderr_msg("error\n"));
        c.finish();
        assert_eq!(c.pgid(), Some(4242));
        assert_eq!(c.stderr, b"real error\n");
    }

    #[test]
    fn login_shell_noise_before_the_pgid_line_stays_in_stderr() {
        let mut c = Collected::default();
        c.absorb(stderr_msg(
            "bash: warning: setlocale: LC_ALL\nberth-pgid 99\nscript\n",
        ));
        c.finish();
        assert_eq!(c.pgid(), Some(99));
        assert_eq!(c.stderr, b"bash: warning: setlocale: LC_ALL\nscript\n");
        // Only the first such line is ours; a script printing one keeps it.
        c.absorb(stderr_msg("berth-pgid 5\n"));
        assert_eq!(c.pgid(), Some(99));
        assert!(c.stderr.ends_with(b"berth-pgid 5\n"));

        let mut c = Collected::default();
        c.absorb(stderr_msg("no newline"));
        c.finish();
        assert_eq!(c.pgid(), None);
        assert_eq!(c.stderr, b"no newline");
    }

    #[test]
    fn kill_script_targets_the_group() {
        let s = kill_script(77);
        assert!(s.contains("kill -s TERM -- -77"), "{s}");
        assert!(s.contains("kill -s KILL -- -77"), "{s}");
    }
}
