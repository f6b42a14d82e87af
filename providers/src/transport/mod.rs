//! The `Transport` seam: run a shell command on a host, read and write files there, and open a
//! TCP stream to one of the host's loopback ports. Runtimes and probes use nothing else.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use crate::Result;

mod local;
mod ssh;

pub use local::LocalTransport;
pub use ssh::{HostLock, LEASE_RENEW_EVERY, LEASE_TTL, SshConfig, SshTransport};

/// A byte stream to a port on the host's loopback interface.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// A shell script to run on a host with `sh -c`, with optional standard input, a deadline and
/// a cancel token.
#[derive(Debug, Clone)]
pub struct Command {
    /// POSIX shell script; every value spliced into it must already be shell-quoted.
    pub script: String,
    /// Bytes written to the script's standard input, which is then closed.
    pub stdin: Vec<u8>,
    /// The command is signalled (not merely abandoned) when it runs longer than this.
    pub timeout: Duration,
    /// When this fires, the command's process group is killed (as on a timeout) and `exec`
    /// returns [`crate::ProviderError::Cancelled`].
    pub cancel: Option<CancellationToken>,
}

impl Command {
    /// A script with no input and the given deadline.
    pub fn new(script: impl Into<String>, timeout: Duration) -> Self {
        Command {
            script: script.into(),
            stdin: Vec::new(),
            timeout,
            cancel: None,
        }
    }

    /// Stops the command when `token` fires.
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Resolves when the command's cancel token fires; never without one.
    pub(crate) async fn cancelled(cancel: Option<CancellationToken>) {
        match cancel {
            Some(token) => token.cancelled_owned().await,
            None => std::future::pending().await,
        }
    }

    /// Sets the bytes fed to standard input.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = bytes.into();
        self
    }

    /// A short name for the command in messages: its first non-empty line without a leading
    /// `#`, cut to 80 characters. berth's own scripts start with a `# berth: ...` comment line
    /// so that a timeout names the step rather than the first line of code.
    pub fn summary(&self) -> String {
        let line = self
            .script
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        let line = line.strip_prefix('#').map(str::trim_start).unwrap_or(line);
        match line.char_indices().nth(80) {
            Some((cut, _)) => format!("{}...", &line[..cut]),
            None => line.to_string(),
        }
    }
}

/// Logs a finished command at debug level (`berth -v`): its host, first line, duration and exit
/// status. Scripts never hold a secret (those reach a host through standard input or a 0600
/// file), and standard input is never logged.
pub(crate) fn trace_exec(
    host: &str,
    summary: &str,
    started: std::time::Instant,
    result: &Result<Output>,
) {
    let ms = started.elapsed().as_millis();
    match result {
        Ok(out) => match out.status {
            Some(status) => tracing::debug!(host, ms, status, "ran `{summary}`"),
            None => tracing::debug!(host, ms, "ran `{summary}`: ended by a signal"),
        },
        Err(e) => tracing::debug!(host, ms, "ran `{summary}`: {e}"),
    }
}

/// What a finished command left behind.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit status; `None` when the command was ended by a signal.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// Standard output as text, lossily decoded.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text, lossily decoded.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("status", &self.status)
            .field("stdout", &self.stdout_text())
            .field("stderr", &self.stderr_text())
            .finish()
    }
}

/// One host's command channel.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// The host id this transport reaches, for messages.
    fn host(&self) -> &str;

    /// Runs `cmd.script` with `sh -c` on the host and collects its output. A non-zero exit is
    /// an `Ok(Output)`; only failing to run or to finish in time is an error.
    async fn exec(&self, cmd: Command) -> Result<Output>;

    /// Opens a TCP stream to `127.0.0.1:port` as seen from the host.
    async fn connect_loopback(&self, port: u16) -> Result<BoxStream>;

    /// Reads a whole file; `Ok(None)` when it does not exist.
    async fn read_file(&self, path: &str, timeout: Duration) -> Result<Option<Vec<u8>>> {
        let q = crate::transport::quote(path)?;
        let script = format!("if [ -e {q} ]; then cat -- {q}; else exit 3; fi");
        let out = self.exec(Command::new(script, timeout)).await?;
        match out.status {
            Some(0) => Ok(Some(out.stdout)),
            Some(3) => Ok(None),
            _ => Err(crate::ProviderError::CommandFailed {
                host: self.host().to_string(),
                what: format!("read {path}"),
                status: out.status,
                stderr: out.stderr_text(),
            }),
        }
    }

    /// Writes a whole file atomically (temporary file, then rename) with the given mode,
    /// creating its parent directory.
    async fn write_file(
        &self,
        path: &str,
        contents: &[u8],
        mode: u32,
        timeout: Duration,
    ) -> Result<()> {
        let q = crate::transport::quote(path)?;
        let tmp = crate::transport::quote(&format!("{path}.tmp.berth"))?;
        let script = format!(
            "set -e; umask 077; mkdir -p -- \"$(dirname -- {q})\"; cat > {tmp}; chmod {mode:o} {tmp}; mv -f -- {tmp} {q}"
        );
        let out = self
            .exec(Command::new(script, timeout).stdin(contents.to_vec()))
            .await?;
        if out.success() {
            Ok(())
        } else {
            Err(crate::ProviderError::CommandFailed {
                host: self.host().to_string(),
                what: format!("write {path}"),
                status: out.status,
                stderr: out.stderr_text(),
            })
        }
    }
}

/// Shell-quotes one value for a POSIX shell; NUL bytes are refused.
pub fn quote(value: &str) -> Result<String> {
    shlex::try_quote(value)
        .map(|q| q.into_owned())
        .map_err(|_| crate::ProviderError::Unquotable(value.to_string()))
}
