//! `LocalTransport`: the [`Transport`] for the machine berth runs on. It runs scripts with
//! `sh -c` in a process group of their own, in a login-like environment, and cleans that group
//! up; it must never leave a process of that group behind, never hand a script berth's own
//! environment, and it knows nothing of runtimes or probes.

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

use crate::transport::{BoxStream, Command, Output, Transport};
use crate::{ProviderError, Result};

/// How long a timed-out script gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);

/// Variables a script inherits from berth, when they are set: what sshd gives a login session.
/// Everything else in berth's environment (`BERTH_VAR_*`, `SSH_AUTH_SOCK`, cloud credentials)
/// stays with berth.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TZ", "TMPDIR",
];

/// Runs commands on the local machine.
///
/// Scripts run as over SSH: with a login-like environment (the [`INHERITED_ENV`] variables and
/// `LC_*` from berth's, nothing else) in the home directory (`/` when `HOME` is unset or
/// missing), never in berth's working directory.
///
/// Each script is the leader of its own process group. When the script finishes, times out or
/// its future is dropped, whatever is left in that group is killed, so a process that must
/// outlive `exec` has to leave the group (`setsid`), as the process runtime does. As over SSH,
/// `exec` returns once the script has exited and its stdout and stderr are closed: a
/// background process that keeps them open keeps `exec` waiting until its timeout.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    host: String,
}

impl LocalTransport {
    /// A transport for this machine, called `host_id` in messages.
    pub fn new(host_id: impl Into<String>) -> Self {
        LocalTransport {
            host: host_id.into(),
        }
    }

    fn io_error(&self, message: String, source: io::Error) -> ProviderError {
        ProviderError::Io {
            host: self.host.clone(),
            message,
            source,
        }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.host
    }

    async fn exec(&self, cmd: Command) -> Result<Output> {
        let summary = cmd.summary();
        let started = std::time::Instant::now();
        let result = self.exec_untraced(cmd).await;
        crate::transport::trace_exec(&self.host, &summary, started, &result);
        result
    }

    async fn connect_loopback(&self, port: u16) -> Result<BoxStream> {
        self.connect_loopback_untraced(port).await
    }
}

impl LocalTransport {
    async fn exec_untraced(&self, cmd: Command) -> Result<Output> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd.script)
            .env_clear()
            .envs(login_env())
            .current_dir(login_dir())
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // If this future is dropped, tokio kills and reaps `sh`; the guard below takes care
            // of the rest of its group.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.io_error(format!("cannot run sh for `{}`", cmd.summary()), e))?;
        let Some(pgid) = child.id().and_then(|id| i32::try_from(id).ok()) else {
            // `id()` is only `None` once the child has been reaped, which cannot have happened.
            return Err(self.io_error(
                "spawned sh has no pid".to_string(),
                io::Error::other("no pid"),
            ));
        };
        let mut guard = GroupGuard { pgid, armed: true };

        let summary = cmd.summary();
        let cancelled = Command::cancelled(cmd.cancel.clone());
        let finished = tokio::select! {
            finished = tokio::time::timeout(cmd.timeout, collect(&mut child, cmd.stdin)) => Some(finished),
            () = cancelled => None,
        };
        let Some(finished) = finished else {
            signal_group(pgid, libc::SIGTERM);
            let _ = tokio::time::timeout(TERM_GRACE, child.wait()).await;
            signal_group(pgid, libc::SIGKILL);
            let _ = child.wait().await;
            guard.armed = false;
            return Err(ProviderError::Cancelled {
                host: self.host.clone(),
                what: summary,
            });
        };
        match finished {
            Ok(result) => {
                // Anything the script left running in its group goes with it.
                signal_group(pgid, libc::SIGKILL);
                guard.armed = false;
                result.map_err(|e| self.io_error(format!("running `{summary}`"), e))
            }
            Err(_elapsed) => {
                signal_group(pgid, libc::SIGTERM);
                let _ = tokio::time::timeout(TERM_GRACE, child.wait()).await;
                signal_group(pgid, libc::SIGKILL);
                // Reap `sh`; after SIGKILL this returns at once.
                let _ = child.wait().await;
                guard.armed = false;
                Err(ProviderError::Timeout {
                    host: self.host.clone(),
                    what: summary,
                    secs: ceil_secs(cmd.timeout),
                })
            }
        }
    }

    async fn connect_loopback_untraced(&self, port: u16) -> Result<BoxStream> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| self.io_error(format!("connect to 127.0.0.1:{port}"), e))?;
        // Probes and tunnels send small requests and wait for the answer.
        let _ = stream.set_nodelay(true);
        Ok(Box::new(stream))
    }
}

/// The variables of berth's environment that a script inherits.
fn login_env() -> impl Iterator<Item = (OsString, OsString)> {
    std::env::vars_os().filter(|(key, _)| {
        key.to_str()
            .is_some_and(|k| INHERITED_ENV.contains(&k) || k.starts_with("LC_"))
    })
}

/// Where a script starts: the home directory, as an SSH login does, or `/` without one.
fn login_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|home| home.is_absolute() && home.is_dir())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Feeds stdin (then closes it), reads stdout and stderr to their end and reaps the script.
async fn collect(child: &mut Child, input: Vec<u8>) -> io::Result<Output> {
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let feed = async move {
        if let Some(mut pipe) = stdin {
            // A script that does not read its input closes the pipe early: not an error.
            let _ = pipe.write_all(&input).await;
            let _ = pipe.shutdown().await;
        }
    };
    let (_, out, err, status) =
        tokio::join!(feed, read_to_end(stdout), read_to_end(stderr), child.wait());
    Ok(Output {
        status: status?.code(),
        stdout: out?,
        stderr: err?,
    })
}

async fn read_to_end(pipe: Option<impl AsyncRead + Unpin>) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        pipe.read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

/// Sends `signal` to every process in group `pgid`; a group that is already gone is fine.
///
/// Signalling a group after its leader was reaped could in theory reach a new group that
/// reused the id, but that needs the kernel to hand out the same pid again within
/// microseconds, i.e. to wrap around `pid_max`; berth accepts that.
fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: killpg has no memory-safety preconditions; the result is deliberately
        // ignored (ESRCH means the group is already empty).
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Kills the script's process group if `exec` is abandoned mid-flight (its future dropped).
struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pgid, libc::SIGKILL);
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
