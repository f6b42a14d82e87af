//! The `berth drift --json` document: what differs on the hosts from what was applied, and the
//! config changes never applied.

use schemars::JsonSchema;
use serde::Serialize;

use crate::ops::{DriftReport, DriftStatus};

/// The result of a drift check.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Report {
    pub status: Status,
    /// What differs on the hosts from what was applied.
    pub drift: Vec<Drift>,
    /// Config changes that were never applied.
    pub unapplied: Vec<Unapplied>,
    /// Why hosts could not be observed.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// The hosts that could not be observed, for the text view.
    #[serde(skip)]
    pub unobserved_hosts: Vec<String>,
}

/// The verdict; it also decides the exit code (0, 2, 3, 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every host runs what was applied, and the config has nothing unapplied.
    Clean,
    /// What runs differs from what was applied.
    Drift,
    /// Nothing drifted, but the config has changes that were never applied.
    Unapplied,
    /// A host could not be observed.
    Error,
}

/// One resource that no longer matches what was applied.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Drift {
    pub address: String,
    pub host: String,
    /// What differs.
    pub what: String,
}

/// A config change nobody has applied yet.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Unapplied {
    pub address: String,
    /// The planned action, as in the plan (`create`, `replace`...).
    pub action: String,
    pub reason: String,
    /// The action's plan symbol, for the text view.
    #[serde(skip)]
    pub symbol: String,
}

impl From<DriftReport> for Report {
    fn from(r: DriftReport) -> Report {
        Report {
            status: match r.status {
                DriftStatus::Clean => Status::Clean,
                DriftStatus::Drift => Status::Drift,
                DriftStatus::Unapplied => Status::Unapplied,
                DriftStatus::Error => Status::Error,
            },
            drift: r
                .drift
                .into_iter()
                .map(|d| Drift {
                    address: d.address.to_string(),
                    host: d.host,
                    what: d.what,
                })
                .collect(),
            unapplied: r
                .unapplied
                .into_iter()
                .map(|u| Unapplied {
                    // The plan document's name of the action (`no_op`, where `as_str` says
                    // `no-op`), so both documents agree.
                    action: serde_json::to_value(u.action)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_else(|| u.action.as_str().to_string()),
                    symbol: u.action.symbol().to_string(),
                    address: u.address.to_string(),
                    reason: u.reason,
                })
                .collect(),
            errors: r.errors,
            warnings: r.warnings,
            unobserved_hosts: r.unobserved_hosts,
        }
    }
}
