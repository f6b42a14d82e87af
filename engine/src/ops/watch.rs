//! `watch`: one reconcile cycle at a time over connections kept open between cycles. A cycle
//! reads the state without waiting for its lock, refreshes every host, computes drift and
//! health, and, when asked to heal, repairs drifted resources only (never a config change
//! nobody applied) through the executor, under the state lock taken for the heal alone. Who
//! drives the cycles (their interval, signals, metrics) is the caller's business.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use berth_state::{Address, LockOptions, StateError, Target};
use futures_util::future::join_all;
use serde::Serialize;

use super::apply::{Review, Run};
use super::drift::Unapplied;
use super::health::{check_host, hosts_with_models};
use super::plan::{make_plan, make_plan_from};
use super::request::{Inputs, PlanScope};
use super::snapshot::{Snapshot, snapshot};
use super::stop::{Stop, StopLevel};
use crate::apply::Outcome;
use crate::config::WatchSettings;
use crate::connections::Connections;
use crate::error::{Error, Result};
use crate::output::health::State;
use crate::plan::{Action, Cause, Drift, Operation};
use crate::session::{self, ReadState};
use crate::workspace::Workspace;

/// A watcher: what it watches and whether it heals.
#[derive(Debug, Clone, Default)]
pub struct WatchRequest {
    pub inputs: Inputs,
    /// Repair drifted resources.
    pub heal: bool,
}

/// One host as a cycle saw it.
#[derive(Debug, Clone, Serialize)]
pub struct HostSeen {
    pub host: String,
    pub reachable: bool,
    pub error: Option<String>,
    /// How long probing every model on the host took.
    #[serde(skip)]
    pub probe: Duration,
}

/// One placement as a cycle saw it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSeen {
    pub model: String,
    pub host: String,
    /// The config wants it running (an active placement on an enabled host).
    pub desired: bool,
    pub state: State,
}

/// What became of one drifted resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealResult {
    /// It runs again, as applied.
    Healed,
    /// The heal was tried and failed.
    Failed,
    /// Healed too often within the window: left failed until someone looks.
    Flapping,
    /// Waiting for its backoff before the next heal.
    Backoff,
    /// Another berth held the state lock; the next cycle tries again.
    LockBusy,
}

impl HealResult {
    /// The result as metrics and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            HealResult::Healed => "healed",
            HealResult::Failed => "failed",
            HealResult::Flapping => "flapping",
            HealResult::Backoff => "backoff",
            HealResult::LockBusy => "lock_busy",
        }
    }

    /// Every result, for metrics that show each one from the start.
    pub const ALL: [HealResult; 5] = [
        HealResult::Healed,
        HealResult::Failed,
        HealResult::Flapping,
        HealResult::Backoff,
        HealResult::LockBusy,
    ];
}

/// One heal decision.
#[derive(Debug, Clone, Serialize)]
pub struct Heal {
    pub address: Address,
    pub host: String,
    pub result: HealResult,
    pub detail: String,
}

/// A selection as the state holds it.
#[derive(Debug, Clone, Serialize)]
pub struct SelectionSeen {
    pub group: String,
    pub host: String,
    pub model: String,
}

/// What one cycle saw and did.
#[derive(Debug, Clone, Serialize)]
pub struct Cycle {
    #[serde(skip)]
    pub finished_at: SystemTime,
    #[serde(skip)]
    pub duration: Duration,
    pub hosts: Vec<HostSeen>,
    pub models: Vec<ModelSeen>,
    /// What differs on the hosts from what was applied.
    pub drift: Vec<Drift>,
    /// Config changes nobody applied: reported, never healed.
    pub unapplied: Vec<Unapplied>,
    pub heals: Vec<Heal>,
    pub selections: Vec<SelectionSeen>,
    /// Another berth holding the state lock when the cycle read it.
    pub lock_holder: Option<String>,
    /// What kept the cycle from seeing everything.
    pub errors: Vec<String>,
}

/// The heals of one resource, for flapping protection.
#[derive(Debug, Default)]
struct HealLog {
    /// When each heal within the window was tried.
    tried: VecDeque<Instant>,
}

/// A long-lived watcher: its connections outlive cycles, as does what it knows of recent heals.
pub struct Watcher {
    req: WatchRequest,
    conns: Connections,
    heals: HashMap<Address, HealLog>,
}

impl Watcher {
    /// A watcher of the config in `req.inputs`; connects to nothing yet.
    pub fn new(req: WatchRequest) -> Result<Self> {
        let conns = Self::connections(&req.inputs)?;
        Ok(Watcher {
            req,
            conns,
            heals: HashMap::new(),
        })
    }

    /// Reads the config again; hosts whose connection settings may have changed are connected
    /// anew on next use. What is known of recent heals is kept.
    pub fn reload(&mut self) -> Result<()> {
        self.conns = Self::connections(&self.req.inputs)?;
        Ok(())
    }

    fn connections(inputs: &Inputs) -> Result<Connections> {
        let loaded = crate::config::load(&inputs.dir, &inputs.vars)
            .map_err(|invalid| Error::InvalidConfig(Box::new(invalid)))?;
        Ok(Connections::new(&loaded.config))
    }

    /// Runs one cycle. A stop asked for during a heal lets the running steps finish.
    pub async fn cycle(&mut self, stop: &Stop) -> Result<Cycle> {
        let started = Instant::now();
        let snap = read_state(&self.req.inputs)?;
        let ws = &snap.ws;
        let settings = ws.config.settings.watch;
        let mut errors = snap.warnings.clone();
        let (drift, unapplied, failed, unobserved) = match &snap.view {
            Some(view) => {
                let plan = make_plan_from(
                    ws,
                    view,
                    &self.conns,
                    Operation::Apply,
                    &PlanScope::default(),
                    stop,
                )
                .await?;
                errors.extend(
                    plan.warnings
                        .iter()
                        .filter(|w| w.contains("could not be observed"))
                        .cloned(),
                );
                let unapplied = plan
                    .changes()
                    .filter(|r| !matches!(r.cause, Cause::Drift | Cause::Failed))
                    .map(|r| Unapplied {
                        address: r.address.clone(),
                        action: r.action,
                        reason: r.reason.clone(),
                    })
                    .collect();
                // A resource whose last heal failed is still this watcher's to heal.
                let failed: Vec<(Address, String)> = plan
                    .changes()
                    .filter(|r| r.cause == Cause::Failed && self.heals.contains_key(&r.address))
                    .map(|r| (r.address.clone(), r.host.clone()))
                    .collect();
                (plan.drift, unapplied, failed, plan.unobserved_hosts)
            }
            None => (Vec::new(), Vec::new(), Vec::new(), Vec::new()),
        };
        let hosts = hosts_with_models(ws);
        let conns = &self.conns;
        let checked = join_all(hosts.iter().map(|h| async move {
            let t = Instant::now();
            let (host, _) = check_host(ws, conns, h, None, false).await;
            (host, t.elapsed())
        }))
        .await;
        let mut seen_hosts = Vec::new();
        let mut states: BTreeMap<(String, String), State> = BTreeMap::new();
        for (host, probe) in checked {
            for m in &host.models {
                states.insert((m.model.clone(), host.host.clone()), m.state);
            }
            // A connection that was open may have failed the refresh but still be handed out
            // until its next command reconnects: the refresh's verdict counts too.
            let refreshed = !unobserved.contains(&host.host);
            let error = host.error.or_else(|| {
                (!refreshed).then(|| format!("host {} could not be observed", host.host))
            });
            seen_hosts.push(HostSeen {
                reachable: host.reachable && refreshed,
                host: host.host,
                error,
                probe,
            });
        }
        let enabled: Vec<&str> = ws
            .config
            .hosts
            .iter()
            .filter(|h| h.enabled)
            .map(|h| h.id.value.as_str())
            .collect();
        let models = ws
            .placements
            .iter()
            .map(|p| ModelSeen {
                model: p.model.clone(),
                host: p.host.clone(),
                desired: p.active && enabled.contains(&p.host.as_str()),
                state: states
                    .get(&(p.model.clone(), p.host.clone()))
                    .copied()
                    .unwrap_or(State::Down),
            })
            .collect();
        let selections = snap
            .view
            .as_ref()
            .map(|v| {
                v.selections
                    .iter()
                    .map(|s| SelectionSeen {
                        group: s.group.clone(),
                        host: s.host.clone(),
                        model: s.model.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let lock_holder = snap.holder.as_ref().map(ToString::to_string);
        let mut candidates: Vec<(Address, String)> = drift
            .iter()
            .map(|d| (d.address.clone(), d.host.clone()))
            .chain(failed)
            .collect();
        candidates.sort();
        candidates.dedup();
        let heals = if self.req.heal && !candidates.is_empty() && stop.level().is_none() {
            self.heal(candidates, settings, stop).await
        } else {
            Vec::new()
        };
        // Forget heals that fell out of the window, so a resource that stayed healthy long
        // enough starts with a clean slate.
        let now = Instant::now();
        self.heals.retain(|_, log| {
            while log
                .tried
                .front()
                .is_some_and(|t| now.duration_since(*t) > settings.heal_window)
            {
                log.tried.pop_front();
            }
            !log.tried.is_empty()
        });
        Ok(Cycle {
            finished_at: SystemTime::now(),
            duration: started.elapsed(),
            hosts: seen_hosts,
            models,
            drift,
            unapplied,
            heals,
            selections,
            lock_holder,
            errors,
        })
    }

    /// Heals what `candidates` name, as far as flapping protection allows, under the state
    /// lock; the plan is made again under the lock, so a resource another watcher healed
    /// meanwhile is left alone.
    async fn heal(
        &mut self,
        candidates: Vec<(Address, String)>,
        settings: WatchSettings,
        stop: &Stop,
    ) -> Vec<Heal> {
        let now = Instant::now();
        let mut outcomes = Vec::new();
        let mut due = Vec::new();
        for (address, host) in candidates {
            let log = self.heals.entry(address.clone()).or_default();
            let recent = log
                .tried
                .iter()
                .filter(|t| now.duration_since(**t) <= settings.heal_window)
                .count();
            if recent >= settings.max_heals as usize {
                outcomes.push(Heal {
                    address,
                    host,
                    result: HealResult::Flapping,
                    detail: format!(
                        "healed {recent} times within {}s: left as it is until someone looks (`berth drift`, `berth apply`)",
                        settings.heal_window.as_secs()
                    ),
                });
                continue;
            }
            if let Some(last) = log.tried.back() {
                let wait = settings
                    .heal_backoff
                    .saturating_mul(1 << (recent.saturating_sub(1)).min(16));
                if now.duration_since(*last) < wait {
                    outcomes.push(Heal {
                        address,
                        host,
                        result: HealResult::Backoff,
                        detail: format!(
                            "next heal in {}s",
                            (wait - now.duration_since(*last)).as_secs()
                        ),
                    });
                    continue;
                }
            }
            due.push((address, host));
        }
        if due.is_empty() {
            return outcomes;
        }
        let inputs = &self.req.inputs;
        let lock = LockOptions {
            timeout: inputs.lock.timeout,
            force: false,
        };
        let p = match session::prepare(&inputs.dir, &inputs.vars, "heal", &lock, &inputs.notices) {
            Ok(p) => p,
            Err(e) => {
                let (result, detail) = match &e {
                    Error::State(StateError::Locked { holder, .. }) => (
                        HealResult::LockBusy,
                        format!("the state is locked by {holder}"),
                    ),
                    other => (HealResult::Failed, other.to_string()),
                };
                outcomes.extend(due.into_iter().map(|(address, host)| Heal {
                    address,
                    host,
                    result,
                    detail: detail.clone(),
                }));
                return outcomes;
            }
        };
        let scope = PlanScope {
            refresh: true,
            targets: due
                .iter()
                .map(|(a, _)| Target::Address(a.clone()))
                .collect(),
            replace: Vec::new(),
        };
        let mut plan = match make_plan(&p, &self.conns, Operation::Apply, &scope, stop).await {
            Ok(plan) => plan,
            Err(e) => {
                outcomes.extend(due.into_iter().map(|(address, host)| Heal {
                    address,
                    host,
                    result: HealResult::Failed,
                    detail: e.to_string(),
                }));
                return outcomes;
            }
        };
        // Only what drifted, or what this watcher's last heal left failed, is carried out: a
        // config change waits for a reviewed apply even on a resource that also drifted.
        let wanted: Vec<&Address> = due.iter().map(|(a, _)| a).collect();
        for r in &mut plan.resources {
            let ours = wanted.contains(&&r.address)
                && (r.cause == Cause::Drift
                    || (r.cause == Cause::Failed && self.heals.contains_key(&r.address)));
            if !ours {
                r.action = Action::NoOp;
            }
        }
        let healing: Vec<Address> = plan
            .resources
            .iter()
            .filter(|r| r.action != Action::NoOp)
            .map(|r| r.address.clone())
            .collect();
        for address in &healing {
            self.heals
                .entry(address.clone())
                .or_default()
                .tried
                .push_back(now);
        }
        let heal_stop = Stop::new();
        let run = Run {
            p: &p,
            conns: &self.conns,
            approved: true,
            parallelism: None,
            review: &Unattended,
            subscribers: &[],
            stop: &heal_stop,
            history_name: Some("heal"),
        };
        // A drain (SIGTERM) lets the heal finish with the cycle; only a cancel cuts it short.
        let forward = async {
            stop.cancelled().await;
            heal_stop.cancel(stop.reason(StopLevel::Cancel));
            std::future::pending::<()>().await;
        };
        let applied = tokio::select! {
            applied = run.carry_out(plan) => applied,
            () = forward => unreachable!("pending never resolves"),
        };
        drop(p);
        let results: HashMap<Address, (HealResult, String)> = match applied {
            Ok(applied) => applied
                .report
                .map(|report| {
                    report
                        .results
                        .into_iter()
                        .map(|r| {
                            let outcome = match r.outcome {
                                Outcome::Done { .. } => (HealResult::Healed, String::new()),
                                Outcome::Failed(e) => (HealResult::Failed, e.to_string()),
                                Outcome::Skipped { because } => (HealResult::Failed, because),
                                Outcome::Cancelled => (HealResult::Failed, "cancelled".to_string()),
                            };
                            (r.address, outcome)
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) => healing
                .iter()
                .map(|a| (a.clone(), (HealResult::Failed, e.to_string())))
                .collect(),
        };
        // A resource missing from the results was not drifted any more once the lock was held
        // (another watcher healed it), or its drift was a config change after all: nothing
        // was done to it.
        for (address, host) in due {
            if let Some((result, detail)) = results.get(&address) {
                outcomes.push(Heal {
                    address,
                    host,
                    result: *result,
                    detail: detail.clone(),
                });
            }
        }
        outcomes
    }
}

/// The config placed against the state's last committed snapshot, read without the lock and
/// without opening the store: a watcher reads the state every cycle, and an embedded store
/// opened and closed that often keeps memory it never gives back. A state without a snapshot
/// yet is read as the read-only commands read it.
fn read_state(inputs: &Inputs) -> Result<Snapshot> {
    let loaded = crate::config::load(&inputs.dir, &inputs.vars)
        .map_err(|invalid| Error::InvalidConfig(Box::new(invalid)))?;
    let state = loaded.config.settings.state(&loaded.config.dir);
    let backend = session::backend(&state)?;
    let Some(snapshot) = backend.snapshot()? else {
        return snapshot(inputs, "watch");
    };
    let held_by = backend.holder().ok().flatten();
    let read = ReadState { snapshot, held_by };
    let view = read.view();
    let ws = Workspace::from_loaded(loaded, &view.previous())?;
    Ok(Snapshot {
        ws,
        view: Some(view),
        holder: read.held_by,
        warnings: Vec::new(),
    })
}

/// A heal is approved by running `watch --heal`; nothing is shown.
struct Unattended;

impl Review for Unattended {}
