//! The `berth state list`, `state show ADDRESS` and `state history` documents: the state's
//! records as berth prints them, apart from how the store keeps them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

/// What a resource address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Host,
    Backend,
    Model,
}

/// How the last operation on a resource ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Applied and, for models, past the probe gate.
    Ready,
    /// A step failed; the next plan replaces the resource.
    Failed {
        /// The step that failed (`verify`, `start`, `probe`...).
        step: String,
        /// What went wrong.
        reason: String,
    },
}

/// One line of `state list`. Fields are in alphabetical order, the order the document has
/// always had.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListItem {
    pub address: String,
    pub host: String,
    pub kind: Kind,
    pub status: Status,
    /// When the record was last written, in Unix seconds.
    pub updated_at: u64,
}

/// One resource as last applied (`state show`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Record {
    pub address: String,
    pub kind: Kind,
    pub host: String,
    pub status: Status,
    /// Hash of the rendered launch spec, as also carried on the host.
    pub fingerprint: Option<String>,
    /// What the engine recorded (rendered command with secrets redacted, port, backend, probe).
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// When the record was last written, in Unix seconds.
    pub updated_at: u64,
}

/// One finished operation (`state history`).
#[derive(Debug, Serialize, JsonSchema)]
pub struct HistoryEntry {
    /// The state serial when the operation finished.
    pub serial: u64,
    /// The command (`apply`, `destroy`, `select`...).
    pub operation: String,
    pub user: String,
    /// The machine it ran on.
    pub hostname: String,
    /// Start, in Unix seconds.
    pub started_at: u64,
    /// End, in Unix seconds.
    pub finished_at: u64,
    /// One line per planned change (a backend's `verify_cmd` check only when it failed).
    pub changes: Vec<HistoryChange>,
    /// The run was stopped before its end (Ctrl-C, a signal); what did not run is `cancelled`.
    pub interrupted: bool,
}

/// What an operation did to one resource.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HistoryChange {
    pub address: String,
    /// The planned action (`create`, `replace`...).
    pub action: String,
    /// How it ended: `created`, `replaced`, `updated`, `destroyed`, `reused`, `failed at
    /// STEP`, `skipped`, `cancelled` (`done` in entries written by older berths).
    pub outcome: String,
}

impl From<berth_state::ResourceKind> for Kind {
    fn from(kind: berth_state::ResourceKind) -> Kind {
        match kind {
            berth_state::ResourceKind::Host => Kind::Host,
            berth_state::ResourceKind::Backend => Kind::Backend,
            berth_state::ResourceKind::Model => Kind::Model,
        }
    }
}

impl From<&berth_state::ResourceStatus> for Status {
    fn from(status: &berth_state::ResourceStatus) -> Status {
        match status {
            berth_state::ResourceStatus::Ready => Status::Ready,
            berth_state::ResourceStatus::Failed { step, reason } => Status::Failed {
                step: step.clone(),
                reason: reason.clone(),
            },
        }
    }
}

impl From<&berth_state::ResourceRecord> for ListItem {
    fn from(r: &berth_state::ResourceRecord) -> ListItem {
        ListItem {
            address: r.address.to_string(),
            host: r.host.clone(),
            kind: r.kind.into(),
            status: (&r.status).into(),
            updated_at: r.updated_at,
        }
    }
}

impl From<berth_state::ResourceRecord> for Record {
    fn from(r: berth_state::ResourceRecord) -> Record {
        Record {
            status: (&r.status).into(),
            kind: r.kind.into(),
            address: r.address.into(),
            host: r.host,
            fingerprint: r.fingerprint,
            attributes: r.attributes,
            updated_at: r.updated_at,
        }
    }
}

impl From<berth_state::HistoryEntry> for HistoryEntry {
    fn from(h: berth_state::HistoryEntry) -> HistoryEntry {
        HistoryEntry {
            serial: h.serial,
            operation: h.operation,
            user: h.user,
            hostname: h.hostname,
            started_at: h.started_at,
            finished_at: h.finished_at,
            changes: h
                .changes
                .into_iter()
                .map(|c| HistoryChange {
                    address: c.address,
                    action: c.action,
                    outcome: c.outcome,
                })
                .collect(),
            interrupted: h.interrupted,
        }
    }
}

impl HistoryEntry {
    /// How many changes ended each way, in the order outcomes first appear: `2 created, 1
    /// cancelled`.
    pub fn tally(&self) -> String {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for change in &self.changes {
            let kind = if change.outcome.starts_with("failed") {
                "failed"
            } else {
                change.outcome.as_str()
            };
            match counts.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((kind, 1)),
            }
        }
        if counts.is_empty() {
            return "no changes".to_string();
        }
        counts
            .iter()
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
