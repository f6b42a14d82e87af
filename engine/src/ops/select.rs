//! `select`: make one member of a model group the running one on its hosts. The switch is a
//! plan (stop the other members, then start the selected one, or reuse it after a probe)
//! carried out by the apply executor; a host where the new member fails its gate gets its
//! previous member back by a second plan, gated too. The selection is stored in the state,
//! where placement reads it, so later plans keep it. `select status` reads without waiting for
//! the lock. Never prints: the caller reviews the plans and subscribes to the events.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use berth_providers::{Liveness, ProbeOutcome};
use berth_state::{
    Address, HistoryChange, HistoryEntry, LockInfo, ResourceKind, ResourceStatus, Selection, Target,
};
use serde_json::Value;

use super::apply::Review;
use super::request::Inputs;
use super::snapshot::snapshot;
use super::stop::{Stop, StopLevel};
use crate::apply::{self, ApplyOptions, ApplyReport, Outcome, StateWriter, StepError, Subscriber};
use crate::config::did_you_mean;
use crate::connections::Connections;
use crate::error::{Error, Result};
use crate::placement::Previous;
use crate::plan::{
    self as planner, Action, HostObservation, Observations, Operation, Plan, PlanOptions, StateView,
};
use crate::refresh;
use crate::session::{self, Prepared};
use crate::workspace::Workspace;

/// How long a stopping member gets between TERM and KILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a backend's verify_cmd may run.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(120);

/// A switch of a group's running member.
#[derive(Debug, Clone, Default)]
pub struct SelectRequest {
    pub inputs: Inputs,
    /// The model to run.
    pub model: String,
    /// Stop and start the model even when it runs and answers already.
    pub restart: bool,
    /// Make and return the plan; change nothing.
    pub dry_run: bool,
    /// Resource operations in flight at once; `None`: `settings.parallelism`.
    pub parallelism: Option<usize>,
}

/// How the switch on one host ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchOutcome {
    /// A dry run: the plan says what would happen.
    Planned,
    /// The selected model runs and passed its probe.
    Switched,
    /// The selected model failed and nothing ran before it to go back to.
    Failed,
    /// The selected model failed; the previous member runs and passed its probe again.
    RolledBack,
    /// The selected model failed, and so did the previous member when started again.
    RollbackFailed,
    /// The switch was interrupted before it finished.
    Cancelled,
}

impl SwitchOutcome {
    /// The outcome as documents and the history name it.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchOutcome::Planned => "planned",
            SwitchOutcome::Switched => "switched",
            SwitchOutcome::Failed => "failed",
            SwitchOutcome::RolledBack => "rolled_back",
            SwitchOutcome::RollbackFailed => "rollback_failed",
            SwitchOutcome::Cancelled => "cancelled",
        }
    }
}

/// The switch on one host.
#[derive(Debug, Clone)]
pub struct HostSwitch {
    pub host: String,
    /// The member that ran before the switch, if one did.
    pub from: Option<String>,
    /// The selected member.
    pub to: String,
    pub outcome: SwitchOutcome,
    /// Why the selected member failed, with its log tail.
    pub failure: Option<StepError>,
    /// Why the previous member failed to start again.
    pub rollback_failure: Option<StepError>,
    /// From the start of the switch to its end on this host (rollback included).
    pub elapsed: Duration,
}

/// What a select did.
#[derive(Debug, Clone)]
pub struct Selected {
    pub model: String,
    pub group: String,
    /// The switch, as carried out (or, for a dry run, as it would be).
    pub plan: Plan,
    /// The plan that brought the previous members back, when one was needed.
    pub rollback: Option<Plan>,
    pub hosts: Vec<HostSwitch>,
}

impl Selected {
    /// True when every host runs the selected model (or, for a dry run, always).
    pub fn succeeded(&self) -> bool {
        self.hosts
            .iter()
            .all(|h| matches!(h.outcome, SwitchOutcome::Switched | SwitchOutcome::Planned))
    }
}

/// Makes `req.model` the running member of its group on each host it is placed on.
pub async fn select(
    req: &SelectRequest,
    review: &dyn Review,
    subscribers: &[&dyn Subscriber],
    stop: &Stop,
) -> Result<Selected> {
    let started = Instant::now();
    let started_at = crate::now();
    let p = session::prepare(
        &req.inputs.dir,
        &req.inputs.vars,
        "select",
        &req.inputs.lock,
        &req.inputs.notices,
    )?;
    let group = group_of(&p.ws, &req.model)?;
    let members = members(&p.ws, &group);
    let hosts: Vec<String> =
        p.ws.placements_of(&req.model)
            .map(|pl| pl.host.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
    let from: BTreeMap<String, Option<String>> = hosts
        .iter()
        .map(|h| (h.clone(), running_member(&p, &members, h)))
        .collect();

    let conns = Connections::new(&p.ws.config);
    let chosen: Vec<(String, String)> = hosts
        .iter()
        .map(|h| (h.clone(), req.model.clone()))
        .collect();
    let replace: Vec<Target> = if req.restart {
        hosts
            .iter()
            .map(|h| Target::Address(Address::model(&req.model, h)))
            .collect()
    } else {
        Vec::new()
    };
    let (ws, plan) = switch_plan(
        &req.inputs,
        &p,
        &conns,
        &group,
        &members,
        &chosen,
        &req.model,
        &replace,
        stop,
    )
    .await?;
    review.show(&plan);
    if req.dry_run {
        return Ok(Selected {
            model: req.model.clone(),
            group,
            plan,
            rollback: None,
            hosts: hosts
                .iter()
                .map(|h| HostSwitch {
                    host: h.clone(),
                    from: from[h].clone(),
                    to: req.model.clone(),
                    outcome: SwitchOutcome::Planned,
                    failure: None,
                    rollback_failure: None,
                    elapsed: Duration::ZERO,
                })
                .collect(),
        });
    }

    let report = carry_out(&p, &ws, &conns, &plan, req.parallelism, subscribers, stop).await;
    let mut switches: Vec<HostSwitch> = hosts
        .iter()
        .map(|h| {
            let (outcome, failure) = host_result(&report, &Address::model(&req.model, h), h);
            HostSwitch {
                host: h.clone(),
                from: from[h].clone(),
                to: req.model.clone(),
                outcome,
                failure,
                rollback_failure: None,
                elapsed: started.elapsed(),
            }
        })
        .collect();
    let mut changes = history_changes(&report);

    // Hosts where the selected member failed get their previous member back.
    let back: Vec<(String, String)> = switches
        .iter()
        .filter(|s| s.outcome == SwitchOutcome::Failed)
        .filter_map(|s| Some((s.host.clone(), s.from.clone().filter(|m| *m != s.to)?)))
        .collect();
    let mut rollback = None;
    if !back.is_empty() && stop.level().is_none() {
        let p = reopen(p)?;
        let (ws, plan) = switch_plan(
            &req.inputs,
            &p,
            &conns,
            &group,
            &members,
            &back,
            "",
            &[],
            stop,
        )
        .await?;
        review.show(&plan);
        let report = carry_out(&p, &ws, &conns, &plan, req.parallelism, subscribers, stop).await;
        for (host, member) in &back {
            let Some(s) = switches.iter_mut().find(|s| &s.host == host) else {
                continue;
            };
            let (outcome, failure) = host_result(&report, &Address::model(member, host), host);
            s.outcome = match outcome {
                SwitchOutcome::Switched => SwitchOutcome::RolledBack,
                _ => SwitchOutcome::RollbackFailed,
            };
            s.rollback_failure = failure;
            s.elapsed = started.elapsed();
        }
        changes.extend(history_changes(&report));
        rollback = Some(plan);
        record(&p, &group, &switches, changes, started_at)?;
    } else {
        record(&p, &group, &switches, changes, started_at)?;
    }
    Ok(Selected {
        model: req.model.clone(),
        group,
        plan,
        rollback,
        hosts: switches,
    })
}

/// The group of model `id`; an error when it is unknown, disabled or in no group.
fn group_of(ws: &Workspace, id: &str) -> Result<String> {
    let enabled: Vec<&str> = ws
        .config
        .models
        .iter()
        .filter(|m| m.enabled)
        .map(|m| m.id.value.as_str())
        .collect();
    let model = ws.config.model(id).filter(|m| m.enabled);
    let Some(model) = model else {
        let disabled = ws.config.model(id).is_some();
        return Err(Error::ModelNotFound {
            id: id.to_string(),
            help: not_found_help(id, &enabled, disabled),
        });
    };
    match &model.group {
        Some(g) => Ok(g.value.clone()),
        None => Err(Error::NotGrouped { id: id.to_string() }),
    }
}

fn not_found_help(id: &str, enabled: &[&str], disabled: bool) -> String {
    let mut help = String::new();
    if disabled {
        help.push_str(&format!(
            "`{id}` is disabled (enabled = false); enable it in the config to select it. "
        ));
    } else if let Some(close) = did_you_mean(id, enabled.iter().copied()) {
        help.push_str(&format!("did you mean `{close}`? "));
    }
    if enabled.is_empty() {
        help.push_str("the config has no enabled model");
    } else {
        help.push_str(&format!("models in the config: {}", enabled.join(", ")));
    }
    help
}

/// The enabled members of `group`.
fn members(ws: &Workspace, group: &str) -> Vec<String> {
    ws.config
        .models
        .iter()
        .filter(|m| m.enabled && m.group.as_ref().is_some_and(|g| g.value == group))
        .map(|m| m.id.value.clone())
        .collect()
}

/// The member the state records as running on `host`: a ready record first, else the member
/// placement makes active there.
fn running_member(p: &Prepared, members: &[String], host: &str) -> Option<String> {
    let recorded = p.view.records.values().find_map(|r| {
        let model = r.attributes.get("model").and_then(Value::as_str)?;
        (r.kind == ResourceKind::Model
            && r.host == host
            && r.status == ResourceStatus::Ready
            && members.iter().any(|m| m == model))
        .then(|| model.to_string())
    });
    recorded.or_else(|| {
        p.ws.placements_on(host)
            .find(|pl| pl.active && members.contains(&pl.model))
            .filter(|pl| p.view.records.contains_key(pl.address().as_str()))
            .map(|pl| pl.model.clone())
    })
}

/// The config placed with `chosen` (host, member) selected, and the plan that switches those
/// hosts to it: the other members stop, the chosen one starts, or is reused after a probe when
/// it runs and answers (`selected`: the member the caller asked for, which a failed probe
/// restarts rather than reuses).
#[allow(clippy::too_many_arguments)]
async fn switch_plan(
    inputs: &Inputs,
    p: &Prepared,
    conns: &Connections,
    group: &str,
    members: &[String],
    chosen: &[(String, String)],
    selected: &str,
    replace: &[Target],
    stop: &Stop,
) -> Result<(Workspace, Plan)> {
    let mut previous: Previous = p.view.previous();
    for (host, model) in chosen {
        previous
            .selections
            .insert((group.to_string(), host.clone()), model.clone());
    }
    let ws = Workspace::open(&inputs.dir, &inputs.vars, &previous)?;
    let observed = tokio::select! {
        observed = refresh::refresh(&ws, &p.view, conns) => observed,
        () = stop.cancelled() => {
            return Err(Error::Cancelled { reason: stop.reason(StopLevel::Cancel) });
        }
    };
    let targets: Vec<Target> = chosen
        .iter()
        .flat_map(|(host, _)| members.iter().map(move |m| Address::model(m, host)))
        .map(Target::Address)
        .collect();
    let options = PlanOptions {
        operation: Operation::Apply,
        targets,
        replace: replace.to_vec(),
    };
    let hash = session::config_hash(&ws, &p.view.hmac_key());
    let mut plan = planner::plan(&ws, &p.view, Some(&observed), &options, &hash)?;
    // The switch is the point of the command: the limit is no news.
    plan.warnings.retain(|w| !w.contains("--target"));
    for (host, model) in chosen {
        let address = Address::model(model, host);
        let Some(r) = plan.resources.iter_mut().find(|r| r.address == address) else {
            continue;
        };
        let probe = observed_probe(&observed, host, &address);
        match (r.action, probe) {
            (Action::NoOp, _) => {
                r.action = Action::Reuse;
                r.reason = "runs already: probe it, and keep it if it answers".into();
            }
            (Action::Reuse, Some(outcome))
                if model == selected && !matches!(outcome, ProbeOutcome::Ready) =>
            {
                r.action = Action::Replace;
                r.reason = format!("runs, but its probe says {outcome}: restart it");
            }
            _ => {}
        }
    }
    Ok((ws, plan))
}

/// What refresh's probe said about `address` on `host`, when it ran.
fn observed_probe(observed: &Observations, host: &str, address: &Address) -> Option<ProbeOutcome> {
    match observed.hosts.get(host)? {
        HostObservation::Reached(found) => {
            let found = found.get(address.as_str())?;
            (found.liveness == Liveness::Running)
                .then(|| found.probe.clone())
                .flatten()
        }
        HostObservation::Unreachable(_) => None,
    }
}

/// Carries out a switch plan with the executor, the state written from its events.
async fn carry_out(
    p: &Prepared,
    ws: &Workspace,
    conns: &Connections,
    plan: &Plan,
    parallelism: Option<usize>,
    subscribers: &[&dyn Subscriber],
    stop: &Stop,
) -> ApplyReport {
    let options = ApplyOptions {
        parallelism: parallelism.unwrap_or(ws.config.settings.parallelism),
        stop_grace: STOP_GRACE,
        verify_timeout: VERIFY_TIMEOUT,
        holder: Some(p.session.lock.info().to_string()),
        owner: p.view.meta.lineage.clone(),
        stop: stop.clone(),
    };
    let writer = StateWriter::new(p.session.store.clone());
    let mut all: Vec<&dyn Subscriber> = vec![&writer];
    all.extend_from_slice(subscribers);
    apply::execute(
        ws,
        plan,
        conns,
        &p.view.hmac_key(),
        &p.view.records,
        &all,
        &options,
    )
    .await
}

/// The same state, read again after a plan was carried out.
fn reopen(mut p: Prepared) -> Result<Prepared> {
    p.view = p.session.view()?;
    Ok(p)
}

/// How `address` ended in `report`, and the failure that explains it (its own, or the first
/// one on its host that held it back).
fn host_result(
    report: &ApplyReport,
    address: &Address,
    host: &str,
) -> (SwitchOutcome, Option<StepError>) {
    let own = report
        .results
        .iter()
        .find(|r| r.address == address.as_str());
    let first_failure = || {
        report.results.iter().find_map(|r| match &r.outcome {
            Outcome::Failed(e) if r.host == host => Some(e.clone()),
            _ => None,
        })
    };
    match own.map(|r| &r.outcome) {
        Some(Outcome::Done { .. }) => (SwitchOutcome::Switched, None),
        Some(Outcome::Failed(e)) => (SwitchOutcome::Failed, Some(e.clone())),
        Some(Outcome::Cancelled) => (SwitchOutcome::Cancelled, first_failure()),
        Some(Outcome::Skipped { because }) => (
            SwitchOutcome::Failed,
            first_failure().or_else(|| {
                Some(StepError::new(
                    crate::apply::Step::Plan,
                    format!("skipped: {because}"),
                ))
            }),
        ),
        // Nothing to do for it: it runs (a NoOp never happens for the selected member).
        None if report.interrupted => (SwitchOutcome::Cancelled, None),
        None => (SwitchOutcome::Switched, None),
    }
}

fn history_changes(report: &ApplyReport) -> Vec<HistoryChange> {
    report
        .results
        .iter()
        .map(|r| HistoryChange {
            address: r.address.to_string(),
            action: r.action.as_str().to_string(),
            outcome: match &r.outcome {
                Outcome::Done { .. } => "done".to_string(),
                Outcome::Failed(e) => format!("failed at {}", e.at()),
                Outcome::Skipped { .. } => "skipped".to_string(),
                Outcome::Cancelled => "cancelled".to_string(),
            },
        })
        .collect()
}

/// Stores the selections the switch leaves and its history entry.
fn record(
    p: &Prepared,
    group: &str,
    switches: &[HostSwitch],
    mut changes: Vec<HistoryChange>,
    started_at: u64,
) -> Result<()> {
    let store = &p.session.store;
    let now = crate::now();
    for s in switches {
        let running = match s.outcome {
            SwitchOutcome::Switched => Some(&s.to),
            SwitchOutcome::RolledBack | SwitchOutcome::RollbackFailed => s.from.as_ref(),
            _ => None,
        };
        if let Some(model) = running {
            store.put_selection(&Selection {
                group: group.to_string(),
                host: s.host.clone(),
                model: model.clone(),
                selected_at: now,
            })?;
        }
        let from = s.from.as_deref().unwrap_or("nothing");
        changes.push(HistoryChange {
            address: Address::model(&s.to, &s.host).to_string(),
            action: format!("select (from {from}, group {group})"),
            outcome: match s.outcome {
                SwitchOutcome::Switched => format!("switched in {:.1}s", s.elapsed.as_secs_f64()),
                SwitchOutcome::RolledBack => format!("failed; rolled back to {from}"),
                SwitchOutcome::RollbackFailed => {
                    format!("failed; rollback to {from} failed too")
                }
                other => other.as_str().replace('_', " "),
            },
        });
    }
    let info: &LockInfo = p.session.lock.info();
    let meta = store.meta()?;
    store.append_history(&HistoryEntry {
        serial: meta.serial,
        operation: "select".into(),
        user: info.user.clone(),
        hostname: info.hostname.clone(),
        started_at,
        finished_at: crate::now(),
        changes,
        interrupted: switches
            .iter()
            .any(|s| s.outcome == SwitchOutcome::Cancelled),
    })?;
    store.flush()?;
    Ok(())
}

/// The running member of one group on one host.
#[derive(Debug, Clone)]
pub struct GroupStatus {
    pub group: String,
    pub host: String,
    /// The member that should run: the stored selection, else the group's default.
    pub selected: String,
    /// Whether `selected` comes from `berth select` (else from `default = true`).
    pub by_select: bool,
    /// Since when the selection holds (Unix seconds), when it was stored.
    pub selected_at: Option<u64>,
    /// The members found running on the host (more than one is a fault; none, a stopped group).
    pub running: Vec<String>,
    /// Whether the selected member runs and its probe says ready.
    pub ready: bool,
    /// What its probe said, or why the host could not be observed.
    pub detail: String,
    /// Since when the selected member runs (Unix seconds), from its record.
    pub running_since: Option<u64>,
}

/// Every group on every host, with the state lock's holder.
#[derive(Debug, Clone)]
pub struct SelectStatus {
    pub groups: Vec<GroupStatus>,
    pub lock_holder: Option<LockInfo>,
    pub warnings: Vec<String>,
}

/// Reads every group's selection and observes what runs, without waiting for the lock.
pub async fn select_status(inputs: &Inputs, stop: &Stop) -> Result<SelectStatus> {
    let snap = snapshot(inputs, "select status")?;
    let ws = &snap.ws;
    let empty;
    let view = match &snap.view {
        Some(v) => v,
        None => {
            empty = StateView {
                meta: berth_state::Meta {
                    lineage: String::new(),
                    serial: 0,
                    format_version: berth_state::STATE_FORMAT_VERSION,
                    hmac_key: String::new(),
                },
                records: BTreeMap::new(),
                intents: Vec::new(),
                selections: Vec::new(),
            };
            &empty
        }
    };
    let conns = Connections::new(&ws.config);
    let observed = tokio::select! {
        observed = refresh::refresh(ws, view, &conns) => observed,
        () = stop.cancelled() => {
            return Err(Error::Cancelled { reason: stop.reason(StopLevel::Cancel) });
        }
    };
    let mut groups = Vec::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for pl in ws.placements.iter().filter(|pl| pl.active) {
        let Some(group) = ws.config.model(&pl.model).and_then(|m| m.group.as_ref()) else {
            continue;
        };
        if !seen.insert((group.value.clone(), pl.host.clone())) {
            continue;
        }
        let members = members(ws, &group.value);
        let stored = view
            .selections
            .iter()
            .find(|s| s.group == group.value && s.host == pl.host);
        let (running, detail, ready) = match observed.hosts.get(&pl.host) {
            Some(HostObservation::Reached(found)) => {
                let running: Vec<String> = members
                    .iter()
                    .filter(|m| {
                        found
                            .get(Address::model(m, &pl.host).as_str())
                            .is_some_and(|i| i.liveness == Liveness::Running)
                    })
                    .cloned()
                    .collect();
                let probe = observed_probe(&observed, &pl.host, &pl.address());
                let detail = match &probe {
                    Some(outcome) => outcome.to_string(),
                    None => "not running".to_string(),
                };
                (running, detail, matches!(probe, Some(ProbeOutcome::Ready)))
            }
            Some(HostObservation::Unreachable(why)) => {
                (Vec::new(), format!("host unreachable: {why}"), false)
            }
            None => (Vec::new(), "not observed".to_string(), false),
        };
        let running_since = view
            .records
            .get(pl.address().as_str())
            .filter(|r| r.status == ResourceStatus::Ready)
            .and_then(|r| r.attributes.get("started_at").and_then(Value::as_u64));
        groups.push(GroupStatus {
            group: group.value.clone(),
            host: pl.host.clone(),
            selected: pl.model.clone(),
            by_select: stored.is_some_and(|s| s.model == pl.model),
            selected_at: stored.map(|s| s.selected_at),
            running,
            ready,
            detail,
            running_since,
        });
    }
    groups.sort_by(|a, b| (&a.group, &a.host).cmp(&(&b.group, &b.host)));
    let mut warnings = snap.warnings;
    warnings.extend(observed.warnings);
    Ok(SelectStatus {
        groups,
        lock_holder: snap.holder,
        warnings,
    })
}
