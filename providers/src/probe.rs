//! Readiness probes and the probe gate: is a started service ready, still loading or down, and
//! waiting until it is ready. Probes reach the service only through a [`Transport`] (a command
//! on the host, or a TCP stream to the host's loopback), so they need nothing installed on the
//! host and work the same over SSH. This module never prints: the gate reports through a
//! callback.

use std::fmt;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::{Instance, Runtime};
use crate::transport::{Command, Transport, quote};
use crate::{ProviderError, Result};

/// How often the gate confirms that a service that is not ready yet still runs.
const LIVENESS_EVERY: Duration = Duration::from_secs(1);

/// Longest wait between liveness checks of a service that answers "loading": something listens
/// on its port, so a crash shows in the probes (refused) first; the checks only catch another
/// process that holds the port and answers in its place.
const LIVENESS_LOADING_MAX: Duration = Duration::from_secs(8);

/// How many log lines a gate failure carries.
const LOG_TAIL_LINES: usize = 20;

/// How to ask a service whether it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A shell command run on the host (already rendered and quoted); exit 0 means ready.
    Cmd(String),
    /// An HTTP GET of `path` on the service's port at the host's 127.0.0.1.
    Http { path: String },
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The service answers and is ready.
    Ready,
    /// The service answers but is still loading (HTTP 503); holds the status.
    Loading(String),
    /// The service does not answer usefully; holds why.
    Down(String),
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Ready => f.write_str("ready"),
            ProbeOutcome::Loading(what) => write!(f, "loading ({what})"),
            ProbeOutcome::Down(why) => write!(f, "down: {why}"),
        }
    }
}

/// Probes a service once. Never fails: every problem is a [`ProbeOutcome::Down`].
pub async fn probe_once(
    transport: &dyn Transport,
    probe: &Probe,
    port: u16,
    timeout: Duration,
) -> ProbeOutcome {
    let started = std::time::Instant::now();
    let outcome = probe_untraced(transport, probe, port, timeout).await;
    let what = match probe {
        Probe::Cmd(_) => "probe_cmd".to_string(),
        Probe::Http { path } => format!("GET {path} on port {port}"),
    };
    tracing::debug!(
        host = transport.host(),
        ms = started.elapsed().as_millis(),
        "{what}: {outcome}"
    );
    outcome
}

async fn probe_untraced(
    transport: &dyn Transport,
    probe: &Probe,
    port: u16,
    timeout: Duration,
) -> ProbeOutcome {
    match probe {
        Probe::Cmd(script) => probe_cmd(transport, script, timeout).await,
        Probe::Http { path } => {
            match tokio::time::timeout(timeout, probe_http(transport, path, port)).await {
                Ok(outcome) => outcome,
                Err(_) => ProbeOutcome::Down(format!(
                    "no answer within {}",
                    crate::human_duration(timeout)
                )),
            }
        }
    }
}

async fn probe_cmd(transport: &dyn Transport, script: &str, timeout: Duration) -> ProbeOutcome {
    match transport.exec(Command::new(script, timeout)).await {
        Ok(out) if out.success() => ProbeOutcome::Ready,
        Ok(out) => {
            let stderr = out.stderr_text();
            let last = stderr.lines().rev().map(str::trim).find(|l| !l.is_empty());
            ProbeOutcome::Down(match (last, out.status) {
                (Some(line), _) => line.to_string(),
                (None, Some(code)) => format!("exit {code}"),
                (None, None) => "killed by a signal".to_string(),
            })
        }
        Err(ProviderError::Timeout { .. }) => ProbeOutcome::Down(format!(
            "no answer within {}",
            crate::human_duration(timeout)
        )),
        Err(e) => ProbeOutcome::Down(error_reason(&e)),
    }
}

async fn probe_http(transport: &dyn Transport, path: &str, port: u16) -> ProbeOutcome {
    let stream = match transport.connect_loopback(port).await {
        Ok(stream) => stream,
        Err(e) => return ProbeOutcome::Down(error_reason(&e)),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
        TokioIo::new(stream),
    )
    .await
    {
        Ok(pair) => pair,
        Err(e) => return ProbeOutcome::Down(hyper_reason(&e)),
    };
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let request = match hyper::Request::get(path.as_str())
        .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
        .header(hyper::header::USER_AGENT, "berth-probe")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::new())
    {
        Ok(request) => request,
        Err(e) => return ProbeOutcome::Down(format!("invalid probe path {path:?}: {e}")),
    };
    // The connection is driven here rather than spawned, so that nothing outlives the probe's
    // timeout (a hung server would otherwise keep a task and a tunnel open).
    let send = sender.send_request(request);
    tokio::pin!(send);
    let response = tokio::select! {
        response = &mut send => response.map_err(|e| hyper_reason(&e)),
        // With `Connection: close` the connection may finish right after handing the response
        // over; the response then waits in `send`, which resolves now that the connection is
        // gone (with an error if no response came).
        ended = conn => send.await.map_err(|e| match ended {
            Err(conn_error) => hyper_reason(&conn_error),
            Ok(()) => hyper_reason(&e),
        }),
    };
    match response {
        Ok(response) => match response.status().as_u16() {
            200 => ProbeOutcome::Ready,
            503 => ProbeOutcome::Loading("503".to_string()),
            other => ProbeOutcome::Down(format!("{HTTP_PREFIX}{other}")),
        },
        Err(reason) => ProbeOutcome::Down(reason),
    }
}

/// What a GET through a transport brought back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body as text (lossy UTF-8), cut at [`HTTP_BODY_LIMIT`] bytes.
    pub body: String,
}

/// The most of a body [`http_get`] keeps: model lists are small, a stray server's page may not be.
pub const HTTP_BODY_LIMIT: usize = 64 * 1024;

/// GETs `path` from the service on the host's 127.0.0.1:`port` through `transport`, within
/// `timeout`. `Err` holds a short reason ("connection refused", "no answer within 3s").
pub async fn http_get(
    transport: &dyn Transport,
    port: u16,
    path: &str,
    timeout: Duration,
) -> std::result::Result<HttpAnswer, String> {
    match tokio::time::timeout(timeout, fetch(transport, port, path)).await {
        Ok(answer) => answer,
        Err(_) => Err(format!(
            "no answer within {}",
            crate::human_duration(timeout)
        )),
    }
}

async fn fetch(
    transport: &dyn Transport,
    port: u16,
    path: &str,
) -> std::result::Result<HttpAnswer, String> {
    use http_body_util::BodyExt;
    let stream = transport
        .connect_loopback(port)
        .await
        .map_err(|e| error_reason(&e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| hyper_reason(&e))?;
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, format!("127.0.0.1:{port}"))
        .header(hyper::header::USER_AGENT, "berth-health")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| format!("invalid path {path:?}: {e}"))?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| hyper_reason(&e))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let mut incoming = response.into_body();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| hyper_reason(&e))?;
            if let Some(data) = frame.data_ref() {
                body.extend_from_slice(data);
                if body.len() >= HTTP_BODY_LIMIT {
                    body.truncate(HTTP_BODY_LIMIT);
                    break;
                }
            }
        }
        Ok(HttpAnswer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    // Driven here, not spawned, so nothing outlives the caller's timeout. A connection that
    // ends first has handed over all it read: the exchange finishes from that.
    tokio::pin!(exchange);
    tokio::select! {
        answer = &mut exchange => answer,
        _ = conn => exchange.await,
    }
}

/// How an HTTP answer other than ready or loading reads in [`ProbeOutcome::Down`].
const HTTP_PREFIX: &str = "HTTP ";

/// The client-error status (4xx, but not a timeout or rate limit) the service answered with,
/// when that was the outcome: the service runs, the probe asks for the wrong thing.
fn answered_status(outcome: &ProbeOutcome) -> Option<u16> {
    let ProbeOutcome::Down(why) = outcome else {
        return None;
    };
    let status: u16 = why.strip_prefix(HTTP_PREFIX)?.parse().ok()?;
    ((400..500).contains(&status) && status != 408 && status != 429).then_some(status)
}

/// A short reason for a transport error, e.g. "connection refused".
fn error_reason(e: &ProviderError) -> String {
    match e {
        ProviderError::Io { source, .. } => io_reason(source),
        ProviderError::Timeout { .. } => "timed out".to_string(),
        other => other.to_string(),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".to_string(),
        ConnectionReset => "connection reset".to_string(),
        ConnectionAborted => "connection aborted".to_string(),
        TimedOut => "timed out".to_string(),
        BrokenPipe => "connection closed".to_string(),
        _ => e.to_string(),
    }
}

fn hyper_reason(e: &hyper::Error) -> String {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        source = s.source();
    }
    if e.is_incomplete_message() {
        "connection closed before a response".to_string()
    } else {
        e.to_string()
    }
}

/// How long the probe gate waits for a service, and how often it polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateTiming {
    /// The gate fails when the service is not ready after this long.
    pub timeout: Duration,
    /// The longest time between two polls.
    pub interval: Duration,
    /// The time between the first polls. The spacing then grows with the time waited (a
    /// sixteenth of it) up to `interval`, so a server is seen ready at most a sixteenth of its
    /// load time late, or one interval. Equal to `interval`, every poll is `interval` apart.
    pub first_interval: Duration,
}

/// The first polls' spacing when a model leaves `probe_interval_ms` unset.
pub const FIRST_INTERVAL: Duration = Duration::from_millis(100);

impl GateTiming {
    /// Polls every `interval`: the spacing a model asks for with `probe_interval_ms`.
    pub fn fixed(timeout: Duration, interval: Duration) -> Self {
        GateTiming {
            timeout,
            interval,
            first_interval: interval,
        }
    }

    /// The time from the poll started after `waited` to the next one.
    pub fn spacing(&self, waited: Duration) -> Duration {
        (waited / 16).clamp(self.first_interval.min(self.interval), self.interval)
    }
}

/// The size-aware gate timing used when a model sets none (DESIGN.md section 4); an unknown
/// size gets the smallest tier. The tier's interval is the longest spacing: the first polls
/// are `FIRST_INTERVAL` apart (see `GateTiming::first_interval`).
pub fn default_timing(size_bytes: Option<u64>) -> GateTiming {
    const GIB: u64 = 1 << 30;
    let (timeout_s, interval_ms) = match size_bytes {
        None => (120, 1000),
        Some(n) if n <= 10 * GIB => (120, 1000),
        Some(n) if n <= 40 * GIB => (300, 1200),
        Some(n) if n <= 80 * GIB => (900, 2000),
        Some(n) if n <= 140 * GIB => (3600, 5000),
        Some(_) => (5400, 5000),
    };
    GateTiming {
        timeout: Duration::from_secs(timeout_s),
        interval: Duration::from_millis(interval_ms),
        first_interval: FIRST_INTERVAL,
    }
}

/// The size in bytes of a model source on the host, in one round trip: a file's size (a
/// directory's disk usage), or for a split GGUF named `NAME-00001-of-0000N.gguf` the sum of
/// all N shards. `Ok(None)` when the source does not exist (it may be a repository id rather
/// than a path); a missing shard is an error that names it. A leading `~/` means `$HOME`.
pub async fn source_size(
    transport: &dyn Transport,
    source: &str,
    timeout: Duration,
) -> Result<Option<u64>> {
    let split = split_gguf(source);
    let paths: Vec<String> = match split {
        Some((stem, _, count)) => (1..=count)
            .map(|k| format!("{stem}-{k:05}-of-{count:05}.gguf"))
            .collect(),
        None => vec![source.to_string()],
    };
    let mut script = String::from(
        "# berth: model source size\n\
         size_of() {\n\
         \x20 if [ -d \"$1\" ]; then k=$(du -skL -- \"$1\" | cut -f1) && echo $((k * 1024)) && return; fi\n\
         \x20 stat -L -c %s -- \"$1\" 2>/dev/null || wc -c < \"$1\" | tr -d ' '\n\
         }\n",
    );
    for (i, path) in paths.iter().enumerate() {
        let q = host_path(path)?;
        script.push_str(&format!(
            "if [ -e {q} ]; then printf '{i} %s\\n' \"$(size_of {q})\"; else echo '{i} -'; fi\n"
        ));
    }
    let what = format!("size of {source}");
    let out = transport.exec(Command::new(script, timeout)).await?;
    if !out.success() {
        return Err(ProviderError::CommandFailed {
            host: transport.host().to_string(),
            what,
            status: out.status,
            stderr: out.stderr_text().trim().to_string(),
        });
    }
    let text = out.stdout_text();
    let malformed = || ProviderError::Malformed {
        host: transport.host().to_string(),
        what: what.clone(),
        message: format!("{:?}", text.trim()),
    };
    let mut sizes: Vec<Option<u64>> = vec![None; paths.len()];
    for line in text.lines() {
        let (index, size) = line.split_once(' ').ok_or_else(malformed)?;
        let index: usize = index.parse().map_err(|_| malformed())?;
        let slot = sizes.get_mut(index).ok_or_else(malformed)?;
        if size != "-" {
            *slot = Some(size.trim().parse().map_err(|_| malformed())?);
        }
    }
    // The source itself missing means "not a path on this host"; a missing sibling shard of
    // a source that exists is a broken model.
    let source_index = split.map_or(0, |(_, index, _)| index as usize - 1);
    if sizes.get(source_index).copied().flatten().is_none() {
        return Ok(None);
    }
    let mut total = 0u64;
    for (path, size) in paths.iter().zip(&sizes) {
        match size {
            Some(n) => total = total.saturating_add(*n),
            None => {
                return Err(ProviderError::CommandFailed {
                    host: transport.host().to_string(),
                    what,
                    status: None,
                    stderr: format!("shard {path} is missing"),
                });
            }
        }
    }
    Ok(Some(total))
}

/// Quotes a path for the host's shell, keeping a leading `~/` meaning `$HOME`.
fn host_path(path: &str) -> Result<String> {
    match path.strip_prefix("~/") {
        Some(rest) => Ok(format!("\"$HOME\"/{}", quote(rest)?)),
        None => quote(path),
    }
}

/// `NAME-0000k-of-0000n.gguf` -> (`NAME`, k, n).
fn split_gguf(source: &str) -> Option<(&str, u32, u32)> {
    let stem = source.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (name, index) = rest.rsplit_once('-')?;
    let is_field = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !is_field(index) || !is_field(count) || name.is_empty() {
        return None;
    }
    let count: u32 = count.parse().ok()?;
    let index: u32 = index.parse().ok()?;
    (1..=count).contains(&index).then_some((name, index, count))
}

/// One poll of the gate, for progress display: "probing 12s/120s: loading (503)".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateTick {
    /// Time since the gate started.
    pub elapsed: Duration,
    /// The gate's timeout.
    pub timeout: Duration,
    /// What this poll found.
    pub outcome: ProbeOutcome,
}

impl fmt::Display for GateTick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "probing {}s/{}s: {}",
            self.elapsed.as_secs(),
            self.timeout.as_secs(),
            self.outcome
        )
    }
}

/// The gate passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateReady {
    /// How long the service took to become ready.
    pub elapsed: Duration,
}

/// Why the gate did not pass.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum GateFailure {
    /// The service process ended while berth waited for it.
    #[error("the service exited before it was ready")]
    #[diagnostic(
        code(berth::providers::gate::exited),
        help("the log tail shows why it stopped")
    )]
    Exited {
        /// The last lines of its output.
        log_tail: String,
    },
    /// The service was not ready in time.
    #[error("not ready after the gate timeout; last probe: {last}")]
    #[diagnostic(
        code(berth::providers::gate::timed_out),
        help("if the model only needs longer to load, raise probe_timeout_sec")
    )]
    TimedOut {
        /// What the last poll found.
        last: ProbeOutcome,
        /// The last lines of its output.
        log_tail: String,
    },
    /// The service answered every probe, but with a status that does not mean ready or
    /// loading (404: nothing at that path): waiting longer would not change the answer.
    #[error("not ready after the gate timeout: the service answers the probe with HTTP {status}")]
    #[diagnostic(
        code(berth::providers::gate::wrong_answer),
        help(
            "the server is up but does not serve the probed path: fix `probe_http` (llama.cpp \
             and vLLM serve /v1/models and /health), or use `probe_cmd`; a longer \
             probe_timeout_sec would not help"
        )
    )]
    WrongAnswer {
        /// The HTTP status of the last probe.
        status: u16,
        /// The last lines of its output.
        log_tail: String,
    },
    /// The caller cancelled the gate.
    #[error("cancelled")]
    #[diagnostic(code(berth::providers::gate::cancelled))]
    Cancelled,
    /// The host could not be asked whether the service still runs.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Transport(#[from] ProviderError),
}

impl GateFailure {
    /// The log tail carried by the failure, if any.
    pub fn log_tail(&self) -> Option<&str> {
        match self {
            GateFailure::Exited { log_tail }
            | GateFailure::TimedOut { log_tail, .. }
            | GateFailure::WrongAnswer { log_tail, .. } => Some(log_tail),
            _ => None,
        }
    }
}

/// Polls `probe` (spaced as `timing` says) until the service is ready, it exits, the timeout
/// passes or `cancel` fires. Between polls it checks through `runtime` that `instance` still
/// runs, so a service that dies fails the gate at once instead of after the timeout, also when
/// its runtime restarts it (a crash loop). A ready answer only counts while the instance is
/// still running (another process may hold the port).
#[allow(clippy::too_many_arguments)]
pub async fn gate(
    transport: &dyn Transport,
    runtime: &dyn Runtime,
    run_dir: &str,
    instance: &Instance,
    probe: &Probe,
    timing: GateTiming,
    cancel: CancellationToken,
    mut on_tick: impl FnMut(GateTick) + Send,
) -> std::result::Result<GateReady, GateFailure> {
    let started = Instant::now();
    // One probe may take up to two intervals (at least 2 s, at most 10 s), never past the end.
    let per_probe = (timing.interval * 2).clamp(Duration::from_secs(2), Duration::from_secs(10));
    // The start is the first sign of life: the first check is due one LIVENESS_EVERY later.
    let mut last_liveness = started;
    let mut liveness_every = LIVENESS_EVERY;
    // How many times the runtime had restarted the instance at the first liveness check.
    let mut restarts: Option<u64> = None;
    loop {
        if cancel.is_cancelled() {
            return Err(GateFailure::Cancelled);
        }
        // Probes start one spacing apart (not one spacing after the last one ended), so a
        // server is seen ready at most one spacing after it is.
        let next_probe = Instant::now() + timing.spacing(started.elapsed());
        let left = timing.timeout.saturating_sub(started.elapsed());
        let outcome = probe_once(
            transport,
            probe,
            instance.port,
            per_probe.min(left).max(Duration::from_millis(100)),
        )
        .await;
        let elapsed = started.elapsed();

        // A liveness check costs a command on the host, a probe only a request, and a server
        // that is still starting refuses connections many times over: so a service that is
        // not ready is checked at most every LIVENESS_EVERY (a crash shows within that), one
        // that answers "loading" ever less often (up to LIVENESS_LOADING_MAX: if it dies, the
        // probes are refused and the checks speed up again), while a ready answer is always
        // confirmed (another process could hold the port).
        let check = outcome == ProbeOutcome::Ready || last_liveness.elapsed() >= liveness_every;
        if check {
            last_liveness = Instant::now();
            liveness_every = match outcome {
                ProbeOutcome::Loading(_) => (liveness_every * 2).min(LIVENESS_LOADING_MAX),
                _ => LIVENESS_EVERY,
            };
        } else if !matches!(outcome, ProbeOutcome::Loading(_)) {
            liveness_every = LIVENESS_EVERY;
        }
        if check {
            // A restart after the first look means the server ended meanwhile: it failed to
            // come up, even though its runtime brings it back.
            let now = runtime.still_mine(transport, run_dir, instance).await?;
            let restarts_before = *restarts.get_or_insert(now.unwrap_or(0));
            if now.is_none_or(|n| n > restarts_before) {
                let log_tail = log_tail(transport, runtime, run_dir, &instance.address).await;
                return Err(GateFailure::Exited { log_tail });
            }
        }
        if outcome == ProbeOutcome::Ready {
            return Ok(GateReady { elapsed });
        }
        on_tick(GateTick {
            elapsed,
            timeout: timing.timeout,
            outcome: outcome.clone(),
        });
        if elapsed >= timing.timeout {
            let log_tail = log_tail(transport, runtime, run_dir, &instance.address).await;
            if let Some(status) = answered_status(&outcome) {
                return Err(GateFailure::WrongAnswer { status, log_tail });
            }
            return Err(GateFailure::TimedOut {
                last: outcome,
                log_tail,
            });
        }
        let until = next_probe.min(started + timing.timeout);
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = cancel.cancelled() => return Err(GateFailure::Cancelled),
        }
    }
}

async fn log_tail(
    transport: &dyn Transport,
    runtime: &dyn Runtime,
    run_dir: &str,
    address: &str,
) -> String {
    match runtime
        .logs(transport, run_dir, address, LOG_TAIL_LINES)
        .await
    {
        Ok(text) => text,
        Err(e) => format!("(log unavailable: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn timing_tiers() {
        let t = |size| {
            let g = default_timing(size);
            (g.timeout.as_secs(), g.interval.as_millis())
        };
        assert_eq!(t(None), (120, 1000));
        assert_eq!(t(Some(0)), (120, 1000));
        assert_eq!(t(Some(10 * GIB)), (120, 1000));
        assert_eq!(t(Some(10 * GIB + 1)), (300, 1200));
        assert_eq!(t(Some(40 * GIB)), (300, 1200));
        assert_eq!(t(Some(80 * GIB)), (900, 2000));
        assert_eq!(t(Some(140 * GIB)), (3600, 5000));
        assert_eq!(default_timing(Some(GIB)).first_interval, FIRST_INTERVAL);
        assert_eq!(t(Some(140 * GIB + 1)), (5400, 5000));
    }

    #[test]
    fn default_spacing_grows_from_the_first_interval_to_the_tier() {
        let g = default_timing(None);
        let ms = |waited_ms| g.spacing(Duration::from_millis(waited_ms)).as_millis();
        assert_eq!(ms(0), 100);
        assert_eq!(ms(1600), 100);
        assert_eq!(ms(4000), 250);
        assert_eq!(ms(16_000), 1000);
        assert_eq!(ms(60_000), 1000);
        let fixed = GateTiming::fixed(Duration::from_secs(30), Duration::from_millis(700));
        assert_eq!(fixed.spacing(Duration::ZERO), Duration::from_millis(700));
        assert_eq!(
            fixed.spacing(Duration::from_secs(20)),
            Duration::from_millis(700)
        );
    }

    #[test]
    fn split_gguf_names() {
        assert_eq!(
            split_gguf("/m/qwen-7b-00001-of-00003.gguf"),
            Some(("/m/qwen-7b", 1, 3))
        );
        assert_eq!(split_gguf("/m/qwen-7b.gguf"), None);
        assert_eq!(split_gguf("/m/x-1-of-3.gguf"), None);
        assert_eq!(split_gguf("/m/x-00004-of-00003.gguf"), None);
        assert_eq!(split_gguf("-00001-of-00002.gguf"), None);
    }

    #[test]
    fn outcomes_display() {
        assert_eq!(ProbeOutcome::Ready.to_string(), "ready");
        assert_eq!(
            ProbeOutcome::Loading("503".into()).to_string(),
            "loading (503)"
        );
        assert_eq!(
            ProbeOutcome::Down("connection refused".into()).to_string(),
            "down: connection refused"
        );
        let tick = GateTick {
            elapsed: Duration::from_millis(12_400),
            timeout: Duration::from_secs(120),
            outcome: ProbeOutcome::Loading("503".into()),
        };
        assert_eq!(tick.to_string(), "probing 12s/120s: loading (503)");
    }
}
