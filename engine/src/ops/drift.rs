//! `drift`: read-only check that the hosts still run what was applied. It never changes a host
//! or the state.

use serde::Serialize;

use super::plan::{make_plan, make_plan_from};
use super::request::{DriftRequest, PlanScope};
use super::stop::Stop;
use crate::config;
use crate::connections::Connections;
use crate::error::{Error, Result};
use crate::plan::{Action, Cause, Drift, Operation};
use crate::session::{self, ReadState};
use crate::workspace::Workspace;

/// The verdict of a drift check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    /// Every host runs what was applied, and the config has nothing unapplied.
    Clean,
    /// What runs differs from what was applied.
    Drift,
    /// Nothing drifted, but the config has changes that were never applied.
    Unapplied,
    /// A host could not be observed.
    Error,
}

impl DriftStatus {
    /// The status as the JSON document names it.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftStatus::Clean => "clean",
            DriftStatus::Drift => "drift",
            DriftStatus::Unapplied => "unapplied",
            DriftStatus::Error => "error",
        }
    }
}

/// A config change nobody has applied yet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unapplied {
    pub address: berth_state::Address,
    pub action: Action,
    pub reason: String,
}

/// What a drift check found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    pub status: DriftStatus,
    /// What differs on the hosts from what was applied.
    pub drift: Vec<Drift>,
    /// Config changes that were never applied.
    pub unapplied: Vec<Unapplied>,
    /// Why hosts could not be observed.
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// The hosts that could not be observed.
    #[serde(skip)]
    pub unobserved_hosts: Vec<String>,
}

/// Observes every host and compares it with the state and the config.
pub async fn drift(req: &DriftRequest, stop: &Stop) -> Result<DriftReport> {
    let scope = PlanScope::default();
    let plan = if req.no_lock {
        let loaded = config::load(&req.inputs.dir, &req.inputs.vars)
            .map_err(|invalid| Error::InvalidConfig(Box::new(invalid)))?;
        let settings = loaded.config.settings.state(&loaded.config.dir);
        let read = ReadState::read(
            session::backend(&settings)?.as_ref(),
            "drift",
            &req.inputs.lock,
        )?;
        let view = read.view();
        let ws = Workspace::from_loaded(loaded, &view.previous())?;
        let conns = Connections::new(&ws.config);
        make_plan_from(&ws, &view, &conns, Operation::Apply, &scope, stop).await?
    } else {
        let p = session::prepare(
            &req.inputs.dir,
            &req.inputs.vars,
            "drift",
            &req.inputs.lock,
            &req.inputs.notices,
        )?;
        let conns = Connections::new(&p.ws.config);
        make_plan(&p, &conns, Operation::Apply, &scope, stop).await?
    };
    let (errors, warnings): (Vec<String>, Vec<String>) = plan
        .warnings
        .iter()
        .cloned()
        .partition(|w| w.contains("could not be observed"));
    let unapplied: Vec<Unapplied> = plan
        .changes()
        .filter(|r| {
            !matches!(r.cause, Cause::Drift) && !plan.drift.iter().any(|d| d.address == r.address)
        })
        .map(|r| Unapplied {
            address: r.address.clone(),
            action: r.action,
            reason: r.reason.clone(),
        })
        .collect();
    let status = if !errors.is_empty() {
        DriftStatus::Error
    } else if !plan.drift.is_empty() {
        DriftStatus::Drift
    } else if !unapplied.is_empty() {
        DriftStatus::Unapplied
    } else {
        DriftStatus::Clean
    };
    Ok(DriftReport {
        status,
        drift: plan.drift,
        unapplied,
        errors,
        warnings,
        unobserved_hosts: plan.unobserved_hosts,
    })
}
