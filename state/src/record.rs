//! The plain data berth keeps in its state; no storage, no I/O, and no opinion on what the
//! engine puts in `attributes`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Address;

/// What a resource address names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// A machine (`host.gpu-a`).
    Host,
    /// A backend on a host (`backend.cuda@gpu-a`).
    Backend,
    /// A model deployment on a host (`model.qwen2.5-7b@gpu-a`).
    Model,
}

/// How the last operation on a resource ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ResourceStatus {
    /// Applied and, for models, past the probe gate.
    Ready,
    /// A step failed; the next plan replaces the resource.
    Failed {
        /// The step that failed (`verify`, `start`, `probe`...).
        step: String,
        /// What went wrong, for display.
        reason: String,
    },
}

/// One managed resource as last applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    /// The resource address, also its key in the store.
    pub address: Address,
    /// What kind of resource the address names.
    pub kind: ResourceKind,
    /// The host id the resource lives on.
    pub host: String,
    /// How the last operation on it ended.
    pub status: ResourceStatus,
    /// Hash of the rendered launch spec, as also carried on the host.
    pub fingerprint: Option<String>,
    /// Engine-defined details (rendered command with secrets redacted, port, backend, probe).
    #[serde(default)]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// When the record was last written, in Unix seconds.
    pub updated_at: u64,
}

/// Identity and version of one state store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// 32 hex characters, random at creation: tells one state from another.
    pub lineage: String,
    /// Bumped by every change of resources or selections.
    pub serial: u64,
    /// Layout version of the store, checked on open.
    pub format_version: u32,
    /// 64 hex characters, random at creation: keys the fingerprint HMAC of secret values.
    pub hmac_key: String,
}

// The key lets anyone holding a fingerprint test guesses of a secret offline: keep it out of logs.
impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meta")
            .field("lineage", &self.lineage)
            .field("serial", &self.serial)
            .field("format_version", &self.format_version)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

/// One apply (or destroy, or select): what changed, who ran it, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The state serial when the operation finished.
    pub serial: u64,
    /// The command (`apply`, `destroy`, `select`...).
    pub operation: String,
    /// Who ran it.
    pub user: String,
    /// Where it ran.
    pub hostname: String,
    /// Start, in Unix seconds.
    pub started_at: u64,
    /// End, in Unix seconds.
    pub finished_at: u64,
    /// One line per resource touched.
    pub changes: Vec<HistoryChange>,
    /// The run was stopped before its end (Ctrl-C, a signal): what did not run is listed as
    /// cancelled. Absent in entries written before berth recorded it.
    #[serde(default)]
    pub interrupted: bool,
}

/// What an operation did to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryChange {
    /// The resource address.
    pub address: String,
    /// The planned action (`create`, `replace`...).
    pub action: String,
    /// How it ended: `created`, `replaced`, `updated`, `destroyed`, `reused`, `failed at
    /// STEP`, `skipped`, `cancelled` (`done` in entries of older berths).
    pub outcome: String,
}

/// A mutation of a host that has started and not yet been recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The resource being changed, also the key in the store.
    pub address: Address,
    /// The action under way.
    pub action: String,
    /// The berth process that wrote it.
    pub pid: u32,
    /// When it was written, in Unix seconds.
    pub started_at: u64,
}

/// The member of a model group chosen to run on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// The group name.
    pub group: String,
    /// The host id.
    pub host: String,
    /// The selected model id.
    pub model: String,
    /// When it was selected, in Unix seconds.
    pub selected_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_kind_have_the_documented_json_shape() {
        let record = ResourceRecord {
            address: "model.qwen2.5-7b@gpu-a".parse().unwrap(),
            kind: ResourceKind::Model,
            host: "gpu-a".into(),
            status: ResourceStatus::Failed {
                step: "probe".into(),
                reason: "timed out after 120s".into(),
            },
            fingerprint: None,
            attributes: BTreeMap::new(),
            updated_at: 7,
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["kind"], "model");
        assert_eq!(
            json["status"],
            serde_json::json!({"state": "failed", "step": "probe", "reason": "timed out after 120s"})
        );
        let ready = serde_json::to_value(ResourceStatus::Ready).unwrap();
        assert_eq!(ready, serde_json::json!({"state": "ready"}));
    }

    #[test]
    fn meta_debug_hides_the_hmac_key() {
        let meta = Meta {
            lineage: "l".into(),
            serial: 1,
            format_version: 1,
            hmac_key: "deadbeefsecret".into(),
        };
        let shown = format!("{meta:?}");
        assert!(!shown.contains("deadbeefsecret"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
