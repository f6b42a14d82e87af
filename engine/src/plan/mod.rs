//! The plan: what apply would do to each resource and why, as plain data. The planner builds
//! it; the text, JSON and markdown renderers, the saved-plan writer and the executor consume it.

mod planner;
pub mod render;

use berth_state::Address;
use serde::{Deserialize, Serialize};

pub use planner::{HostObservation, Observations, ObservedInstance, PlanOptions, StateView, plan};

/// Version of the plan's JSON schema (`berth plan --format json`, saved plans).
pub const PLAN_JSON_VERSION: u32 = 1;

/// What a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Make the hosts match the config.
    Apply,
    /// Stop and remove everything berth manages.
    Destroy,
}

/// A plan for one config against one state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub berth_version: String,
    pub operation: Operation,
    /// Hash of the config files and variable values the plan was made from.
    pub config_hash: String,
    pub state_lineage: String,
    pub state_serial: u64,
    /// Whether the hosts were observed (`--refresh=false` skips it).
    pub refreshed: bool,
    /// Every resource, ordered by address, including the unchanged ones (`no_op`).
    pub resources: Vec<ResourceChange>,
    /// What differs on the hosts from what was applied, whatever the config says.
    pub drift: Vec<Drift>,
    /// Hosts refresh could not observe: what runs there is unknown.
    #[serde(default)]
    pub unobserved_hosts: Vec<String>,
    pub warnings: Vec<String>,
}

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Start it: it does not run yet.
    Create,
    /// Change only what berth records (probe settings); nothing restarts.
    Update,
    /// Stop the running instance and start a new one.
    Replace,
    /// Stop it and forget it.
    Destroy,
    /// Keep the running instance, but probe it before recording it ready.
    Reuse,
    /// Run the backend's `verify_cmd` on the host before models start there.
    Verify,
    /// Nothing to do.
    NoOp,
}

impl Action {
    /// Whether the action changes a host or the state (what `--detailed-exitcode` reports).
    pub fn is_change(self) -> bool {
        !matches!(self, Action::NoOp | Action::Verify)
    }

    /// The symbol shown before the address in text plans.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Destroy => "-",
            Action::Reuse => "=",
            Action::Verify => "?",
            Action::NoOp => " ",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Destroy => "destroy",
            Action::Reuse => "reuse",
            Action::Verify => "verify",
            Action::NoOp => "no-op",
        }
    }
}

/// Why an action is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The config asks for it.
    Config,
    /// The host no longer matches what was applied.
    Drift,
    /// The last apply of this resource failed.
    Failed,
    /// `--replace` asked for it.
    Requested,
    /// Found on a host carrying berth's marks, but not in the state.
    Found,
    /// `berth destroy`.
    Destroy,
}

/// The kind of a resource.
pub use crate::graph::NodeKind as Kind;

/// One resource in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub address: Address,
    pub kind: Kind,
    pub host: String,
    pub action: Action,
    pub cause: Cause,
    /// One sentence a reviewer can check.
    pub reason: String,
    /// Changed fields, before and after (secrets shown as `(sensitive)`).
    pub changes: Vec<FieldChange>,
    /// Fingerprint of the launch the action leads to (models being created, replaced, reused).
    pub fingerprint: Option<String>,
    /// Addresses this resource waits for during apply.
    pub depends_on: Vec<Address>,
}

/// One field of a resource, before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// A difference between a host and the state, found by refresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub address: Address,
    pub host: String,
    pub what: String,
}

/// Counts of actions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub destroy: usize,
    pub reuse: usize,
    pub unchanged: usize,
}

impl Plan {
    /// True when apply would change a host or the state.
    pub fn has_changes(&self) -> bool {
        self.resources.iter().any(|r| r.action.is_change())
    }

    /// Counts of each action.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for r in &self.resources {
            match r.action {
                Action::Create => s.create += 1,
                Action::Update => s.update += 1,
                Action::Replace => s.replace += 1,
                Action::Destroy => s.destroy += 1,
                Action::Reuse => s.reuse += 1,
                Action::NoOp => s.unchanged += 1,
                Action::Verify => {}
            }
        }
        s
    }

    /// Changes that come from the config rather than from drift or failures.
    pub fn has_config_changes(&self) -> bool {
        self.resources
            .iter()
            .any(|r| r.action.is_change() && matches!(r.cause, Cause::Config | Cause::Destroy))
    }

    /// The resources whose action is a change, in address order.
    pub fn changes(&self) -> impl Iterator<Item = &ResourceChange> {
        self.resources.iter().filter(|r| r.action.is_change())
    }

    /// The instances found on the hosts that another berth state runs, which berth leaves
    /// alone.
    pub fn left_to_others(&self) -> impl Iterator<Item = &ResourceChange> {
        self.resources
            .iter()
            .filter(|r| r.action == Action::NoOp && r.cause == Cause::Found)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to create, {} to replace, {} to update, {} to destroy",
            self.create, self.replace, self.update, self.destroy
        )?;
        if self.reuse > 0 {
            write!(f, ", {} to re-probe", self.reuse)?;
        }
        Ok(())
    }
}

/// A plan that would destroy much of what berth manages: more than half of all managed
/// resources, or every resource of a host. A config file that went missing looks exactly like
/// this, so `apply` asks for `--allow-mass-destroy` (DESIGN.md section 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MassDestroy {
    /// Resources the plan destroys.
    pub destroyed: usize,
    /// Resources the state manages.
    pub managed: usize,
    /// Hosts that would be left with nothing berth manages.
    pub emptied_hosts: Vec<String>,
}

impl MassDestroy {
    /// Checks `plan` against the managed resources, given as `(address, host)` pairs.
    pub fn check<'a>(
        plan: &Plan,
        managed: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Option<MassDestroy> {
        use std::collections::{BTreeMap, HashSet};
        let destroyed: HashSet<&str> = plan
            .resources
            .iter()
            .filter(|r| r.action == Action::Destroy)
            .map(|r| r.address.as_str())
            .collect();
        let mut per_host: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut total = 0;
        let mut gone = 0;
        for (address, host) in managed {
            let entry = per_host.entry(host).or_default();
            entry.0 += 1;
            total += 1;
            if destroyed.contains(address) {
                entry.1 += 1;
                gone += 1;
            }
        }
        let emptied_hosts: Vec<String> = per_host
            .iter()
            .filter(|(_, (all, gone))| *all > 0 && gone == all)
            .map(|(host, _)| host.to_string())
            .collect();
        (gone > 0 && (gone * 2 > total || !emptied_hosts.is_empty())).then_some(MassDestroy {
            destroyed: gone,
            managed: total,
            emptied_hosts,
        })
    }

    /// Why the plan counts as a mass destroy, in one sentence.
    pub fn reason(&self) -> String {
        let mut why = format!(
            "this plan destroys {} of the {} resources berth manages",
            self.destroyed, self.managed
        );
        if !self.emptied_hosts.is_empty() {
            why.push_str(&format!(
                ", leaving nothing on {} {}",
                if self.emptied_hosts.len() == 1 {
                    "host"
                } else {
                    "hosts"
                },
                self.emptied_hosts.join(", ")
            ));
        }
        why
    }
}
