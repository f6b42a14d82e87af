//! `SshTransport`: the [`Transport`] for a remote host, over one russh connection per host that
//! all operations share, with at most `max_channels` channels open at once. It runs what it is
//! given and decides nothing about what to run; it never re-runs a command whose connection
//! died (only the next operation reconnects).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Disconnect};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

use super::SshConfig;
use super::auth::authenticate;
use super::host_key::{ClientHandler, HandlerError, Silence, parse_pinned};
use super::host_lock::{
    BUSY_STATUS, HostLock, LEASE_RENEW_EVERY, LEASE_TTL, LOST, LockState, READY, REMOVED,
    RENEW_LINE, RENEWED, busy_holder, lock_script, remove_script, tagged, took_over,
};
use super::remote_process::{AbandonGuard, Collected, drive, remote_command, stop};
use super::socket::QuickAckStream;
use super::tunnel::TunnelStream;
use crate::human_duration as secs;
use crate::transport::{BoxStream, Command, Output, Transport};
use crate::{ProviderError, Result};

type SshHandle = Handle<ClientHandler>;

/// How long taking a host lock may take (it never waits for the holder: `flock -n`).
const LOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a released lock waits for the host to confirm before closing the channel anyway.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// Keepalives that may go unanswered before the connection counts as dead. They are sent every
/// quarter of `connect_timeout` at most, so a host silent for `connect_timeout` is given up.
const KEEPALIVE_MAX: usize = 3;

/// A host reached over SSH: one connection, shared by every concurrent operation.
pub struct SshTransport {
    config: SshConfig,
    endpoint: String,
    /// The live connection; replaced by a new one when an operation finds it closed.
    conn: Mutex<Arc<SshHandle>>,
    /// One permit per open channel, so the host's MaxSessions is never exceeded.
    channels: Arc<Semaphore>,
    /// Set when the last connection died because the host stopped answering keepalives.
    silent: Arc<Silence>,
}

impl fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshTransport")
            .field("host", &self.config.host_id)
            .field("endpoint", &self.endpoint)
            .field("user", &self.config.user)
            .finish_non_exhaustive()
    }
}

/// What to open a channel for.
#[derive(Clone, Copy)]
enum ChannelKind {
    /// A session, to run a command.
    Session,
    /// A `direct-tcpip` stream to this port on the host's 127.0.0.1.
    Loopback(u16),
}

impl SshTransport {
    /// Connects to the host, verifies its key strictly (pin or known_hosts) and authenticates.
    pub async fn connect(config: SshConfig) -> Result<SshTransport> {
        if config.max_channels == 0 {
            return Err(ProviderError::InvalidConnection {
                host: config.host_id.clone(),
                message: "max_channels must be at least 1".to_string(),
            });
        }
        if let Some(pinned) = &config.host_key {
            // A malformed pin is a config error: say so before touching the network.
            parse_pinned(&config, pinned)?;
        }
        let silent = Arc::new(Silence::default());
        let handle = open(&config, &silent).await?;
        Ok(SshTransport {
            endpoint: config.endpoint(),
            channels: Arc::new(Semaphore::new(config.max_channels)),
            conn: Mutex::new(Arc::new(handle)),
            silent,
            config,
        })
    }

    /// The settings this transport was made with.
    pub fn config(&self) -> &SshConfig {
        &self.config
    }

    /// Closes the connection politely. Open channels and held locks end with it; a later
    /// operation connects again.
    pub async fn disconnect(&self) {
        let handle = Arc::clone(&*self.conn.lock().await);
        let _ = handle
            .disconnect(Disconnect::ByApplication, "berth disconnects", "en")
            .await;
    }

    /// Takes the host lease at `path` (DESIGN.md section 7), writing `holder` (one line naming
    /// the lock id, user@hostname, pid and operation) into the lease file. Fails with
    /// [`ProviderError::HostLocked`] naming the current holder while another lease is live;
    /// takes over one that expired ([`HostLock::took_over`] names its holder). The lease is
    /// renewed over this connection until the returned [`HostLock`] is dropped or released, or
    /// the connection ends, even if berth is killed.
    pub async fn hold_lock(&self, path: &str, holder: &str) -> Result<HostLock> {
        let script = lock_script(path, holder)?;
        let what = format!("take host lock {path}");
        let timed_out = || ProviderError::Timeout {
            host: self.config.host_id.clone(),
            what: what.clone(),
            secs: LOCK_TIMEOUT.as_secs(),
        };
        let started = Instant::now();
        let deadline = started + LOCK_TIMEOUT;
        // Until the lock is handed over, giving up (timeout, or this future dropped) must end
        // the script, or it would hold the lock until the connection closes: the guard does.
        let Running {
            mut rx,
            tx,
            permit,
            handle,
            mut state,
            mut guard,
        } = self
            .run_remote(&what, remote_command(&script)?, deadline, timed_out)
            .await?;

        let waited = timeout_at(deadline, async {
            while let Some(msg) = rx.wait().await {
                state.absorb(msg);
                if String::from_utf8_lossy(&state.stdout)
                    .lines()
                    .any(|l| l == READY)
                {
                    return true;
                }
            }
            false
        })
        .await;
        match waited {
            Ok(true) => {
                guard.disarm();
                tracing::debug!(
                    host = %self.config.host_id,
                    ms = started.elapsed().as_millis(),
                    "took the host lock {path}"
                );
                let taken_over = took_over(&String::from_utf8_lossy(&state.stdout));
                if let Some(previous) = &taken_over {
                    tracing::warn!(host = %self.config.host_id, "took over the expired host lease of {previous}");
                }
                let (release_tx, release_rx) = oneshot::channel();
                let (state_tx, state_rx) = watch::channel(None);
                let keeper = tokio::spawn(keep_lock(
                    Held {
                        rx,
                        tx,
                        _permit: permit,
                        handle,
                    },
                    release_rx,
                    state_tx,
                    self.loss(),
                ));
                Ok(HostLock::new(
                    self.config.host_id.clone(),
                    path.to_string(),
                    taken_over,
                    release_tx,
                    state_rx,
                    keeper,
                ))
            }
            Ok(false) => {
                // The script has ended: nothing left to stop.
                guard.disarm();
                state.finish();
                let text = String::from_utf8_lossy(&state.stdout);
                if state.status == Some(BUSY_STATUS)
                    && let Some(holder) = busy_holder(&text)
                {
                    return Err(ProviderError::HostLocked {
                        host: self.config.host_id.clone(),
                        holder,
                    });
                }
                if !state.ended() {
                    return Err(self.lost(&what, "the connection closed"));
                }
                Err(ProviderError::CommandFailed {
                    host: self.config.host_id.clone(),
                    what,
                    status: state.status.and_then(|s| i32::try_from(s).ok()),
                    stderr: String::from_utf8_lossy(&state.stderr).trim().to_string(),
                })
            }
            // Taking never waits for a holder, so only a stuck host gets here; the guard
            // stops it.
            Err(_) => Err(timed_out()),
        }
    }

    /// Removes the host lease at `path` whoever holds it (`berth force-unlock --host`) and
    /// returns the holder line it removed, `None` when there was no lease. The holder's next
    /// renewal finds the lease gone and gives the host up.
    pub async fn remove_lock(&self, path: &str) -> Result<Option<String>> {
        let out = self
            .exec(Command::new(remove_script(path)?, LOCK_TIMEOUT))
            .await?;
        if !out.success() {
            return Err(ProviderError::CommandFailed {
                host: self.config.host_id.clone(),
                what: format!("remove host lock {path}"),
                status: out.status,
                stderr: out.stderr_text().trim().to_string(),
            });
        }
        Ok(tagged(&out.stdout_text(), REMOVED).map(str::to_string))
    }

    /// How the keeper of a lease on this host describes losing it.
    fn loss(&self) -> Loss {
        Loss {
            host: self.config.host_id.clone(),
            endpoint: self.endpoint.clone(),
            connect_timeout: self.config.connect_timeout,
            silent: Arc::clone(&self.silent),
        }
    }

    /// Why a connection ended, for messages: silence, or a plain close.
    fn silence(&self) -> Option<String> {
        self.silent
            .since()
            .map(|_| silent_for(self.config.connect_timeout))
    }

    /// The live connection, reconnecting first if the last one has closed.
    async fn handle(&self) -> Result<Arc<SshHandle>> {
        let mut conn = self.conn.lock().await;
        if conn.is_closed() {
            // A host that just went silent would most likely make a new connection wait out
            // connect_timeout again: for that long, operations fail at once instead.
            if let Some(since) = self.silent.since()
                && since.elapsed() < self.config.connect_timeout
            {
                return Err(ProviderError::Unreachable {
                    host: self.config.host_id.clone(),
                    address: self.endpoint.clone(),
                    reason: silent_for(self.config.connect_timeout),
                });
            }
            tracing::info!(host = %self.config.host_id, "SSH connection closed; reconnecting");
            *conn = Arc::new(open(&self.config, &self.silent).await?);
        }
        Ok(Arc::clone(&conn))
    }

    /// Opens a session channel (waiting for a slot counts against `deadline`, and missing it
    /// is `timed_out()`) and runs `remote` on it, armed to be killed if the caller gives up.
    async fn run_remote(
        &self,
        what: &str,
        remote: String,
        deadline: Instant,
        timed_out: impl Fn() -> ProviderError,
    ) -> Result<Running> {
        let (channel, permit, handle) =
            timeout_at(deadline, self.open_channel(what, ChannelKind::Session))
                .await
                .map_err(|_| timed_out())??;
        let (rx, tx) = channel.split();
        let tx = Arc::new(tx);
        let state = Collected::default();
        let guard = AbandonGuard::new(Arc::clone(&handle), Arc::clone(&tx), &state);
        tx.exec(true, remote)
            .await
            .map_err(|e| self.channel_error(&handle, what, e))?;
        Ok(Running {
            rx,
            tx,
            permit,
            handle,
            state,
            guard,
        })
    }

    /// Waits for a channel slot, then opens a channel of `kind` on the live connection. The
    /// returned handle keeps the connection alive as long as the channel is used.
    async fn open_channel(
        &self,
        what: &str,
        kind: ChannelKind,
    ) -> Result<(Channel<Msg>, OwnedSemaphorePermit, Arc<SshHandle>)> {
        let permit = Arc::clone(&self.channels)
            .acquire_owned()
            .await
            .map_err(|_| self.lost(what, "the transport was shut down"))?;
        let handle = self.handle().await?;
        let opened = match kind {
            ChannelKind::Session => handle.channel_open_session().await,
            ChannelKind::Loopback(port) => {
                handle
                    .channel_open_direct_tcpip("127.0.0.1", u32::from(port), "127.0.0.1", 0)
                    .await
            }
        };
        match opened {
            Ok(channel) => Ok((channel, permit, handle)),
            Err(russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed))
                if matches!(kind, ChannelKind::Loopback(_)) =>
            {
                // The same error a local connect gives, so probes read "refused" as "down".
                let port = match kind {
                    ChannelKind::Loopback(port) => port,
                    ChannelKind::Session => 0,
                };
                Err(ProviderError::Io {
                    host: self.config.host_id.clone(),
                    message: format!("connect to 127.0.0.1:{port} on the host"),
                    source: io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "connection refused (through the SSH tunnel)",
                    ),
                })
            }
            Err(e) => Err(self.channel_error(&handle, what, e)),
        }
    }

    fn channel_error(&self, handle: &SshHandle, what: &str, e: russh::Error) -> ProviderError {
        match e {
            russh::Error::ChannelOpenFailure(reason) => ProviderError::Ssh {
                host: self.config.host_id.clone(),
                address: self.endpoint.clone(),
                what: what.to_string(),
                message: format!(
                    "the host refused to open a channel ({reason:?}): its sshd may limit sessions \
                     per connection (MaxSessions, berth opens up to 8 at once; raise it to 10 or \
                     more) or forbid tunnels (AllowTcpForwarding, needed by probe_http)"
                ),
            },
            e if handle.is_closed() => self.lost(what, &e.to_string()),
            e => ProviderError::Ssh {
                host: self.config.host_id.clone(),
                address: self.endpoint.clone(),
                what: what.to_string(),
                message: e.to_string(),
            },
        }
    }

    fn lost(&self, what: &str, reason: &str) -> ProviderError {
        ProviderError::ConnectionLost {
            host: self.config.host_id.clone(),
            address: self.endpoint.clone(),
            what: what.to_string(),
            reason: self.silence().unwrap_or_else(|| reason.to_string()),
        }
    }
}

#[async_trait]
impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.config.host_id
    }

    async fn exec(&self, cmd: Command) -> Result<Output> {
        let summary = cmd.summary();
        let started = std::time::Instant::now();
        let result = self.exec_untraced(cmd).await;
        crate::transport::trace_exec(&self.config.host_id, &summary, started, &result);
        result
    }

    async fn connect_loopback(&self, port: u16) -> Result<BoxStream> {
        self.connect_loopback_untraced(port).await
    }
}

impl SshTransport {
    async fn exec_untraced(&self, cmd: Command) -> Result<Output> {
        let what = cmd.summary();
        let timed_out = || ProviderError::Timeout {
            host: self.config.host_id.clone(),
            what: what.clone(),
            secs: ceil_secs(cmd.timeout),
        };
        // The deadline covers waiting for a channel slot too: a caller's timeout is a promise
        // about when it gets an answer.
        let deadline = Instant::now() + cmd.timeout;
        let Running {
            mut rx,
            tx,
            permit: _permit,
            handle,
            mut state,
            mut guard,
        } = self
            .run_remote(&what, remote_command(&cmd.script)?, deadline, timed_out)
            .await?;

        let cancelled = Command::cancelled(cmd.cancel.clone());
        let finished = tokio::select! {
            finished = timeout_at(deadline, drive(&mut rx, &tx, &cmd.stdin, &mut state)) => Some(finished),
            () = cancelled => None,
        };
        guard.disarm();
        let Some(finished) = finished else {
            // Signalled, not dropped: the group is killed over a second channel before the
            // caller hears of the cancel.
            stop(&handle, &tx, &mut rx, &mut state).await;
            return Err(ProviderError::Cancelled {
                host: self.config.host_id.clone(),
                what,
            });
        };
        if finished.is_err() {
            stop(&handle, &tx, &mut rx, &mut state).await;
            return Err(timed_out());
        }
        state.finish();
        if state.ended() {
            Ok(Output {
                // An exit-signal instead of an exit status: ended by a signal.
                status: state.status.and_then(|s| i32::try_from(s).ok()),
                stdout: state.stdout,
                stderr: state.stderr,
            })
        } else if state.refused {
            Err(ProviderError::Ssh {
                host: self.config.host_id.clone(),
                address: self.endpoint.clone(),
                what,
                message: "the host refused to run the command (exec request denied)".to_string(),
            })
        } else {
            Err(self.lost(&what, "the connection closed before the command finished"))
        }
    }

    async fn connect_loopback_untraced(&self, port: u16) -> Result<BoxStream> {
        let what = format!("tunnel to 127.0.0.1:{port}");
        let opened = timeout(
            self.config.connect_timeout,
            self.open_channel(&what, ChannelKind::Loopback(port)),
        )
        .await;
        let (channel, permit, handle) = match opened {
            Ok(opened) => opened?,
            Err(_) => {
                return Err(ProviderError::Io {
                    host: self.config.host_id.clone(),
                    message: format!(
                        "{what}: no channel within {}",
                        secs(self.config.connect_timeout)
                    ),
                    source: io::ErrorKind::TimedOut.into(),
                });
            }
        };
        Ok(Box::new(TunnelStream::new(channel, permit, handle)))
    }
}

/// A command started on its own session channel.
struct Running {
    rx: ChannelReadHalf,
    tx: Arc<ChannelWriteHalf<Msg>>,
    /// The channel slot, held while the channel is open.
    permit: OwnedSemaphorePermit,
    handle: Arc<SshHandle>,
    /// What the channel has brought back so far.
    state: Collected,
    /// Kills the command if it is abandoned; disarmed once it is finished or handed over.
    guard: AbandonGuard,
}

/// Connects, checks the host key and authenticates, each step within `connect_timeout`. The
/// connection sends keepalives often enough that a host silent for `connect_timeout` ends it,
/// which sets `silent`.
async fn open(config: &SshConfig, silent: &Arc<Silence>) -> Result<SshHandle> {
    let unreachable = |reason: String| ProviderError::Unreachable {
        host: config.host_id.clone(),
        address: config.endpoint(),
        reason,
    };
    let started = Instant::now();
    tracing::debug!(host = %config.host_id, "connecting to {}", config.endpoint());
    let connecting = TcpStream::connect((config.address.as_str(), config.port));
    let tcp = match timeout(config.connect_timeout, connecting).await {
        Err(_) => {
            return Err(unreachable(format!(
                "connection timed out after {}",
                secs(config.connect_timeout)
            )));
        }
        Ok(Err(e)) => return Err(unreachable(io_reason(&e))),
        Ok(Ok(tcp)) => tcp,
    };
    let tcp = QuickAckStream::new(tcp);
    let ssh_config = Arc::new(client::Config {
        keepalive_interval: keepalive_interval(config),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..Default::default()
    });
    let login = async {
        let mut handle = client::connect_stream(
            ssh_config,
            tcp,
            ClientHandler::new(config.clone(), Arc::clone(silent)),
        )
        .await
        .map_err(|e| match e {
            HandlerError::Refused(e) => *e,
            HandlerError::Ssh(e) => ProviderError::Ssh {
                host: config.host_id.clone(),
                address: config.endpoint(),
                what: "SSH handshake".to_string(),
                message: e.to_string(),
            },
        })?;
        tracing::debug!(
            host = %config.host_id,
            ms = started.elapsed().as_millis(),
            "host key accepted; authenticating as {}",
            config.user
        );
        authenticate(&mut handle, config).await?;
        tracing::debug!(
            host = %config.host_id,
            ms = started.elapsed().as_millis(),
            "authenticated as {}",
            config.user
        );
        Ok(handle)
    };
    match timeout(config.connect_timeout, login).await {
        Ok(result) => {
            if result.is_ok() {
                silent.clear();
            }
            result
        }
        Err(_) => Err(ProviderError::Ssh {
            host: config.host_id.clone(),
            address: config.endpoint(),
            what: "SSH handshake".to_string(),
            message: format!(
                "the host accepted the TCP connection but did not complete the handshake and \
                 login within {}",
                secs(config.connect_timeout)
            ),
        }),
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::HostUnreachable => "no route to host".to_string(),
        io::ErrorKind::NetworkUnreachable => "network unreachable".to_string(),
        io::ErrorKind::TimedOut => "connection timed out".to_string(),
        _ => e.to_string(),
    }
}

/// The keepalive interval of a connection: at most a quarter of `connect_timeout`, so that
/// after `KEEPALIVE_MAX` unanswered ones the connection ends when the host has been silent for
/// `connect_timeout`; `None` when keepalives are off.
fn keepalive_interval(config: &SshConfig) -> Option<Duration> {
    if config.keepalive.is_zero() {
        return None;
    }
    let quarter = config.connect_timeout / (KEEPALIVE_MAX as u32 + 1);
    Some(
        config
            .keepalive
            .min(quarter)
            .max(Duration::from_millis(100)),
    )
}

/// The reason given when a connection ended because its host went silent.
fn silent_for(connect_timeout: Duration) -> String {
    format!(
        "the host did not answer for {} (connect_timeout_sec)",
        secs(connect_timeout)
    )
}

/// The channel of a taken lease, with its channel slot and connection.
struct Held {
    rx: ChannelReadHalf,
    tx: Arc<ChannelWriteHalf<Msg>>,
    _permit: OwnedSemaphorePermit,
    handle: Arc<SshHandle>,
}

/// What a lease keeper needs to say why its lease was lost.
struct Loss {
    host: String,
    endpoint: String,
    connect_timeout: Duration,
    silent: Arc<Silence>,
}

impl Loss {
    fn channel_ended(&self, connection_closed: bool) -> String {
        if !connection_closed {
            // The connection is fine but the script is gone: it was stopped on the host,
            // which a berth taking over an expired lease does.
            return format!(
                "the host lock script on {} ended (another berth may have taken over the lease \
                 after it was not renewed for {} s); its host lock is lost",
                self.host,
                LEASE_TTL.as_secs()
            );
        }
        if self.silent.since().is_some() {
            format!(
                "host {} ({}) unreachable: {}; its host lock is lost",
                self.host,
                self.endpoint,
                silent_for(self.connect_timeout)
            )
        } else {
            format!(
                "the connection to {} ({}) closed; its host lock is lost",
                self.host, self.endpoint
            )
        }
    }

    fn taken(&self, holder: &str) -> String {
        if holder.is_empty() {
            format!(
                "the host lock on {} was removed (berth force-unlock --host {})",
                self.host, self.host
            )
        } else {
            format!(
                "the host lock on {} is no longer this berth's: it is held by {holder}",
                self.host
            )
        }
    }

    fn not_renewed(&self) -> String {
        format!(
            "host {} ({}) unreachable: the host lock could not be renewed for {} s, so another \
             berth may take it over",
            self.host,
            self.endpoint,
            LEASE_TTL.as_secs()
        )
    }
}

/// Takes in the lock script's output: confirms renewals, and returns the reason when it says
/// the lease is no longer this holder's.
fn read_replies(
    line: &mut Vec<u8>,
    data: &[u8],
    confirmed: &mut Instant,
    loss: &Loss,
) -> Option<String> {
    line.extend_from_slice(data);
    let mut taken = None;
    while let Some(end) = line.iter().position(|b| *b == b'\n') {
        let text: Vec<u8> = line.drain(..=end).collect();
        let text = String::from_utf8_lossy(&text);
        let text = text.trim_end();
        if text == RENEWED {
            *confirmed = Instant::now();
        } else if let Some(holder) = text.strip_prefix(LOST) {
            taken = Some(loss.taken(holder.trim()));
        }
    }
    taken
}

/// Renews a taken lease every [`LEASE_RENEW_EVERY`] until it is released (or its
/// [`HostLock`] dropped), then sends EOF so the script ends the lease. Marks the lease lost
/// when the script says it was taken over or removed, when no renewal was confirmed for
/// [`LEASE_TTL`] (another berth may hold it by now), or when the channel ends.
async fn keep_lock(
    mut held: Held,
    mut release: oneshot::Receiver<()>,
    state: watch::Sender<LockState>,
    loss: Loss,
) {
    let mut confirmed = Instant::now();
    let mut next_renewal = confirmed + LEASE_RENEW_EVERY;
    let mut line = Vec::new();
    let lost = loop {
        tokio::select! {
            // Sent, or the HostLock was dropped: either way, let go.
            _ = &mut release => break None,
            () = sleep_until(next_renewal) => {
                next_renewal += LEASE_RENEW_EVERY;
                let _ = held.tx.data(RENEW_LINE).await;
            }
            () = sleep_until(confirmed + LEASE_TTL) => break Some(loss.not_renewed()),
            msg = held.rx.wait() => match msg {
                Some(ChannelMsg::Data { data }) => {
                    if let Some(taken) = read_replies(&mut line, &data, &mut confirmed, &loss) {
                        break Some(taken);
                    }
                }
                None => break Some(loss.channel_ended(true)),
                Some(ChannelMsg::Close)
                | Some(ChannelMsg::Eof)
                | Some(ChannelMsg::ExitStatus { .. })
                | Some(ChannelMsg::ExitSignal { .. }) => {
                    // sshd may report the exit before the last output: read what is left
                    // (the script's reason for ending) until the channel closes.
                    let mut taken = None;
                    while let Ok(Some(msg)) = timeout(RELEASE_WAIT, held.rx.wait()).await {
                        match msg {
                            ChannelMsg::Data { data } => {
                                taken = taken.or(read_replies(&mut line, &data, &mut confirmed, &loss));
                            }
                            ChannelMsg::Close => break,
                            _ => {}
                        }
                    }
                    break Some(taken.unwrap_or_else(|| loss.channel_ended(held.handle.is_closed())));
                }
                Some(_) => {}
            },
        }
    };
    match &lost {
        None => {
            // EOF ends the script's loop; it empties the lease file and exits.
            let _ = held.tx.eof().await;
            let _ = timeout(RELEASE_WAIT, async {
                while held.rx.wait().await.is_some() {}
            })
            .await;
        }
        Some(reason) => tracing::warn!(host = %loss.host, "host lock lost: {reason}"),
    }
    let _ = held.tx.close().await;
    let _ =
        state.send(Some(lost.unwrap_or_else(|| {
            format!("the host lock on {} was released", loss.host)
        })));
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(3)), 3);
    }
}
