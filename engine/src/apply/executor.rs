//! The executor: walks a plan's resources on tokio, at most `parallelism` at once, each after
//! what it depends on, destroys before everything else. One dispatcher loop owns scheduling,
//! results and Ctrl-C; the steps themselves only emit events. It never prints.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use berth_providers::probe::{self, GateTiming};
use berth_providers::{Command, Handle, LaunchSpec, Liveness, ProviderError, Runtime, Transport};
use berth_state::{ResourceKind, ResourceRecord, ResourceStatus};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::events::{ApplyEvent, Outcome, Phase, Subscriber};
use crate::connections::{Connections, HostLockGuard, error_text};
use crate::launch::{self, Rendered};
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
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 10,
            stop_grace: Duration::from_secs(10),
            verify_timeout: Duration::from_secs(120),
            holder: None,
            owner: String::new(),
        }
    }
}

/// How one resource's action ended.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeResult {
    pub address: String,
    pub host: String,
    pub action: Action,
    pub outcome: Outcome,
}

/// Every resource's outcome.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    pub results: Vec<NodeResult>,
    /// The user pressed Ctrl-C.
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
            .filter(|r| matches!(r.outcome, Outcome::Failed { .. }))
    }

    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.results.iter().filter(|r| f(&r.outcome)).count()
    }
}

/// What every step needs.
struct Ctx<'a> {
    ws: &'a Workspace,
    conns: &'a Connections,
    key: &'a [u8],
    secrets: Vec<&'a str>,
    subscribers: &'a [&'a dyn Subscriber],
    placements: HashMap<String, &'a Placement>,
    previous: &'a BTreeMap<String, ResourceRecord>,
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
    host_locks: HashMap<&'a str, OnceCell<Result<HostLockGuard, String>>>,
}

impl Ctx<'_> {
    /// Tells every subscriber; the first error (a state write that failed) is returned.
    fn emit(&self, event: ApplyEvent) -> Result<(), String> {
        for s in self.subscribers {
            s.on_event(&event)?;
        }
        Ok(())
    }

    fn phase(&self, address: &str, phase: Phase) {
        let _ = self.emit(ApplyEvent::Phase {
            address: address.to_string(),
            phase,
        });
    }
}

type Step<'a> = Pin<Box<dyn Future<Output = (usize, Outcome)> + 'a>>;

/// Carries out `plan` and reports every resource's outcome.
pub async fn execute(
    ws: &Workspace,
    plan: &Plan,
    conns: &Connections,
    hmac_key: &[u8],
    previous: &BTreeMap<String, ResourceRecord>,
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
        cancel: CancellationToken::new(),
        winding_down: CancellationToken::new(),
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
    let mut running: FuturesUnordered<Step<'_>> = FuturesUnordered::new();
    let mut interrupts = signal(SignalKind::interrupt()).ok();
    let mut terms = signal(SignalKind::terminate()).ok();
    // A closed terminal is a request to stop like any other, never a reason to die mid-step.
    let mut hangups = signal(SignalKind::hangup()).ok();
    let mut stopping = false;

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
                    Some(Outcome::Failed { .. } | Outcome::Skipped { .. } | Outcome::Cancelled)
                )
            }) {
                // A host berth cannot reach fails every step there, each recorded, and so does
                // a host whose lock another berth holds (nothing there was touched: nothing is
                // recorded). Anything else that did not finish only holds back what depends on it.
                if let Some(Outcome::Failed { step, reason, .. }) = &outcome[bad]
                    && (step == "connect" || step == HOST_LOCK)
                    && work[bad].host == work[i].host
                {
                    let o = failed(step, reason.clone(), None);
                    let o = if step == "connect"
                        && work[i].kind == Kind::Model
                        && matches!(
                            work[i].action,
                            Action::Create | Action::Replace | Action::Reuse
                        ) {
                        record_failure(&ctx, work[i], None, o)
                    } else {
                        o
                    };
                    let _ = ctx.emit(ApplyEvent::Finished {
                        address: work[i].address.clone(),
                        action: work[i].action,
                        outcome: o.clone(),
                    });
                    outcome[i] = Some(o);
                    continue;
                }
                let because = format!("{} did not finish", work[bad].address);
                let o = Outcome::Skipped { because };
                let _ = ctx.emit(ApplyEvent::Finished {
                    address: work[i].address.clone(),
                    action: work[i].action,
                    outcome: o.clone(),
                });
                outcome[i] = Some(o);
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
            Some((i, o)) = running.next() => {
                let _ = ctx.emit(ApplyEvent::Finished { address: work[i].address.clone(), action: work[i].action, outcome: o.clone() });
                outcome[i] = Some(o);
            }
            Some(()) = recv(&mut interrupts), if interrupts.is_some() => interrupt(&ctx, &mut stopping),
            Some(()) = recv(&mut terms), if terms.is_some() => interrupt(&ctx, &mut stopping),
            Some(()) = recv(&mut hangups), if hangups.is_some() => interrupt(&ctx, &mut stopping),
        }
    }

    let results = work
        .iter()
        .zip(outcome)
        .map(|(r, o)| NodeResult {
            address: r.address.clone(),
            host: r.host.clone(),
            action: r.action,
            outcome: o.unwrap_or(Outcome::Cancelled),
        })
        .collect();
    ApplyReport {
        results,
        interrupted: stopping,
    }
}

async fn recv(sig: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match sig {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// First interrupt: start nothing new. Second: cancel probes now (running commands still end).
fn interrupt(ctx: &Ctx<'_>, stopping: &mut bool) {
    if *stopping {
        ctx.cancel.cancel();
        let _ = ctx.emit(ApplyEvent::Interrupted { hard: true });
    } else {
        *stopping = true;
        ctx.winding_down.cancel();
        let _ = ctx.emit(ApplyEvent::Interrupted { hard: false });
    }
}

fn failed(step: &str, reason: impl Into<String>, log_tail: Option<String>) -> Outcome {
    Outcome::Failed {
        step: step.to_string(),
        reason: reason.into(),
        log_tail,
    }
}

async fn run(ctx: &Ctx<'_>, change: &ResourceChange) -> Outcome {
    // Ready resources all start at once and queue here, first come first served; one that is
    // still queued when the user interrupts never starts.
    let mut slot = tokio::select! {
        biased;
        _ = ctx.winding_down.cancelled() => return Outcome::Cancelled,
        permit = ctx.slots.acquire() => match permit {
            Ok(permit) => Some(permit),
            Err(_) => return Outcome::Cancelled,
        },
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
            .map_err(|e| failed("record", e, None)),
        (kind, action) => Err(failed(
            "plan",
            format!("berth cannot {} a {kind:?} resource", action.as_str()),
            None,
        )),
    };
    match result {
        Ok(()) => Outcome::Done {
            elapsed: started.elapsed(),
        },
        Err(o) => o,
    }
}

/// The step name of a failure to take a host lock.
const HOST_LOCK: &str = "host lock";

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
            taken
        })
        .await
        .as_ref()
        .map_err(|why| failed(HOST_LOCK, why.clone(), None))?;
    match guard.lost_reason() {
        Some(why) => Err(failed(HOST_LOCK, why, None)),
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
        Outcome::Failed { step, log_tail, .. } if step != HOST_LOCK => {
            match lock_lost_after_failure(ctx, host).await {
                Some(why) => failed(HOST_LOCK, why, log_tail.clone()),
                None => outcome,
            }
        }
        _ => outcome,
    }
}

async fn connect(
    ctx: &Ctx<'_>,
    address: &str,
    host: &str,
) -> Result<std::sync::Arc<dyn Transport>, Outcome> {
    ctx.phase(address, Phase::Connecting);
    let transport = ctx
        .conns
        .transport(host)
        .await
        .map_err(|e| failed("connect", e, None))?;
    // A host whose lock was lost is not touched again in this apply.
    match lock_lost(ctx, host) {
        Some(why) => Err(failed(HOST_LOCK, why, None)),
        None => Ok(transport),
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
    if let Outcome::Failed { step, reason, .. } = &outcome {
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
                .get(&change.address)
                .map(|r| r.attributes.clone())
                .unwrap_or_default(),
        };
        let record = ResourceRecord {
            address: change.address.clone(),
            kind: ResourceKind::Model,
            host: change.host.clone(),
            status: ResourceStatus::Failed {
                step: step.clone(),
                reason: reason.clone(),
            },
            fingerprint: change.fingerprint.clone(),
            attributes,
            updated_at: now(),
        };
        if let Err(e) = ctx.emit(ApplyEvent::Record(record)) {
            return failed("record", e, None);
        }
    }
    outcome
}

async fn deploy<'c>(
    ctx: &'c Ctx<'_>,
    change: &ResourceChange,
    slot: &mut Option<SemaphorePermit<'c>>,
) -> Result<(), Outcome> {
    let address = change.address.as_str();
    let transport = match connect(ctx, address, &change.host).await {
        Ok(t) => t,
        Err(o) => return Err(record_failure(ctx, change, None, o)),
    };
    hold(ctx, &change.host).await?;
    let Some(placement) = ctx.placements.get(address) else {
        return Err(failed(
            "plan",
            "the config no longer places this model here: plan again",
            None,
        ));
    };
    let rendered = launch::render(&ctx.ws.config, placement)
        .map_err(|e| failed("render", e.to_string(), None))?;
    if change.fingerprint.as_deref() != Some(rendered.fingerprint(ctx.key).as_str()) {
        return Err(failed(
            "plan",
            "the launch changed since the plan was made (config or variables): plan again",
            None,
        ));
    }
    let runtime = ctx
        .conns
        .runtime(rendered.runtime.as_str())
        .map_err(|e| failed("runtime", e, None))?;
    let spec = rendered.launch_spec(
        &ctx.options.owner,
        change.fingerprint.as_deref().unwrap_or_default(),
    );
    ctx.emit(ApplyEvent::Intent {
        address: address.to_string(),
        action: change.action,
    })
    .map_err(|e| failed("record", e, None))?;
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
                address: address.to_string(),
                kind: ResourceKind::Model,
                host: change.host.clone(),
                status: ResourceStatus::Ready,
                fingerprint: change.fingerprint.clone(),
                attributes,
                updated_at: now(),
            };
            ctx.emit(ApplyEvent::Record(record))
                .map_err(|e| failed("record", e, None))
        }
        Err(o) => {
            let o = blame_lost_lock(ctx, &change.host, o).await;
            Err(record_failure(ctx, change, Some(&rendered), o))
        }
    };
    let _ = ctx.emit(ApplyEvent::IntentDone {
        address: address.to_string(),
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
    let address = change.address.as_str();
    let text = |e: &berth_providers::ProviderError| error_text(e);
    let mut instance = None;
    if change.action == Action::Reuse {
        let seen = runtime
            .observe(transport, &spec.run_dir, address)
            .await
            .map_err(|e| failed("observe", text(&e), None))?;
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
                .map_err(|e| failed("adopt", text(&e), None))?;
        }
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
                failed("stop", stop_error(address, port, &e), None)
            })?;
        if old_run_dir != spec.run_dir {
            runtime
                .stop(transport, &spec.run_dir, address, ctx.options.stop_grace)
                .await
                .map_err(|e| failed("stop", text(&e), None))?;
        }
        if port_accepts(transport, spec.port).await {
            return Err(failed(
                "stop",
                port_held(address, transport.host(), spec.port),
                None,
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
                let permit = tokio::select! {
                    biased;
                    _ = ctx.winding_down.cancelled() => return Err(Outcome::Cancelled),
                    permit = starts.acquire() => permit.map_err(|_| Outcome::Cancelled)?,
                };
                if slot.is_none() {
                    *slot = Some(tokio::select! {
                        biased;
                        _ = ctx.winding_down.cancelled() => return Err(Outcome::Cancelled),
                        permit = ctx.slots.acquire() => permit.map_err(|_| Outcome::Cancelled)?,
                    });
                }
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
                .map_err(|e| failed("start", text(&e), None))?
        }
    };
    let timing = match (rendered.probe_timeout_sec, rendered.probe_interval_ms) {
        (Some(t), Some(i)) => GateTiming {
            timeout: Duration::from_secs(t),
            interval: Duration::from_millis(i),
        },
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
            GateTiming {
                timeout: t.map_or(d.timeout, Duration::from_secs),
                interval: i.map_or(d.interval, Duration::from_millis),
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
        return Err(failed(HOST_LOCK, why, None));
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
                ctx.phase(address, Phase::Stopping);
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
            let step = if cancelled {
                "probe (cancelled)"
            } else {
                "probe"
            };
            return Err(failed(step, error_text(&e), tail));
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
    attributes.insert(
        "ready_after_ms".into(),
        Value::from(ready.elapsed.as_millis() as u64),
    );
    Ok(attributes)
}

fn update(ctx: &Ctx<'_>, change: &ResourceChange) -> Result<(), Outcome> {
    let Some(previous) = ctx.previous.get(&change.address) else {
        return Err(failed("record", "no record to update: plan again", None));
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
        .map_err(|e| failed("record", e, None))
}

async fn destroy_model(ctx: &Ctx<'_>, change: &ResourceChange) -> Result<(), Outcome> {
    let address = change.address.as_str();
    let transport = connect(ctx, address, &change.host).await?;
    hold(ctx, &change.host).await?;
    let recorded = ctx.previous.get(address);
    let run_dir = recorded
        .and_then(|r| r.attributes.get("run_dir"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| ctx.ws.config.host(&change.host).map(|h| h.run_dir.clone()))
        .ok_or_else(|| failed("stop", "the host's run_dir is unknown", None))?;
    // The runtime the record names; an instance found on the host without a record is stopped
    // by whichever runtime observes it there.
    let runtime = match recorded {
        Some(record) => Some(recorded_runtime(ctx, record)?),
        None => finder(ctx, transport.as_ref(), &run_dir, address).await?,
    };
    ctx.emit(ApplyEvent::Intent {
        address: address.to_string(),
        action: Action::Destroy,
    })
    .map_err(|e| failed("record", e, None))?;
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
            failed("stop", stop_error(address, port, &e), None),
        )
        .await),
        // What berth knew of is stopped, but something still serves the model's port: most
        // likely an instance whose marker was lost. The record stays, so it is not forgotten.
        (Ok(()), Some(port)) if port_accepts(transport.as_ref(), port).await => {
            Err(failed("stop", port_held(address, &change.host, port), None))
        }
        (Ok(()), _) => ctx
            .emit(ApplyEvent::Forget {
                address: address.to_string(),
            })
            .map_err(|e| failed("record", e, None)),
    };
    let _ = ctx.emit(ApplyEvent::IntentDone {
        address: address.to_string(),
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
            "runtime",
            format!(
                "the state's record of {} names no runtime, so berth cannot tell what runs it; stop the server by hand, then run `berth state rm {}`",
                record.address, record.address
            ),
            None,
        ));
    };
    ctx.conns
        .runtime(name)
        .map_err(|e| failed("runtime", e, None))
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
            .map_err(|e| failed("observe", error_text(&e), None))?;
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
            .map_err(|e| failed("record", e, None)),
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
    let address = change.address.as_str();
    let backend = address
        .strip_prefix("backend.")
        .and_then(|a| a.split_once('@'))
        .map(|(b, _)| b)
        .unwrap_or_default();
    let Some(cmd) = launch::render_verify(&ctx.ws.config, backend, &change.host) else {
        return Ok(None);
    };
    let cmd = cmd.map_err(|e| failed("render", e.to_string(), None))?;
    ctx.phase(address, Phase::Verifying);
    let out = transport
        .exec(Command::new(
            cmd.reveal().to_string(),
            ctx.options.verify_timeout,
        ))
        .await
        .map_err(|e| failed("verify", error_text(&e), None))?;
    if !out.success() {
        let tail = tail(&format!("{}{}", out.stdout_text(), out.stderr_text()), 20);
        let status = out
            .status
            .map_or("a signal".to_string(), |s| format!("status {s}"));
        return Err(failed(
            "verify",
            format!("verify_cmd `{}` exited with {status}", cmd.display()),
            Some(launch::scrub(&tail, &ctx.secrets)),
        ));
    }
    Ok(Some(ResourceRecord {
        address: address.to_string(),
        kind: ResourceKind::Backend,
        host: change.host.clone(),
        status: ResourceStatus::Ready,
        fingerprint: None,
        attributes: BTreeMap::from([
            ("backend".to_string(), Value::from(backend)),
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
