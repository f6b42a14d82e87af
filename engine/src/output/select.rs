//! The `berth select --json` and `berth select status --json` documents: the switch of a
//! group's running member (its plan and how it ended on each host), and every group's
//! selection with what runs.

use schemars::JsonSchema;
use serde::Serialize;

use crate::ops::{GroupStatus, SelectStatus, Selected};
use crate::plan::{Action, Plan};

/// What `berth select` did (or, with `--dry-run`, would do).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Report {
    /// The selected model.
    pub model: String,
    pub group: String,
    /// True for `--dry-run`: nothing was changed.
    pub dry_run: bool,
    /// True when every host runs the selected model (always, for a dry run).
    pub succeeded: bool,
    /// The steps of the switch, in plan order.
    pub plan: Vec<Step>,
    /// The steps that brought the previous members back, when the selected one failed.
    pub rollback: Vec<Step>,
    pub hosts: Vec<HostSwitch>,
}

/// One resource's step in a switch plan.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Step {
    pub address: String,
    pub host: String,
    /// `create`, `replace`, `destroy`, `reuse` (probe, keep if it answers), `verify`.
    pub action: String,
    pub reason: String,
}

/// How the switch ended on one host.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HostSwitch {
    pub host: String,
    /// The member running before, if any.
    pub from: Option<String>,
    pub to: String,
    /// `planned`, `switched`, `failed`, `rolled_back`, `rollback_failed`, `cancelled`.
    pub outcome: String,
    /// Why the selected member failed.
    pub failure: Option<Failure>,
    /// Why the previous member could not be started again.
    pub rollback_failure: Option<Failure>,
    /// Seconds from the start of the command to the end of the switch on this host.
    pub elapsed_secs: f64,
}

/// A failed step.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Failure {
    /// The step that failed (`stop`, `start`, `probe`...).
    pub step: String,
    pub message: String,
    /// The last lines of the service's log.
    pub log_tail: Option<String>,
}

fn steps(plan: &Plan) -> Vec<Step> {
    plan.resources
        .iter()
        .filter(|r| r.action != Action::NoOp)
        .map(|r| Step {
            address: r.address.to_string(),
            host: r.host.clone(),
            action: r.action.as_str().to_string(),
            reason: r.reason.clone(),
        })
        .collect()
}

fn failure(e: &crate::apply::StepError) -> Failure {
    Failure {
        step: e.at(),
        message: e.message.clone(),
        log_tail: e.log_tail.clone(),
    }
}

impl From<&Selected> for Report {
    fn from(s: &Selected) -> Self {
        Report {
            model: s.model.clone(),
            group: s.group.clone(),
            dry_run: s
                .hosts
                .iter()
                .all(|h| h.outcome == crate::ops::SwitchOutcome::Planned),
            succeeded: s.succeeded(),
            plan: steps(&s.plan),
            rollback: s.rollback.as_ref().map(steps).unwrap_or_default(),
            hosts: s
                .hosts
                .iter()
                .map(|h| HostSwitch {
                    host: h.host.clone(),
                    from: h.from.clone(),
                    to: h.to.clone(),
                    outcome: h.outcome.as_str().to_string(),
                    failure: h.failure.as_ref().map(failure),
                    rollback_failure: h.rollback_failure.as_ref().map(failure),
                    elapsed_secs: (h.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                })
                .collect(),
        }
    }
}

/// `berth select status`: every group on every host.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Status {
    pub groups: Vec<Group>,
    /// Who holds the state lock now (`lock ID held by USER@HOST pid N (OPERATION, since ...)`).
    pub lock_holder: Option<String>,
    pub warnings: Vec<String>,
}

/// One group on one host.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Group {
    pub group: String,
    pub host: String,
    /// The member that should run there.
    pub selected: String,
    /// `select` when chosen with `berth select`, `default` when from `default = true`.
    pub selected_by: String,
    /// Since when the selection holds (Unix seconds), when chosen with `berth select`.
    pub selected_at: Option<u64>,
    /// The members running there now.
    pub running: Vec<String>,
    /// The selected member runs and answers ready.
    pub ready: bool,
    /// What its probe said.
    pub detail: String,
    /// Since when the selected member runs (Unix seconds).
    pub running_since: Option<u64>,
}

impl From<&GroupStatus> for Group {
    fn from(g: &GroupStatus) -> Self {
        Group {
            group: g.group.clone(),
            host: g.host.clone(),
            selected: g.selected.clone(),
            selected_by: if g.by_select { "select" } else { "default" }.to_string(),
            selected_at: g.selected_at,
            running: g.running.clone(),
            ready: g.ready,
            detail: g.detail.clone(),
            running_since: g.running_since,
        }
    }
}

impl From<&SelectStatus> for Status {
    fn from(s: &SelectStatus) -> Self {
        Status {
            groups: s.groups.iter().map(Group::from).collect(),
            lock_holder: s.lock_holder.as_ref().map(ToString::to_string),
            warnings: s.warnings.clone(),
        }
    }
}
