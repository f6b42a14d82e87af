//! The planner: a pure function from (config, placements, state, observations) to a [`Plan`].
//! It decides each resource's action and reason and separates drift from config changes; it
//! performs no I/O (observing the hosts is `refresh`'s job).

use std::collections::{BTreeMap, BTreeSet};

use berth_providers::{Liveness, Prerequisite, ProbeOutcome, Registry};
use berth_state::{
    Address, Intent, Meta, ResourceKind, ResourceRecord, ResourceStatus, Selection, Target,
};
use serde_json::Value;

use super::{
    Action, Cause, Drift, FieldChange, Kind, Operation, PLAN_JSON_VERSION, Plan, ResourceChange,
};
use crate::error::{Error, Result};
use crate::launch::{self, Rendered, Role};
use crate::placement::Previous;
use crate::workspace::Workspace;

/// What the state holds, read once before planning.
#[derive(Debug, Clone)]
pub struct StateView {
    pub meta: Meta,
    pub records: BTreeMap<Address, ResourceRecord>,
    pub intents: Vec<Intent>,
    pub selections: Vec<Selection>,
}

impl StateView {
    /// Earlier placements and selections, so placement keeps them (no churn).
    pub fn previous(&self) -> Previous {
        let mut previous = Previous::default();
        for r in self
            .records
            .values()
            .filter(|r| r.kind == ResourceKind::Model)
        {
            if let Some(model) = r.attributes.get("model").and_then(Value::as_str) {
                previous
                    .hosts
                    .entry(model.to_string())
                    .or_default()
                    .push(r.host.clone());
            }
        }
        for s in &self.selections {
            previous
                .selections
                .insert((s.group.clone(), s.host.clone()), s.model.clone());
        }
        previous
    }

    /// The HMAC key of this state, for fingerprints of secrets.
    pub fn hmac_key(&self) -> Vec<u8> {
        hex::decode(&self.meta.hmac_key).unwrap_or_else(|_| self.meta.hmac_key.as_bytes().to_vec())
    }
}

/// What refresh found on the hosts.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    pub hosts: BTreeMap<String, HostObservation>,
    /// What the user must hear about the hosts: records there that cannot be read.
    pub warnings: Vec<String>,
    /// What each wanted launch needs on its host (a container's image), as the host has it,
    /// by address.
    pub prerequisites: BTreeMap<String, Prerequisite>,
}

/// One host's observation.
#[derive(Debug, Clone)]
pub enum HostObservation {
    /// Every berth instance found in the host's run_dir, by address.
    Reached(BTreeMap<String, ObservedInstance>),
    /// The host could not be observed; holds why.
    Unreachable(String),
}

/// One instance found on a host.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedInstance {
    pub fingerprint: String,
    /// Lineage of the state that started it; empty when the host does not say.
    pub owner: String,
    pub liveness: Liveness,
    pub port: u16,
    /// The probe's answer, for running instances.
    pub probe: Option<ProbeOutcome>,
    /// The digest of what it runs (a container's image id), for runtimes that pin one.
    pub pinned: Option<String>,
    /// How its runtime says a stopped instance stands, when it says more than "exited", or
    /// that a running one is being brought back after a crash.
    pub state: Option<String>,
}

/// How the plan was asked for.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub operation: Operation,
    /// `--target`: limit the plan to these addresses (and what they need).
    pub targets: Vec<Target>,
    /// `--replace`: force these to be replaced.
    pub replace: Vec<Target>,
}

/// Plans `ws` against `state` and, when refreshed, what the hosts hold.
pub fn plan(
    ws: &Workspace,
    state: &StateView,
    observed: Option<&Observations>,
    options: &PlanOptions,
    config_hash: &str,
) -> Result<Plan> {
    let key = state.hmac_key();
    // The launch record declares which fields replace an instance and which only berth
    // records.
    let replace_fields: Vec<&str> = launch::field_names(Role::Replace).collect();
    let update_fields: Vec<&str> = launch::field_names(Role::Update).collect();
    let runtimes = Registry::builtin();
    // Instances another berth state started (on a shared host, or before this state was lost)
    // are adopted only when they run exactly the wanted launch, and never stopped.
    let foreign = foreign_instances(observed, &state.meta.lineage);
    let destroying = options.operation == Operation::Destroy;
    let mut resources: BTreeMap<Address, ResourceChange> = BTreeMap::new();
    let mut drift = Vec::new();
    let mut warnings = Vec::new();
    if ws.config.hosts.is_empty() {
        warnings.push(format!(
            "the config in {} defines no hosts: there is nothing to deploy to (add a `host` block)",
            ws.config.dir.display()
        ));
    }

    let instance = |host: &str, address: &str| -> Option<Option<&ObservedInstance>> {
        match observed?.hosts.get(host)? {
            HostObservation::Reached(found) => Some(found.get(address)),
            HostObservation::Unreachable(_) => None,
        }
    };
    let mut unobserved_hosts = Vec::new();
    if let Some(obs) = observed {
        warnings.extend(obs.warnings.iter().cloned());
        for (host, o) in &obs.hosts {
            if let HostObservation::Unreachable(why) = o {
                warnings.push(format!("host {host} could not be observed: {why}"));
                unobserved_hosts.push(host.clone());
            }
        }
    }

    // Desired models.
    let mut desired: BTreeMap<Address, Rendered> = BTreeMap::new();
    if !destroying {
        for p in ws.placements.iter().filter(|p| p.active) {
            let rendered = launch::render(&ws.config, p).map_err(Error::Render)?;
            if runtimes.get(rendered.runtime.as_str()).is_none() {
                return Err(Error::Usage {
                    message: format!(
                        "{} runs on backend `{}` with runtime \"{}\", which this berth cannot run yet",
                        rendered.address,
                        rendered.backend,
                        rendered.runtime.as_str()
                    ),
                    help: "use runtime = \"process\" for this backend".into(),
                });
            }
            desired.insert(rendered.address.clone(), rendered);
        }
    }
    for target in options.replace.iter() {
        if !desired.keys().any(|a| target.matches(a)) {
            return Err(Error::Usage {
                message: format!("--replace {target}: no model placement has that address"),
                help: "use an address from `berth plan`, e.g. model.qwen2.5-7b@gpu-a".into(),
            });
        }
    }

    for (address, r) in &desired {
        let fingerprint = r.fingerprint(&key);
        let attrs = r.attributes();
        let record = state.records.get(address.as_str());
        let seen = instance(&r.host, address.as_str());
        let requested = options.replace.iter().any(|t| t.matches(address));
        let prerequisite = observed.and_then(|o| o.prerequisites.get(address.as_str()));
        let moved = match seen {
            Some(Some(found)) if found.liveness == Liveness::Running => {
                moved_digest(found, prerequisite)
            }
            _ => None,
        };
        let change = |action, cause, reason: String, changes| ResourceChange {
            address: address.clone(),
            kind: Kind::Model,
            host: r.host.clone(),
            action,
            cause,
            reason,
            changes,
            fingerprint: Some(fingerprint.clone()),
            depends_on: Vec::new(),
        };
        let (action, cause, reason, changes) = if requested {
            (
                Action::Replace,
                Cause::Requested,
                "replacement requested with --replace".to_string(),
                Vec::new(),
            )
        } else {
            match record {
                None => match seen {
                    Some(Some(found)) if found.liveness == Liveness::Running && found.fingerprint == fingerprint && moved.is_some() => (
                        Action::Replace,
                        Cause::Found,
                        format!("found running on the host with this launch, not in the state, but {}", moved.clone().unwrap_or_default()),
                        all_fields(&attrs, &replace_fields, &update_fields),
                    ),
                    Some(Some(found)) if found.liveness == Liveness::Running && found.fingerprint == fingerprint => (
                        Action::Reuse,
                        Cause::Found,
                        "found running on the host with this exact launch, but not in the state: adopt it after a probe".into(),
                        all_fields(&attrs, &replace_fields, &update_fields),
                    ),
                    Some(Some(found)) if found.liveness == Liveness::Running => (
                        Action::Replace,
                        Cause::Found,
                        "an instance with another launch runs on the host under this address, not in the state".into(),
                        all_fields(&attrs, &replace_fields, &update_fields),
                    ),
                    _ => (Action::Create, Cause::Config, "not deployed yet".into(), all_fields(&attrs, &replace_fields, &update_fields)),
                },
                Some(rec) => {
                    let replace_changes = diff(&rec.attributes, &attrs, &replace_fields);
                    let update_changes = diff(&rec.attributes, &attrs, &update_fields);
                    if let ResourceStatus::Failed { step, reason } = &rec.status {
                        let mut changes = replace_changes;
                        changes.extend(update_changes);
                        (Action::Replace, Cause::Failed, format!("the last apply failed at {step}: {reason}"), changes)
                    } else if rec.fingerprint.as_deref() != Some(fingerprint.as_str())
                        && matches!(seen, Some(Some(found)) if found.liveness == Liveness::Running && found.fingerprint == fingerprint)
                    {
                        let mut changes = replace_changes;
                        changes.extend(update_changes);
                        (
                            Action::Reuse,
                            Cause::Found,
                            "the host already runs the new launch (an earlier apply was interrupted before recording it): probe and record".into(),
                            changes,
                        )
                    } else if rec.fingerprint.as_deref() != Some(fingerprint.as_str()) {
                        let reason = if replace_changes.is_empty() {
                            "a sensitive value of its launch changed".to_string()
                        } else {
                            format!(
                                "{} changed",
                                replace_changes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>().join(", ")
                            )
                        };
                        let mut changes = replace_changes;
                        changes.extend(update_changes);
                        (Action::Replace, Cause::Config, reason, changes)
                    } else {
                        match drift_of(seen, rec, moved.as_deref()) {
                            Some((what, action)) => {
                                drift.push(Drift { address: address.clone(), host: r.host.clone(), what: what.clone() });
                                let mut changes = update_changes;
                                changes.insert(0, FieldChange { field: "live".into(), before: None, after: Some(Value::from(what.clone())) });
                                (action, Cause::Drift, format!("drift: {what}"), changes)
                            }
                            None if !update_changes.is_empty() => {
                                let fields = update_changes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>().join(", ");
                                (Action::Update, Cause::Config, format!("{fields} changed (recorded only; nothing restarts)"), update_changes)
                            }
                            None => (Action::NoOp, Cause::Config, "unchanged".into(), Vec::new()),
                        }
                    }
                }
            }
        };
        let mut changes = changes;
        if let Some(p) = prerequisite
            && matches!(action, Action::Create | Action::Replace)
        {
            let before = match seen {
                Some(Some(found)) => found.pinned.clone().map(Value::from),
                _ => None,
            };
            match (&p.digest, &p.source) {
                (Some(digest), _) => changes.push(FieldChange {
                    field: "image_digest".into(),
                    before,
                    after: Some(Value::from(digest.clone())),
                }),
                (None, Some(archive)) => changes.push(FieldChange {
                    field: "image_digest".into(),
                    before,
                    after: Some(Value::from(format!(
                        "(not on the host: loaded from {archive} before anything stops)"
                    ))),
                }),
                (None, None) => warnings.push(format!(
                    "host {} lacks {} and backend `{}` sets no image_archive: apply fails for {address} before stopping anything; load the image on the host, or set image_archive",
                    r.host, p.what, r.backend
                )),
            }
        }
        resources.insert(address.clone(), change(action, cause, reason, changes));
    }

    for (address, (host, owner)) in &foreign {
        let Some(r) = resources.get_mut(address.as_str()) else {
            continue;
        };
        match (r.action, r.cause) {
            (Action::NoOp, _) => {}
            (Action::Reuse, Cause::Found) => {
                r.reason = format!(
                    "runs on the host with this exact launch, started by another berth state (lineage {owner}; a lost state?): adopt it after a probe"
                );
            }
            _ => {
                warnings.push(format!(
                    "{address} runs on {host} under another berth state (lineage {owner}) with another launch; berth leaves it alone: give each state its own run_dir, or destroy it from its own state"
                ));
                r.action = Action::NoOp;
                r.reason = "runs under another berth state on this host".into();
                r.changes.clear();
            }
        }
    }

    // Instances of another berth state that this config does not place at their address: left
    // alone, and said so, naming what this plan would start on the port one of them holds.
    let mut held = Vec::new();
    for (address, (host, owner)) in &foreign {
        if resources.contains_key(address.as_str()) || state.records.contains_key(address.as_str())
        {
            continue;
        }
        let Some(Some(found)) = instance(host, address) else {
            continue;
        };
        let clash = resources.values().find(|r| {
            r.host == *host
                && matches!(r.action, Action::Create | Action::Replace)
                && desired
                    .get(&r.address)
                    .is_some_and(|d| d.port == found.port)
        });
        match clash {
            Some(r) if found.liveness == Liveness::Running => warnings.push(format!(
                "port {} on {host} is held by {address}, which another berth state (lineage {owner}) started; berth leaves it alone, so {} cannot start there: give it another port, or stop {address} from its own state",
                found.port, r.address
            )),
            _ => warnings.push(format!(
                "{address} on {host} (port {}, {}) belongs to another berth state (lineage {owner}); berth leaves it alone",
                found.port,
                liveness_text(found.liveness)
            )),
        }
        let Ok(parsed) = address.parse::<Address>() else {
            continue;
        };
        held.push(ResourceChange {
            address: parsed,
            kind: Kind::Model,
            host: host.clone(),
            action: Action::NoOp,
            cause: Cause::Found,
            reason: format!("runs under another berth state (lineage {owner}) on this host; berth leaves it alone"),
            changes: Vec::new(),
            fingerprint: None,
            depends_on: Vec::new(),
        });
    }
    for r in held {
        resources.insert(r.address.clone(), r);
    }

    // Recorded models that are no longer wanted.
    for rec in state.records.values() {
        if desired.contains_key(rec.address.as_str())
            || resources.contains_key(rec.address.as_str())
        {
            continue;
        }
        let address = match rec.address.parse::<Address>() {
            Ok(address) => address,
            Err(e) => {
                warnings.push(format!(
                    "the state holds a record berth cannot plan for: {e}"
                ));
                continue;
            }
        };
        let (kind, reason) = match rec.kind {
            ResourceKind::Model => (Kind::Model, why_undesired(ws, rec, destroying)),
            ResourceKind::Backend => {
                if !destroying && ws.graph.node(&rec.address).is_some() {
                    continue;
                }
                (
                    Kind::Backend,
                    if destroying {
                        "berth destroy".into()
                    } else {
                        "no model on this host uses the backend any more".into()
                    },
                )
            }
            ResourceKind::Host => (Kind::Host, "no longer managed".into()),
        };
        // Berth reaches a host only through its `host` block: without it the stop cannot run.
        let unreachable = rec.kind == ResourceKind::Model && ws.config.host(&rec.host).is_none();
        let reason = if unreachable {
            warnings.push(format!(
                "{address} is recorded on host {host}, which is no longer in the config: berth cannot connect there to stop it, so apply fails for it. Put the `host \"{host}\"` block back and apply (the model stops, then the block can go), or forget it with `berth state rm {address}` (what runs there keeps running), or leave it out of this apply with --target",
                host = rec.host
            ));
            format!(
                "{reason}; host {} cannot be reached without its host block",
                rec.host
            )
        } else {
            reason
        };
        if rec.kind == ResourceKind::Model
            && let Some(Some(found)) = instance(&rec.host, &rec.address)
            && found.liveness != Liveness::Running
        {
            drift.push(Drift {
                address: address.clone(),
                host: rec.host.clone(),
                what: format!("process {}", liveness_text(found.liveness)),
            });
        }
        // A group member that runs although another one is selected: the host no longer
        // runs what was selected, which is drift rather than a config change.
        let off_selection = !destroying
            && rec.kind == ResourceKind::Model
            && deselected_member(ws, state, rec).is_some()
            && matches!(instance(&rec.host, &rec.address), Some(Some(found)) if found.liveness == Liveness::Running);
        if off_selection && let Some((group, selected)) = deselected_member(ws, state, rec) {
            drift.push(Drift {
                address: address.clone(),
                host: rec.host.clone(),
                what: format!("group `{group}` runs this member, but `{selected}` is selected"),
            });
        }
        resources.insert(
            address.clone(),
            ResourceChange {
                address,
                kind,
                host: rec.host.clone(),
                action: Action::Destroy,
                cause: if destroying {
                    Cause::Destroy
                } else if off_selection {
                    Cause::Drift
                } else {
                    Cause::Config
                },
                reason,
                changes: rec
                    .attributes
                    .iter()
                    .filter(|(k, _)| replace_fields.contains(&k.as_str()))
                    .map(|(k, v)| FieldChange {
                        field: k.clone(),
                        before: Some(v.clone()),
                        after: None,
                    })
                    .collect(),
                fingerprint: None,
                depends_on: Vec::new(),
            },
        );
    }

    // Instances on hosts that neither the config nor the state knows: left by an interrupted
    // apply, or by an operator's lost state. Hosts carry the truth, so they are removed.
    if let Some(obs) = observed {
        for (host, o) in &obs.hosts {
            let HostObservation::Reached(found) = o else {
                continue;
            };
            for (address, inst) in found {
                if resources.contains_key(address.as_str()) || foreign.contains_key(address) {
                    continue;
                }
                let address = match address.parse::<Address>() {
                    Ok(address) => address,
                    Err(e) => {
                        warnings.push(format!(
                            "host {host} carries an instance berth cannot plan for: {e}"
                        ));
                        continue;
                    }
                };
                let running = inst.liveness == Liveness::Running;
                drift.push(Drift {
                    address: address.clone(),
                    host: host.clone(),
                    what: if running {
                        format!("runs on the host (port {}) with this state's marks, but neither the config nor the state has it", inst.port)
                    } else {
                        format!("a record of an {} instance is on the host, but neither the config nor the state has it", liveness_text(inst.liveness))
                    },
                });
                resources.insert(
                    address.clone(),
                    ResourceChange {
                        address,
                        kind: Kind::Model,
                        host: host.clone(),
                        action: Action::Destroy,
                        cause: Cause::Found,
                        reason: if running {
                            "runs on the host with this state's marks but is in neither the config nor the state (left by an interrupted apply?); it runs no launch the config wants, so berth stops it".into()
                        } else {
                            "a stale record of an exited instance is on the host; berth removes it".into()
                        },
                        changes: Vec::new(),
                        fingerprint: None,
                        depends_on: Vec::new(),
                    },
                );
            }
        }
    }

    // Backends: verify_cmd runs on a host before models start there.
    if !destroying {
        for node in ws
            .graph
            .nodes()
            .into_iter()
            .filter(|n| n.kind == Kind::Backend)
        {
            let starting = ws.graph.dependents(&node.address).iter().any(|m| {
                resources.get(m.as_str()).is_some_and(|r| {
                    matches!(r.action, Action::Create | Action::Replace | Action::Reuse)
                })
            });
            let has_verify = ws
                .config
                .backend(&node.id)
                .is_some_and(|b| b.verify_cmd.is_some());
            let (action, reason) = match (starting, has_verify) {
                (true, true) => (
                    Action::Verify,
                    "verify_cmd runs before models start on this host".to_string(),
                ),
                (true, false) => (Action::NoOp, "no verify_cmd".to_string()),
                (false, _) => (Action::NoOp, "no model starts here".to_string()),
            };
            resources.insert(
                node.address.clone(),
                ResourceChange {
                    address: node.address.clone(),
                    kind: Kind::Backend,
                    host: node.host.clone(),
                    action,
                    cause: Cause::Config,
                    reason,
                    changes: Vec::new(),
                    fingerprint: None,
                    depends_on: Vec::new(),
                },
            );
        }
    }

    // Dependencies, for apply's ordering.
    let addresses: BTreeSet<Address> = resources.keys().cloned().collect();
    for r in resources.values_mut() {
        r.depends_on = ws
            .graph
            .dependencies(&r.address)
            .into_iter()
            .filter(|a| addresses.contains(*a))
            .cloned()
            .collect();
    }

    // --target: keep what was asked for, and what it needs to be up (for a start) or what must
    // go first (for a destroy: whatever depends on it).
    if !options.targets.is_empty() {
        let mut keep: BTreeSet<Address> = resources
            .keys()
            .filter(|a| options.targets.iter().any(|t| t.matches(a)))
            .cloned()
            .collect();
        if keep.is_empty() {
            return Err(Error::Usage {
                message: format!(
                    "--target {} matches no resource",
                    options
                        .targets
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                help: "use addresses from `berth plan`, e.g. model.qwen2.5-7b@gpu-a, model.qwen2.5-7b or host.gpu-a".into(),
            });
        }
        let mut stack: Vec<Address> = keep.iter().cloned().collect();
        while let Some(a) = stack.pop() {
            let Some(r) = resources.get(&a) else { continue };
            let next: Vec<Address> = if r.action == Action::Destroy {
                resources
                    .values()
                    .filter(|o| o.action == Action::Destroy && o.depends_on.contains(&a))
                    .map(|o| o.address.clone())
                    .collect()
            } else {
                r.depends_on.clone()
            };
            for n in next {
                if keep.insert(n.clone()) {
                    stack.push(n);
                }
            }
        }
        resources.retain(|a, _| keep.contains(a));
        drift.retain(|d| keep.contains(&d.address));
        warnings.push("the plan is limited by --target: other changes may be pending".into());
    }

    if !state.intents.is_empty() {
        let addresses: Vec<&str> = state.intents.iter().map(|i| i.address.as_str()).collect();
        warnings.push(format!(
            "an earlier apply was interrupted while changing {}{}",
            addresses.join(", "),
            if observed.is_some() {
                "; refresh checked those hosts"
            } else {
                "; plan with refresh to check those hosts"
            }
        ));
    }

    Ok(Plan {
        format_version: PLAN_JSON_VERSION,
        berth_version: env!("CARGO_PKG_VERSION").to_string(),
        operation: options.operation,
        config_hash: config_hash.to_string(),
        state_lineage: state.meta.lineage.clone(),
        state_serial: state.meta.serial,
        refreshed: observed.is_some(),
        resources: resources.into_values().collect(),
        drift,
        unobserved_hosts,
        warnings,
    })
}

/// Address -> (host, owner) of every observed instance that another berth state started.
fn foreign_instances(
    observed: Option<&Observations>,
    lineage: &str,
) -> BTreeMap<String, (String, String)> {
    let mut foreign = BTreeMap::new();
    for (host, o) in observed.map(|o| &o.hosts).into_iter().flatten() {
        if let HostObservation::Reached(found) = o {
            for (address, inst) in found {
                if !inst.owner.is_empty() && inst.owner != lineage {
                    foreign.insert(address.clone(), (host.clone(), inst.owner.clone()));
                }
            }
        }
    }
    foreign
}

/// How the host differs from a record that says the instance is ready, and what fixes it.
fn drift_of(
    seen: Option<Option<&ObservedInstance>>,
    rec: &ResourceRecord,
    moved: Option<&str>,
) -> Option<(String, Action)> {
    let found = match seen? {
        None => {
            return Some((
                "not running on the host (no instance is recorded there)".into(),
                Action::Replace,
            ));
        }
        Some(found) => found,
    };
    match found.liveness {
        Liveness::Exited => {
            let why = found.state.as_deref().unwrap_or("process exited");
            return Some((why.to_string(), Action::Replace));
        }
        Liveness::Replaced => {
            return Some((
                "process is gone (its pid belongs to another process now)".into(),
                Action::Replace,
            ));
        }
        Liveness::Running => {}
    }
    if rec.fingerprint.as_deref() != Some(found.fingerprint.as_str()) {
        return Some((
            "the instance on the host runs another launch than the one applied".into(),
            Action::Replace,
        ));
    }
    if let Some(moved) = moved {
        return Some((moved.to_string(), Action::Replace));
    }
    match (&found.probe, &found.state) {
        (Some(ProbeOutcome::Ready) | None, _) => None,
        // Its runtime keeps bringing it back after crashes: a fresh instance, not more
        // waiting (when the cause is the launch itself, the new one's probe gate fails at
        // once, with the log).
        (Some(other), Some(state)) => {
            Some((format!("{state}; its probe says {other}"), Action::Replace))
        }
        (Some(other), None) => Some((
            format!("running, but its probe says {other}"),
            Action::Reuse,
        )),
    }
}

/// How a running instance's pinned digest differs from what its prerequisite resolves to on
/// the host now (an image tag that was moved to another image), if it does.
fn moved_digest(found: &ObservedInstance, prerequisite: Option<&Prerequisite>) -> Option<String> {
    let running = found.pinned.as_deref()?;
    let now = prerequisite?.digest.as_deref()?;
    (running != now).then(|| {
        format!(
            "{} now names {} on the host, but the instance runs {}",
            prerequisite.map_or("", |p| p.what.as_str()),
            short_digest(now),
            short_digest(running)
        )
    })
}

/// A digest cut to 12 hex digits, as `docker images` shows it.
fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

fn liveness_text(l: Liveness) -> &'static str {
    match l {
        Liveness::Running => "running",
        Liveness::Exited => "exited",
        Liveness::Replaced => "gone (pid reused)",
    }
}

fn why_undesired(ws: &Workspace, rec: &ResourceRecord, destroying: bool) -> String {
    if destroying {
        return "berth destroy".into();
    }
    let Some(model_id) = rec.attributes.get("model").and_then(Value::as_str) else {
        return "no longer in the config".into();
    };
    match ws.config.model(model_id) {
        None => "the model is no longer in the config".into(),
        Some(m) if !m.enabled => "the model is disabled".into(),
        Some(_) if ws.config.host(&rec.host).is_none_or(|h| !h.enabled) => {
            "its host is no longer in the config or is disabled".into()
        }
        Some(m) => match ws.placements_of(model_id).find(|p| p.host == rec.host) {
            Some(p) if !p.active => format!(
                "another member of group `{}` is selected on {}",
                m.group.as_ref().map(|g| g.value.as_str()).unwrap_or("?"),
                rec.host
            ),
            _ => "the model is now placed on other hosts".into(),
        },
    }
}

/// For a record of a group member while the state selects another member of its group on its
/// host: the group and the selected member.
fn deselected_member<'s>(
    ws: &Workspace,
    state: &'s StateView,
    rec: &ResourceRecord,
) -> Option<(&'s str, &'s str)> {
    let model_id = rec.attributes.get("model").and_then(Value::as_str)?;
    let group = ws.config.model(model_id)?.group.as_ref()?;
    state
        .selections
        .iter()
        .find(|s| s.group == group.value && s.host == rec.host && s.model != model_id)
        .map(|s| (s.group.as_str(), s.model.as_str()))
}

fn diff(
    before: &BTreeMap<String, Value>,
    after: &BTreeMap<String, Value>,
    fields: &[&str],
) -> Vec<FieldChange> {
    fields
        .iter()
        .filter_map(|f| {
            let (b, a) = (before.get(*f), after.get(*f));
            (b != a).then(|| FieldChange {
                field: f.to_string(),
                before: b.cloned(),
                after: a.cloned(),
            })
        })
        .collect()
}

fn all_fields(
    after: &BTreeMap<String, Value>,
    replace_fields: &[&str],
    update_fields: &[&str],
) -> Vec<FieldChange> {
    replace_fields
        .iter()
        .chain(update_fields)
        .filter_map(|f| {
            after.get(*f).map(|v| FieldChange {
                field: f.to_string(),
                before: None,
                after: Some(v.clone()),
            })
        })
        .collect()
}
