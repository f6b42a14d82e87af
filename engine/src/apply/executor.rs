//! The executor: walks a plan's resources on tokio, at most `parallelism` at once, each after
//! what it depends on, destroys before everything else. One dispatcher loop owns scheduling,
//! results and the stop token; the steps themselves only emit events. It never prints and
//! never listens to process signals: whoever drives it asks it to stop through the token.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use berth_providers::probe::{self, GateTiming};
use berth_providers::{Command, Handle, LaunchSpec, Liveness, ProviderError, Runtime, Transport};
use berth_state::{Address, ResourceKind, ResourceRecord, ResourceStatus};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::events::{ApplyEvent, Counts, Outcome, Phase, Step, StepError, Subscriber};
use crate::connections::{Connections, HostLockGuard, error_text};
use crate::launch::{self, Rendered};
use crate::ops::{Stop, StopLevel};
use crate::placement::Placement;
use crate::plan::{Action, Kind, Plan, ResourceChange};
use crate::refresh::provider_probe;
use crate::workspace::Workspace;

/// How an apply runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Resource operations in flight at once.
    pub parallelism: usize,
    /// How long a stopping service gets between TERM and KILL.
    pub stop_grace: Duration,
    /// How long a backend's verify_cmd may run.
    pub verify_timeout: Duration,
    /// Who holds the host locks (berth's lock id, user@hostname, pid, operation); `None` takes
    /// no host lock.
    pub holder: Option<String>,
    /// The state's lineage, recorded on the host beside every instance started.
    pub owner: String,
    /// Asks the apply to stop: drain (start nothing new) or cancel (end running steps now).
    pub stop: Stop,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 10,
            stop_grace: Duration::from_secs(10),
            verify_timeout: Duration::from_secs(120),
            holder: None,
            owner: String::new(),
            stop: Stop::new(),
        }
    }
}

/// How one resource's action ended.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeResult {
    pub address: Address,
    pub host: String,
    pub action: Action,
    pub outcome: Outcome,
}

/// Every resource's outcome.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub results: Vec<NodeResult>,
    /// A stop was asked for (Ctrl-C, a signal, the caller's stop token).
    pub interrupted: bool,
}

impl ApplyReport {
    /// True when every action finished.
    pub fn succeeded(&self) -> bool {
        !self.interrupted
            && self
                .results
                .iter()
                .all(|r| matches!(r.outcome, Outcome::Done { .. }))
    }

    pub fn failed(&self) -> impl Iterator<Item = &NodeResult> {
        self.results
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
    }

    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }

    /// How many resources ended each way.
    pub fn counts(&self) -> Counts {
        Counts::of(self.results.iter().map(|r| &r.outcome))
    }
}

/// What every step needs.
struct Ctx<'a> {
    ws: &'a Workspace,
    conns: &'a Connections,
    key: &'a [u8],
    secrets: Vec<&'a str>,
    subscribers: &'a [&'a dyn Subscriber],
    placements: HashMap<berth_state::Address, &'a Placement>,
    previous: &'a BTreeMap<Address, ResourceRecord>,
    options: &'a ApplyOptions,
    cancel: CancellationToken,
    /// Cancelled by the first interrupt: steps still waiting for a slot end as cancelled.
    winding_down: CancellationToken,
    /// One permit per resource operation on a host (`parallelism`). A model gives its permit
    /// back once it is started: waiting in its probe gate is no operation and holds no slot.
    slots: Semaphore,
    /// Hosts with `max_parallel_starts`: one permit per model from its start until its gate
    /// ends.
    starts: HashMap<&'a str, Semaphore>,
    /// The host lock of every host the plan touches, taken by the first step there and held
    /// until the apply ends.
    host_locks: HashMap<&'a str, OnceCell<Result<HostLockGuard, StepError>>>,
}

impl Ctx<'_> {
    /// Tells every subscriber; the first error (a state write that failed) is returned.
    fn emit(&self, event: ApplyEvent) -> Result<(), String> {
        for s in self.subscribers {
            s.on_event(&event)?;
        }
        Ok(())
    }

    fn phase(&self, address: &Address, phase: Phase) {
        let _ = self.emit(ApplyEvent::Phase {
            address: address.clone(),
            phase,
        });
    }
}

type Running<'a> = Pin<Box<dyn Future<Output = (usize, Outcome)> + 'a>>;

/// Carries out `plan` and reports every resource's outcome.
pub async fn execute(
    ws: &Workspace,
    plan: &Plan,
    conns: &Connections,
    hmac_key: &[u8],
    previous: &BTreeMap<Address, ResourceRecord>,
    subscribers: &[&dyn Subscriber],
    options: &ApplyOptions,
) -> ApplyReport {
    let work: Vec<&ResourceChange> = plan
        .resources
        .iter()
        .filter(|r| r.action != Action::NoOp)
        .collect();
    let ctx = Ctx {
        ws,
        conns,
        key: hmac_key,
        secrets: ws.config.secrets().collect(),
        subscribers,
        placements: ws.placements.iter().map(|p| (p.address(), p)).collect(),
        previous,
        options,
        cancel: options.stop.cancel_token().clone(),
        winding_down: options.stop.drain_token().clone(),
        slots: Semaphore::new(options.parallelism.max(1)),
        starts: ws
            .config
            .hosts
            .iter()
            .filter_map(|h| Some((h.id.value.as_str(), Semaphore::new(h.max_parallel_starts?))))
            .collect(),
        host_locks: work
            .iter()
            .map(|r| (r.host.as_str(), OnceCell::new()))
            .collect(),
    };
    let index: HashMap<&str, usize> = work
        .iter()
        .enumerate()
        .map(|(i, r)| (r.address.as_str(), i))
        .collect();
    // A resource waits for what it depends on; a destroy waits for the destroys of what depends
    // on it (reverse order: a model stops before the model it needs, models before backends).
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); work.len()];
    for (i, r) in work.iter().enumerate() {
        for d in r
            .depends_on
            .iter()
            .filter_map(|d| index.get(d.as_str()).copied())
        {
            match (
                r.action == Action::Destroy,
                work[d].action == Action::Destroy,
            ) {
                (true, true) => deps[d].push(i),
                (false, false) => deps[i].push(d),
                // Destroys run in their own phase, before everything else.
                _ => {}
            }
        }
    }
    let destroys: HashSet<usize> = (0..work.len())
        .filter(|&i| work[i].action == Action::Destroy)
        .collect();

    let mut outcome: Vec<Option<Outcome>> = vec![None; work.len()];
    let mut started = vec![false; work.len()];
    let mut running: FuturesUnordered<Running<'_>> = FuturesUnordered::new();
    let stop = &options.stop;
    // From here on a stop request is obeyed: the driver asks instead of ending the process.
    let _obeying = stop.obey();
    let mut stopping = false;
    let mut cancelling = false;
    let _ = ctx.emit(ApplyEvent::RunStarted {
        operation: plan.operation,
        resources: work.len(),
        at: now(),
    });

    loop {
        // Skip what can no longer run, start what can.
        let destroys_pending = destroys.iter().any(|&i| outcome[i].is_none());
        for i in 0..work.len() {
            if started[i] || outcome[i].is_some() {
                continue;
            }
            if let Some(&bad) = deps[i].iter().find(|&&d| {
                matches!(
                    outcome[d],
                    Some(Outcome::Failed(_) | Outcome::Skipped { .. } | Outcome::Cancelled)
                )
            }) {
                // A host berth cannot reach fails every step there, each recorded, and so does
                // a host whose lock another berth holds (nothing there was touched: nothing is
                // recorded). Anything else that did not finish only holds back what depends on it.
                if let Some(Outcome::Failed(e)) = &outcome[bad]
                    && matches!(e.step, Step::Connect | Step::HostLock)
                    && work[bad].host == work[i].host
                {
                    let o = Outcome::Failed(StepError {
                        log_tail: None,
                        ..e.clone()
                    });
                    let o = if e.step == Step::Connect
                        && work[i].kind == Kind::Model
                        && matches!(
                            work[i].action,
                            Action::Create | Action::Replace | Action::Reuse
                        ) {
                        record_failure(&ctx, work[i], None, o)
                    } else {
                        o
                    };
                    finish(&ctx, work[i], &mut outcome[i], o);
                    continue;
                }
                let because = format!("{} did not finish", work[bad].address);
                finish(&ctx, work[i], &mut outcome[i], Outcome::Skipped { because });
                continue;
            }
            if stopping {
                continue;
            }
            let ready = deps[i]
                .iter()
                .all(|&d| matches!(outcome[d], Some(Outcome::Done { .. })));
            let ordered = destroys.contains(&i) || !destroys_pending;
            if ready && ordered {
                started[i] = true;
                let change = work[i];
                let ctx = &ctx;
                running.push(Box::pin(async move { (i, run(ctx, change).await) }));
            }
        }
        if running.is_empty() {
            let progress_possible =
                !stopping && (0..work.len()).any(|i| !started[i] && outcome[i].is_none());
            if !progress_possible {
                break;
            }
        }
        tokio::select! {
            Some((i, o)) = running.next() => finish(&ctx, work[i], &mut outcome[i], o),
            () = stop.drained(), if !stopping => {
                stopping = true;
                began(&ctx, StopLevel::Drain);
            }
            // The cancel token is the steps' own (`ctx.cancel`): they end by themselves.
            () = stop.cancelled(), if stopping && !cancelling => {
                cancelling = true;
                began(&ctx, StopLevel::Cancel);
            }
        }
    }

    // What never started was cancelled; say so for each, so no resource ends unreported.
    for (i, change) in work.iter().enumerate() {
        if outcome[i].is_none() {
            finish(&ctx, change, &mut outcome[i], Outcome::Cancelled);
        }
    }
    let results: Vec<NodeResult> = work
        .iter()
        .zip(outcome)
        .map(|(r, o)| NodeResult {
            address: r.address.clone(),
            host: r.host.clone(),
            action: r.action,
            outcome: o.unwrap_or(Outcome::Cancelled),
        })
        .collect();
    let report = ApplyReport {
        results,
        interrupted: stopping,
    };
    let _ = ctx.emit(ApplyEvent::RunFinished {
        counts: report.counts(),
        interrupted: report.interrupted,
        at: now(),
    });
    report
}

/// Records how `change` ended and tells the subscribers.
fn finish(ctx: &Ctx<'_>, change: &ResourceChange, slot: &mut Option<Outcome>, outcome: Outcome) {
    let _ = ctx.emit(ApplyEvent::Finished {
        address: change.address.clone(),
        host: change.host.clone(),
        action: change.action,
        outcome: outcome.clone(),
    });
    *slot = Some(outcome);
}

/// Tells the subscribers that a stop of `level` began, and who asked for it.
fn began(ctx: &Ctx<'_>, level: StopLevel) {
    let _ = ctx.emit(ApplyEvent::CancelBegan {
        level,
        reason: ctx.options.stop.reason(level),
        at: now(),
    });
}

fn failed(step: Step, reason: impl Into<String>) -> Outcome {
    Outcome::Failed(StepError::new(step, reason))
}

fn failed_by(step: Step, cause: &(dyn miette::Diagnostic + Send + Sync + 'static)) -> Outcome {
    Outcome::Failed(StepError::caused_by(step, cause))
}

async fn run(ctx: &Ctx<'_>, change: &ResourceChange) -> Outcome {
    // Ready resources all start at once and queue here, first come first served; one that is
    // still queued when the user interrupts never starts.
    let mut slot = match queue(ctx, &ctx.slots).await {
        Ok(permit) => Some(permit),
        Err(cancelled) => return cancelled,
    };
    let started = Instant::now();
    let _ = ctx.emit(ApplyEvent::Started {
        address: change.address.clone(),
        action: change.action,
    });
    let result = match (change.kind, change.action) {
        (Kind::Model, Action::Create | Action::Replace | Action::Reuse) => {
            deploy(ctx, change, &mut slot).await
        }
        (Kind::Model, Action::Update) => update(ctx, change),
        (Kind::Model, Action::Destroy) => destroy_model(ctx, change).await,
        (Kind::Backend, Action::Verify) => verify(ctx, change).await,
        (_, Action::Destroy) => ctx
            .emit(ApplyEvent::Forget {
                address: change.address.clone(),
            })
            .map_err(|e| failed(Step::Record, e)),
        (kind, action) => Err(failed(
            Step::Plan,
            format!("berth cannot {} a {kind:?} resource", action.as_str()),
        )),
    };
    match result {
        Ok(()) => Outcome::Done {
            elapsed: started.elapsed(),
        },
        // A step that failed once the apply was cancelled was cut short by the cancel (its
        // commands on the host were stopped), whatever error that left behind.
        Err(Outcome::Failed(e)) if ctx.cancel.is_cancelled() && !e.cancelled => {
            Outcome::Failed(e.cancelled())
        }
        Err(o) => o,
    }
}

/// Waits for a permit of `semaphore`, first come first served; a resource still waiting when
/// the apply winds down never starts.
async fn queue<'s>(
    ctx: &Ctx<'_>,
    semaphore: &'s Semaphore,
) -> Result<SemaphorePermit<'s>, Outcome> {
    tokio::select! {
        biased;
        _ = ctx.winding_down.cancelled() => Err(Outcome::Cancelled),
        permit = semaphore.acquire() => permit.map_err(|_| Outcome::Cancelled),
    }
}

/// Takes the host lock of `host` (once per apply: the first step there takes it, the others
/// wait for that) and keeps it until the apply ends. A host whose lock another berth holds fails
/// here, naming the holder; so does every step after the lock was lost.
async fn hold(ctx: &Ctx<'_>, host: &str) -> Result<(), Outcome> {
    let (Some(holder), Some(cell)) = (&ctx.options.holder, ctx.host_locks.get(host)) else {
        return Ok(());
    };
    // A host no longer in the config has no run_dir to lock; its steps fail at connect.
    let Some(run_dir) = ctx.ws.config.host(host).map(|h| h.run_dir.as_str()) else {
        return Ok(());
    };
    let guard = cell
        .get_or_init(|| async {
            let taken = ctx.conns.lock_host(host, run_dir, holder).await;
            if let Ok(Some(previous)) = taken.as_ref().map(HostLockGuard::took_over) {
                let _ = ctx.emit(ApplyEvent::HostLockTakenOver {
                    host: host.to_string(),
                    previous: previous.to_string(),
                });
            }
            taken.map_err(|why| StepError::new(Step::HostLock, why))
        })
        .await
        .as_ref()
        .map_err(|e| Outcome::Failed(e.clone()))?;
    match guard.lost_reason() {
        Some(why) => Err(failed(Step::HostLock, why)),
        None => Ok(()),
    }
}

/// The host lock of `host` once this apply holds it.
fn held_lock<'c>(ctx: &'c Ctx<'_>, host: &str) -> Option<&'c HostLockGuard> {
    ctx.host_locks.get(host)?.get()?.as_ref().ok()
}

/// Why the host lock of `host` was lost during this apply, if it was.
fn lock_lost(ctx: &Ctx<'_>, host: &str) -> Option<String> {
    held_lock(ctx, host)?.lost_reason()
}

/// Why the host lock of `host` is lost, giving its keeper a moment to notice: a step that
/// failed because its connection died learns of it at the same moment as the keeper.
async fn lock_lost_after_failure(ctx: &Ctx<'_>, host: &str) -> Option<String> {
    let lock = held_lock(ctx, host)?;
    tokio::time::timeout(Duration::from_millis(200), lock.lost())
        .await
        .ok()
}

/// A step that failed after its host's lock was lost failed because of that (a host that
/// stopped answering, or another berth that took the host over): say so, at step `host lock`,
/// so the rest of the host's steps fail with it instead of each waiting on the host.
async fn blame_lost_lock(ctx: &Ctx<'_>, host: &str, outcome: Outcome) -> Outcome {
    match &outcome {
        Outcome::Failed(e) if e.step != Step::HostLock => {
            match lock_lost_after_failure(ctx, host).await {
                Some(why) => Outcome::Failed(
                    StepError::new(Step::HostLock, why).with_tail(e.log_tail.clone()),
                ),
                None => outcome,
            }
        }
        _ => outcome,
    }
}

async fn connect(
    ctx: &Ctx<'_>,
    address: &Address,
    host: &str,
) -> Result<std::sync::Arc<dyn Transport>, Outcome> {
    ctx.phase(address, Phase::Connecting);
    let transport = ctx
        .conns
        .transport(host)
        .await
        .map_err(|e| failed(Step::Connect, e))?;
    // A host whose lock was lost is not touched again in this apply.
    match lock_lost(ctx, host) {
        Some(why) => Err(failed(Step::HostLock, why)),
        None => Ok(std::sync::Arc::new(Cancellable {
            inner: transport,
            cancel: ctx.cancel.clone(),
        })),
    }
}

/// A host's transport whose commands are stopped (their process group killed on the host) when
/// the apply is cancelled, so a hard stop reaches what runs there instead of waiting for it.
#[derive(Debug)]
struct Cancellable {
    inner: std::sync::Arc<dyn Transport>,
    cancel: CancellationToken,
}

#[async_trait::async_trait]
impl Transport for Cancellable {
    fn host(&self) -> &str {
        self.inner.host()
    }

    async fn exec(&self, cmd: Command) -> berth_providers::Result<berth_providers::Output> {
        self.inner.exec(cmd.cancel_on(self.cancel.clone())).await
    }

    async fn connect_loopback(
        &self,
        port: u16,
    ) -> berth_providers::Result<berth_providers::transport::BoxStream> {
        self.inner.connect_loopback(port).await
    }
}

fn now() -> u64 {
    crate::now()
}

/// Records a failure of a model so that the next plan replaces it.
fn record_failure(
    ctx: &Ctx<'_>,
    change: &ResourceChange,
    rendered: Option<&Rendered>,
    outcome: Outcome,
) -> Outcome {
    if let Outcome::Failed(e) = &outcome {
        let rendered_now = match rendered {
            Some(_) => None,
            None => ctx
                .placements
                .get(&change.address)
                .and_then(|p| launch::render(&ctx.ws.config, p).ok()),
        };
        let attributes = match rendered.or(rendered_now.as_ref()) {
            Some(r) => r.attributes(),
            None => ctx
                .previous
                .get(change.address.as_str())
                .map(|r| r.attributes.clone())
                .unwrap_or_default(),
        };
        let record = ResourceRecord {
            address: change.address.clone(),
            kind: ResourceKind::Model,
            host: change.host.clone(),
            status: ResourceStatus::Failed {
                step: e.at(),
                reason: e.message.clone(),
            },
            fingerprint: change.fingerprint.clone(),
            attributes,
            updated_at: now(),
        };
        if let Err(e) = ctx.emit(ApplyEvent::Record(record)) {
            return failed(Step::Record, e);
        }
    }
    outcome
}

async fn deploy<'c>(
    ctx: &'c Ctx<'_>,
    change: &ResourceChange,
    slot: &mut Option<SemaphorePermit<'c>>,
) -> Result<(), Outcome> {
    let address = &change.address;
    let transport = match connect(ctx, address, &change.host).await {
        Ok(t) => t,
        Err(o) => return Err(record_failure(ctx, change, None, o)),
    };
    hold(ctx, &change.host).await?;
    let Some(placement) = ctx.placements.get(address) else {
        return Err(failed(
            Step::Plan,
            "the config no longer places this model here: plan again",
        ));
    };
    let rendered = launch::render(&ctx.ws.config, placement)
        .map_err(|e| failed(Step::Render, e.to_string()))?;
    if change.fingerprint.as_deref() != Some(rendered.fingerprint(ctx.key).as_str()) {
        return Err(failed(
            Step::Plan,
            "the launch changed since the plan was made (config or variables): plan again",
        ));
    }
    let runtime = ctx
        .conns
        .runtime(rendered.runtime.as_str())
        .map_err(|e| failed(Step::Runtime, e))?;
    let spec = rendered.launch_spec(
        &ctx.options.owner,
        change.fingerprint.as_deref().unwrap_or_default(),
    );
    ctx.emit(ApplyEvent::Intent {
        address: address.clone(),
        action: change.action,
    })
    .map_err(|e| failed(Step::Record, e))?;
    let result = start_and_gate(
        ctx,
        change,
        &rendered,
        &spec,
        transport.as_ref(),
        runtime.as_ref(),
        slot,
    )
    .await;
    let outcome = match result {
        Ok(attributes) => {
            ctx.phase(address, Phase::Recording);
            let record = ResourceRecord {
                address: address.clone(),
                kind: ResourceKind::Model,
                host: change.host.clone(),
                status: ResourceStatus::Ready,
                fingerprint: change.fingerprint.clone(),
                attributes,
                updated_at: now(),
            };
            ctx.emit(ApplyEvent::Record(record))
                .map_err(|e| failed(Step::Record, e))
        }
        Err(o) => {
            let o = blame_lost_lock(ctx, &change.host, o).await;
            Err(record_failure(ctx, change, Some(&rendered), o))
        }
    };
    let _ = ctx.emit(ApplyEvent::IntentDone {
        address: address.clone(),
    });
    outcome
}

async fn start_and_gate<'c>(
    ctx: &'c Ctx<'_>,
    change: &ResourceChange,
    rendered: &Rendered,
    spec: &LaunchSpec,
    transport: &dyn Transport,
    runtime: &dyn Runtime,
    slot: &mut Option<SemaphorePermit<'c>>,
) -> Result<BTreeMap<String, Value>, Outcome> {
    let address = &change.address;
    let mut instance = None;
    if change.action == Action::Reuse {
        let seen = runtime
            .observe(transport, &spec.run_dir, address)
            .await
            .map_err(|e| failed_by(Step::Observe, &e))?;
        instance = seen
            .filter(|o| {
                o.liveness == Liveness::Running && o.instance.fingerprint == spec.fingerprint
            })
            .map(|o| o.instance);
        if let Some(found) = &instance
            && found.owner != spec.owner
        {
            runtime
                .claim(transport, &spec.run_dir, found, &spec.owner)
                .await
                .map_err(|e| failed_by(Step::Adopt, &e))?;
        }
    }
    // What the launch needs on the host (an image) is there, or is brought there, before
    // anything is stopped: a launch that cannot start must not cost the running one. With
    // nothing to stop, the start brings it itself, one round trip fewer.
    if instance.is_none() && change.action == Action::Replace {
        runtime
            .prepare(transport, spec)
            .await
            .map_err(|e| failed_by(Step::Start, &e))?;
    }
    if change.action == Action::Replace {
        ctx.phase(address, Phase::Stopping);
        let previous = ctx.previous.get(address);
        // The old instance lives where it was started, which may not be the new run_dir, and
        // runs under the runtime that started it, which may not be the new one.
        let old_run_dir = previous
            .and_then(|r| r.attributes.get("run_dir"))
            .and_then(Value::as_str)
            .unwrap_or(&spec.run_dir);
        let old_runtime = previous
            .map(|record| recorded_runtime(ctx, record))
            .transpose()?;
        let old_runtime = old_runtime.as_deref().unwrap_or(runtime);
        let recorded = previous.and_then(|r| recorded_handle(r, old_runtime));
        old_runtime
            .stop_with(
                transport,
                old_run_dir,
                address,
                recorded.as_ref(),
                ctx.options.stop_grace,
            )
            .await
            .map_err(|e| {
                let port = previous.and_then(recorded_port);
                failed(Step::Stop, stop_error(address, port, &e))
            })?;
        if old_run_dir != spec.run_dir {
            runtime
                .stop(transport, &spec.run_dir, address, ctx.options.stop_grace)
                .await
                .map_err(|e| failed_by(Step::Stop, &e))?;
        }
        if port_accepts(transport, spec.port).await {
            return Err(failed(
                Step::Stop,
                port_held(address, transport.host(), spec.port),
            ));
        }
    }
    // On a host that loads one model at a time (`max_parallel_starts`), a start waits for a
    // start permit, held until its gate ends; its operation slot goes meanwhile.
    let _starting = match ctx.starts.get(change.host.as_str()) {
        Some(starts) if instance.is_none() => match starts.try_acquire() {
            Ok(permit) => Some(permit),
            Err(_) => {
                drop(slot.take());
                ctx.phase(address, Phase::Queued);
                let permit = queue(ctx, starts).await?;
                *slot = Some(queue(ctx, &ctx.slots).await?);
                Some(permit)
            }
        },
        _ => None,
    };
    let instance = match instance {
        Some(i) => i,
        None => {
            ctx.phase(address, Phase::Starting);
            runtime
                .start(transport, spec)
                .await
                .map_err(|e| failed_by(Step::Start, &e))?
        }
    };
    let timing = match (rendered.probe_timeout_sec, rendered.probe_interval_ms) {
        (Some(t), Some(i)) => GateTiming::fixed(Duration::from_secs(t), Duration::from_millis(i)),
        (t, i) => {
            let size = match rendered.size_gib {
                Some(gib) => Some((gib * 1024.0 * 1024.0 * 1024.0) as u64),
                None => {
                    ctx.phase(address, Phase::Measuring);
                    probe::source_size(transport, &rendered.source.value, Duration::from_secs(30))
                        .await
                        .ok()
                        .flatten()
                }
            };
            let d = probe::default_timing(size);
            let timeout = t.map_or(d.timeout, Duration::from_secs);
            match i {
                // An interval the model sets is kept from the first probe on.
                Some(i) => GateTiming::fixed(timeout, Duration::from_millis(i)),
                None => GateTiming { timeout, ..d },
            }
        }
    };
    let probe = provider_probe(&rendered.probe);
    // The start is done: waiting for readiness is no host operation, so another resource may
    // use the slot (the gate's own probes are short commands on an open connection).
    drop(slot.take());
    // Losing the host lock (the host stopped answering, or another berth took it over) ends
    // the gate like a cancel: waiting out its timeout on a host berth no longer holds helps no
    // one.
    let stop_gate = ctx.cancel.child_token();
    let gate = probe::gate(
        transport,
        runtime,
        &spec.run_dir,
        &instance,
        &probe,
        timing,
        stop_gate.clone(),
        |tick| {
            ctx.phase(address, Phase::Probing(tick));
        },
    );
    tokio::pin!(gate);
    let ready = match held_lock(ctx, &change.host) {
        Some(lock) => tokio::select! {
            ready = &mut gate => ready,
            _ = lock.lost() => {
                stop_gate.cancel();
                gate.await
            }
        },
        None => gate.await,
    };
    // A gate that failed on a host whose lock is gone failed because of that; stopping the
    // server there would only wait on the host again.
    if ready.is_err()
        && let Some(why) = lock_lost_after_failure(ctx, &change.host).await
    {
        return Err(failed(Step::HostLock, why));
    }
    let ready = match ready {
        Ok(ready) => ready,
        Err(e) => {
            let tail = e.log_tail().map(|t| launch::scrub(t, &ctx.secrets));
            let cancelled = matches!(e, berth_providers::GateFailure::Cancelled);
            if !cancelled {
                // A server that never became ready would keep its port and memory until the next
                // apply; its log tail is already in the failure. (A cancelled gate leaves it: the
                // user asked berth to stop now.)
                ctx.phase(address, Phase::StoppingFailed);
                let _ = runtime
                    .stop_with(
                        transport,
                        &spec.run_dir,
                        address,
                        Some(&instance.handle),
                        ctx.options.stop_grace,
                    )
                    .await;
            }
            let error = StepError::caused_by(Step::Probe, &e).with_tail(tail);
            return Err(Outcome::Failed(if cancelled {
                error.cancelled()
            } else {
                error
            }));
        }
    };
    let mut attributes = rendered.attributes();
    // The handle's fields sit beside the launch's: the runtime picks them out again by its
    // handle keys when the marker on the host is lost.
    attributes.extend(
        instance
            .handle
            .fields()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    attributes.insert("started_at".into(), Value::from(instance.started_at));
    if let Some(pinned) = &instance.pinned {
        attributes.insert("image_digest".into(), Value::from(pinned.clone()));
    }
    attributes.insert(
        "ready_after_ms".into(),
        Value::from(ready.elapsed.as_millis() as u64),
    );
    Ok(attributes)
}

fn update(ctx: &Ctx<'_>, change: &ResourceChange) -> Result<(), Outcome> {
    let Some(previous) = ctx.previous.get(change.address.as_str()) else {
        return Err(failed(Step::Record, "no record to update: plan again"));
    };
    let mut record = previous.clone();
    for c in &change.changes {
        match &c.after {
            Some(v) => record.attributes.insert(c.field.clone(), v.clone()),
            None => record.attributes.remove(&c.field),
        };
    }
    record.updated_at = now();
    ctx.emit(ApplyEvent::Record(record))
        .map_err(|e| failed(Step::Record, e))
}

async fn destroy_model(ctx: &Ctx<'_>, change: &ResourceChange) -> Result<(), Outcome> {
    let address = &change.address;
    let transport = connect(ctx, address, &change.host).await?;
    hold(ctx, &change.host).await?;
    let recorded = ctx.previous.get(address);
    let run_dir = recorded
        .and_then(|r| r.attributes.get("run_dir"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| ctx.ws.config.host(&change.host).map(|h| h.run_dir.clone()))
        .ok_or_else(|| failed(Step::Stop, "the host's run_dir is unknown"))?;
    // The runtime the record names; an instance found on the host without a record is stopped
    // by whichever runtime observes it there.
    let runtime = match recorded {
        Some(record) => Some(recorded_runtime(ctx, record)?),
        None => finder(ctx, transport.as_ref(), &run_dir, address).await?,
    };
    ctx.emit(ApplyEvent::Intent {
        address: address.clone(),
        action: Action::Destroy,
    })
    .map_err(|e| failed(Step::Record, e))?;
    ctx.phase(address, Phase::Stopping);
    let port = recorded.and_then(recorded_port);
    let stopped = match &runtime {
        Some(runtime) => {
            runtime
                .stop_with(
                    transport.as_ref(),
                    &run_dir,
                    address,
                    recorded
                        .and_then(|r| recorded_handle(r, runtime.as_ref()))
                        .as_ref(),
                    ctx.options.stop_grace,
                )
                .await
        }
        None => Ok(()),
    };
    let result = match (stopped, port) {
        (Err(e), _) => Err(blame_lost_lock(
            ctx,
            &change.host,
            failed(Step::Stop, stop_error(address, port, &e)),
        )
        .await),
        // What berth knew of is stopped, but something still serves the model's port: most
        // likely an instance whose marker was lost. The record stays, so it is not forgotten.
        (Ok(()), Some(port)) if port_accepts(transport.as_ref(), port).await => {
            Err(failed(Step::Stop, port_held(address, &change.host, port)))
        }
        (Ok(()), _) => ctx
            .emit(ApplyEvent::Forget {
                address: address.clone(),
            })
            .map_err(|e| failed(Step::Record, e)),
    };
    let _ = ctx.emit(ApplyEvent::IntentDone {
        address: address.clone(),
    });
    result
}

/// The runtime a model's record names (its `runtime` attribute).
fn recorded_runtime(
    ctx: &Ctx<'_>,
    record: &ResourceRecord,
) -> Result<std::sync::Arc<dyn Runtime>, Outcome> {
    let Some(name) = record.attributes.get("runtime").and_then(Value::as_str) else {
        return Err(failed(
            Step::Runtime,
            format!(
                "the state's record of {} names no runtime, so berth cannot tell what runs it; stop the server by hand, then run `berth state rm {}`",
                record.address, record.address
            ),
        ));
    };
    ctx.conns
        .runtime(name)
        .map_err(|e| failed(Step::Runtime, e))
}

/// The runtime that observes an instance of `address` under `run_dir`, if any does.
async fn finder(
    ctx: &Ctx<'_>,
    transport: &dyn Transport,
    run_dir: &str,
    address: &str,
) -> Result<Option<std::sync::Arc<dyn Runtime>>, Outcome> {
    for runtime in ctx.conns.runtimes() {
        let seen = runtime
            .observe(transport, run_dir, address)
            .await
            .map_err(|e| failed_by(Step::Observe, &e))?;
        if seen.is_some() {
            return Ok(Some(runtime.clone()));
        }
    }
    Ok(None)
}

/// The handle of `runtime`'s instance that a model's record holds, if it holds one.
fn recorded_handle(record: &ResourceRecord, runtime: &dyn Runtime) -> Option<Handle> {
    Handle::pick(&record.attributes, runtime.handle_keys())
}

/// The port a model's record says it listens on.
fn recorded_port(record: &ResourceRecord) -> Option<u16> {
    let port = record.attributes.get("port").and_then(Value::as_u64)?;
    u16::try_from(port).ok()
}

/// The reason of a failed stop; an unreadable marker says how to finish the job by hand.
fn stop_error(address: &str, port: Option<u16>, error: &ProviderError) -> String {
    match error {
        ProviderError::UnreadableMarker {
            path, dir, detail, ..
        } => {
            let listens = port.map_or(String::new(), |p| format!(" (it listens on port {p})"));
            format!(
                "cannot stop {address}: its marker {path} is unreadable ({detail}) and the state has no process identity for it; stop the server by hand{listens}, remove {dir}, then run `berth state rm {address}`"
            )
        }
        other => error_text(other),
    }
}

/// How long the check that a stopped model's port is free may take.
const PORT_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether something on the host accepts connections on its loopback `port`.
async fn port_accepts(transport: &dyn Transport, port: u16) -> bool {
    matches!(
        tokio::time::timeout(PORT_CHECK_TIMEOUT, transport.connect_loopback(port)).await,
        Ok(Ok(_))
    )
}

fn port_held(address: &str, host: &str, port: u16) -> String {
    format!(
        "{address} is stopped, but port {port} on {host} still accepts connections: a process berth cannot identify holds it (an instance whose marker was lost?); find it with `ss -ltnp 'sport = :{port}'` on {host}, stop it, then run berth again"
    )
}

/// Runs a backend's verify_cmd while the host lock is being taken: verify_cmd only reads the
/// host, and the models there wait for both.
async fn verify(ctx: &Ctx<'_>, change: &ResourceChange) -> Result<(), Outcome> {
    let transport = connect(ctx, &change.address, &change.host).await?;
    let (held, verified) = tokio::join!(
        hold(ctx, &change.host),
        run_verify_cmd(ctx, change, transport.as_ref())
    );
    held?;
    let verified = match verified {
        Ok(v) => v,
        Err(o) => return Err(blame_lost_lock(ctx, &change.host, o).await),
    };
    match verified {
        Some(record) => ctx
            .emit(ApplyEvent::Record(record))
            .map_err(|e| failed(Step::Record, e)),
        None => Ok(()),
    }
}

/// Runs the verify_cmd of a backend on a host; the record to keep when it passed, `None` when
/// the backend has none.
async fn run_verify_cmd(
    ctx: &Ctx<'_>,
    change: &ResourceChange,
    transport: &dyn Transport,
) -> Result<Option<ResourceRecord>, Outcome> {
    let address = &change.address;
    let Some(cmd) = launch::render_verify(&ctx.ws.config, change.address.id(), &change.host) else {
        return Ok(None);
    };
    let cmd = cmd.map_err(|e| failed(Step::Render, e.to_string()))?;
    ctx.phase(address, Phase::Verifying);
    let out = transport
        .exec(Command::new(
            cmd.reveal().to_string(),
            ctx.options.verify_timeout,
        ))
        .await
        .map_err(|e| failed_by(Step::Verify, &e))?;
    if !out.success() {
        let tail = tail(&format!("{}{}", out.stdout_text(), out.stderr_text()), 20);
        let status = out
            .status
            .map_or("a signal".to_string(), |s| format!("status {s}"));
        return Err(Outcome::Failed(
            StepError::new(
                Step::Verify,
                format!("verify_cmd `{}` exited with {status}", cmd.display()),
            )
            .with_tail(Some(launch::scrub(&tail, &ctx.secrets))),
        ));
    }
    Ok(Some(ResourceRecord {
        address: address.clone(),
        kind: ResourceKind::Backend,
        host: change.host.clone(),
        status: ResourceStatus::Ready,
        fingerprint: None,
        attributes: BTreeMap::from([
            ("backend".to_string(), Value::from(change.address.id())),
            ("verify_cmd".to_string(), Value::from(cmd.display())),
            ("verified_at".to_string(), Value::from(now())),
        ]),
        updated_at: now(),
    }))
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
