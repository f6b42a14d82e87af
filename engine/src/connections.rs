//! One connection per host for a whole command: created on first use, shared by every step on
//! that host, and the runtimes, looked up by name in the providers' registry. Owns the mapping
//! from config to providers. A failed connect is remembered only for a backoff that doubles up
//! to a cap, so a long-running caller reaches a host again once it is back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_providers::{LocalTransport, Registry, Runtime, SshConfig, SshTransport, Transport};
use tokio::sync::Mutex;

use crate::config::{Config, Host, TransportKind};

/// How to reach one host.
#[derive(Debug, Clone)]
enum Target {
    Local,
    Ssh(SshConfig),
}

/// An open connection.
#[derive(Clone)]
enum Conn {
    Local(Arc<LocalTransport>),
    Ssh(Arc<SshTransport>),
    /// A transport handed in by the caller ([`Connections::with_transport`]).
    Given(Arc<dyn Transport>),
}

/// What is known of one host's connection.
enum Slot {
    /// Never tried.
    Untried,
    Open(Conn),
    /// The last connect failed; until `retry_at` callers get its error instead of a new try.
    Failed {
        error: String,
        retry_at: Instant,
        backoff: Duration,
    },
}

/// How long a failed connect is remembered at first; each failure after a retry doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest a failed connect is remembered.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The transports of one command, by host id.
pub struct Connections {
    targets: HashMap<String, Target>,
    open: HashMap<String, Mutex<Slot>>,
    runtimes: Registry,
}

/// Channels berth opens at once on one SSH connection (OpenSSH allows 10 by default; one is
/// kept for the host lock and one for killing timed-out commands).
pub const SSH_CHANNELS: usize = 8;

impl Connections {
    /// Prepares connections to every host of `config` (nothing is connected yet).
    pub fn new(config: &Config) -> Self {
        let mut targets = HashMap::new();
        for host in &config.hosts {
            targets.insert(host.id.value.clone(), target_of(host));
        }
        let open = targets
            .keys()
            .map(|k| (k.clone(), Mutex::new(Slot::Untried)))
            .collect();
        Connections {
            targets,
            open,
            runtimes: Registry::builtin(),
        }
    }

    /// Reaches `host` through `transport` instead of what the config says: for a caller that
    /// owns its connections (tests that need faults no real host produces on demand).
    pub fn with_transport(self, host: &str, transport: Arc<dyn Transport>) -> Self {
        let mut open = self.open;
        open.insert(
            host.to_string(),
            Mutex::new(Slot::Open(Conn::Given(transport))),
        );
        Connections { open, ..self }
    }

    /// The transport of `host`, connecting on first use. A failed connect is remembered for a
    /// backoff ([`FIRST_BACKOFF`], doubling up to [`MAX_BACKOFF`]): meanwhile every step on that
    /// host fails with the same message at once; after it, the next caller tries again.
    pub async fn transport(&self, host: &str) -> Result<Arc<dyn Transport>, String> {
        Ok(match self.conn(host).await? {
            Conn::Local(t) => t as Arc<dyn Transport>,
            Conn::Ssh(t) => t as Arc<dyn Transport>,
            Conn::Given(t) => t,
        })
    }

    /// The SSH connection of `host`; `None` for a local host.
    pub async fn ssh(&self, host: &str) -> Result<Option<Arc<SshTransport>>, String> {
        Ok(match self.conn(host).await? {
            Conn::Local(_) | Conn::Given(_) => None,
            Conn::Ssh(t) => Some(t),
        })
    }

    async fn conn(&self, host: &str) -> Result<Conn, String> {
        let (Some(target), Some(cell)) = (self.targets.get(host), self.open.get(host)) else {
            return Err(format!(
                "host `{host}` is not in the config any more; put it back to manage what runs there, or `berth state rm` its resources"
            ));
        };
        // Held across the connect: callers on one host share one attempt.
        let mut slot = cell.lock().await;
        let backoff = match &*slot {
            Slot::Open(conn) => return Ok(conn.clone()),
            Slot::Failed {
                error, retry_at, ..
            } if Instant::now() < *retry_at => return Err(error.clone()),
            Slot::Failed { backoff, .. } => (*backoff * 2).min(MAX_BACKOFF),
            Slot::Untried => FIRST_BACKOFF,
        };
        let connected = match target {
            Target::Local => Ok(Conn::Local(Arc::new(LocalTransport::new(host)))),
            Target::Ssh(cfg) => SshTransport::connect(cfg.clone())
                .await
                .map(|t| Conn::Ssh(Arc::new(t)))
                .map_err(|e| error_text(&e)),
        };
        *slot = match &connected {
            Ok(conn) => Slot::Open(conn.clone()),
            Err(error) => Slot::Failed {
                error: error.clone(),
                retry_at: Instant::now() + backoff,
                backoff,
            },
        };
        connected
    }

    /// The runtime called `name` (a backend's `runtime`, or the `runtime` a resource's record
    /// holds).
    pub fn runtime(&self, name: &str) -> Result<Arc<dyn Runtime>, String> {
        self.runtimes.get(name).ok_or_else(|| {
            format!(
                "runtime \"{name}\" is accepted by the language but this berth cannot run it yet; use runtime = \"process\""
            )
        })
    }

    /// Every runtime this berth can run.
    pub fn runtimes(&self) -> impl Iterator<Item = &Arc<dyn Runtime>> {
        self.runtimes.all()
    }
}

/// A host lock held for the length of an apply (DESIGN.md section 7).
pub enum HostLockGuard {
    /// A lease on the host, renewed through an open SSH channel.
    Ssh(berth_providers::HostLock),
    /// Held with `flock` on the lock file by this process.
    Local(LocalHostLock),
}

impl HostLockGuard {
    /// Why the lock was lost (taken over, removed, host unreachable), once it was.
    pub fn lost_reason(&self) -> Option<String> {
        match self {
            HostLockGuard::Ssh(lock) => lock.lost_reason(),
            // This process holds the flock until it lets go: it cannot be lost.
            HostLockGuard::Local(_) => None,
        }
    }

    /// Resolves with the reason when the lock is lost; never for a local lock.
    pub async fn lost(&self) -> String {
        match self {
            HostLockGuard::Ssh(lock) => lock.lost().await,
            HostLockGuard::Local(_) => std::future::pending().await,
        }
    }

    /// The holder of the expired lease this lock took over, if it did.
    pub fn took_over(&self) -> Option<&str> {
        match self {
            HostLockGuard::Ssh(lock) => lock.took_over(),
            HostLockGuard::Local(_) => None,
        }
    }
}

/// A local host lock: the open, locked lock file; emptied and unlocked when dropped.
pub struct LocalHostLock(std::fs::File);

impl Drop for LocalHostLock {
    fn drop(&mut self) {
        let _ = self.0.set_len(0);
        let _ = self.0.unlock();
    }
}

impl Connections {
    /// Takes the host lock `{run_dir}/.lock` of `host`, recording `holder` in it. Fails naming
    /// the current holder when another berth has it.
    pub async fn lock_host(
        &self,
        host: &str,
        run_dir: &str,
        holder: &str,
    ) -> Result<HostLockGuard, String> {
        let path = lock_path(run_dir);
        match self.conn(host).await? {
            Conn::Ssh(t) => t
                .hold_lock(&path, holder)
                .await
                .map(HostLockGuard::Ssh)
                .map_err(|e| error_text(&e)),
            // A given transport stands for a host on this machine.
            Conn::Local(_) | Conn::Given(_) => lock_local(host, &path, holder),
        }
    }

    /// Removes the host lease `{run_dir}/.lock` of `host` whoever holds it and returns the
    /// holder it named, `None` when there was none (`berth force-unlock --host`).
    pub async fn unlock_host(&self, host: &str, run_dir: &str) -> Result<Option<String>, String> {
        let path = lock_path(run_dir);
        match self.conn(host).await? {
            Conn::Ssh(t) => t.remove_lock(&path).await.map_err(|e| error_text(&e)),
            Conn::Local(_) | Conn::Given(_) => Err(format!(
                "{host}: the lock of a local host ({path}) is an OS lock held by a berth process \
                 on this machine; it ends with that process, so stop the process instead"
            )),
        }
    }
}

/// The host lock file under a host's `run_dir`.
fn lock_path(run_dir: &str) -> String {
    format!("{}/.lock", run_dir.trim_end_matches('/'))
}

fn lock_local(host: &str, path: &str, holder: &str) -> Result<HostLockGuard, String> {
    use std::io::{Read, Seek, Write};
    let fail = |e: std::io::Error| format!("{host}: cannot take the host lock {path}: {e}");
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(fail)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(fail)?;
            writeln!(file, "{}", holder.replace(['\n', '\r'], " ")).map_err(fail)?;
            Ok(HostLockGuard::Local(LocalHostLock(file)))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.rewind();
            let _ = file.read_to_string(&mut text);
            let who = text.lines().next().unwrap_or("another process").to_string();
            Err(format!(
                "{host}: the host is locked by {who} (lock file {path}); wait for it to finish"
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(fail(e)),
    }
}

/// An error with the causes its message leaves out and its help line, on one line, for step
/// failures.
pub fn error_text(err: &(dyn miette::Diagnostic + Send + Sync + 'static)) -> String {
    let mut text = err.to_string();
    let mut help = err.help().map(|h| h.to_string());
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        let shown = c.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        if c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(libc::E2BIG)
        {
            help.get_or_insert_with(|| {
                format!(
                    "the command is longer than the OS takes as one argument ({} KiB on Linux): move the long part of start_cmd into a script on the host",
                    crate::config::limits::MAX_COMMAND_BYTES / 1024
                )
            });
        }
        cause = c.source();
    }
    match help {
        Some(help) => format!("{text} (help: {help})"),
        None => text,
    }
}

fn target_of(host: &Host) -> Target {
    let c = &host.connection;
    match c.transport {
        TransportKind::Local => Target::Local,
        TransportKind::Ssh => {
            let mut cfg = SshConfig::new(host.id.value.clone(), c.host.clone().unwrap_or_default());
            cfg.port = c.port;
            if let Some(user) = &c.user {
                cfg.user = user.clone();
            }
            cfg.key_path = c.key_path.as_ref().map(PathBuf::from);
            cfg.host_key = c.host_key.clone();
            if let Some(k) = &c.known_hosts {
                cfg.known_hosts = Some(PathBuf::from(k));
            }
            cfg.connect_timeout = Duration::from_secs(c.connect_timeout_sec);
            cfg.max_channels = SSH_CHANNELS;
            Target::Ssh(cfg)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::VarInputs;

    /// A config with one SSH host at `127.0.0.1:port`.
    fn config(dir: &std::path::Path, port: u16) -> Config {
        let hcl = format!(
            "host \"gpu\" {{\n  connection {{\n    host = \"127.0.0.1\"\n    user = \"ops\"\n    port = {port}\n    connect_timeout_sec = 2\n  }}\n  capabilities {{\n    backends = [\"cpu\"]\n  }}\n}}\nbackend \"cpu\" {{\n  runtime = \"process\"\n}}\n"
        );
        std::fs::write(dir.join("main.hcl"), hcl).unwrap();
        crate::config::load(dir, &VarInputs::default())
            .map_err(|e| format!("{:?}", e.findings))
            .unwrap()
            .config
    }

    #[tokio::test]
    async fn a_failed_connect_is_retried_after_its_backoff_not_cached_for_good() {
        // Something that accepts TCP but speaks no SSH: every connect fails, and each attempt
        // shows up as one accepted connection.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let attempts = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&attempts);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let conns = Connections::new(&config(dir.path(), port));

        let first = conns.transport("gpu").await.unwrap_err();
        let second = conns.transport("gpu").await.unwrap_err();
        assert_eq!(
            first, second,
            "within the backoff the same failure is returned"
        );
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            1,
            "and no new attempt is made"
        );

        tokio::time::sleep(FIRST_BACKOFF).await;
        let _ = conns.transport("gpu").await.unwrap_err();
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            2,
            "after the backoff the host is tried again"
        );
    }
}
