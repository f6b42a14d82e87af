//! `plan`: refresh (unless told not to), diff, and optionally save the plan; and reading a
//! saved plan back for `apply`.

use std::path::Path;

use berth_state::PlanFile;

use super::request::{PlanRequest, PlanScope};
use super::saved_vars;
use super::stop::{Stop, StopLevel};
use crate::connections::Connections;
use crate::error::{Error, Result};
use crate::plan::{self as planner, Operation, Plan, PlanOptions, StateView};
use crate::refresh;
use crate::session::{self, Prepared};
use crate::workspace::Workspace;

/// Makes a plan under the state lock; saves it to `req.out` when set.
pub async fn plan(req: &PlanRequest, stop: &Stop) -> Result<Plan> {
    if let Some(path) = &req.out {
        check_out_dir(path)?;
    }
    let p = session::prepare(
        &req.inputs.dir,
        &req.inputs.vars,
        "plan",
        &req.inputs.lock,
        &req.inputs.notices,
    )?;
    let conns = Connections::new(&p.ws.config);
    let plan = make_plan(&p, &conns, Operation::Apply, &req.scope, stop).await?;
    if let Some(path) = &req.out {
        let mut file = PlanFile::new(
            &p.view.meta,
            plan.config_hash.clone(),
            env!("CARGO_PKG_VERSION"),
            serde_json::to_value(&plan).expect("serialisable"),
        );
        saved_vars::record(&mut file, &p.ws.config, &p.view.hmac_key());
        file.write(path)?;
    }
    Ok(plan)
}

/// Refuses a plan file path whose directory does not exist, before anything is planned.
fn check_out_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => return Ok(()),
    };
    if dir.is_dir() {
        return Ok(());
    }
    Err(Error::Usage {
        message: format!(
            "cannot save the plan to {}: the directory {} does not exist",
            path.display(),
            dir.display()
        ),
        help: format!(
            "create it first (`mkdir -p {}`), or choose another path",
            dir.display()
        ),
    })
}

/// Refreshes (unless `scope` says not to) and plans. A cancel during the refresh ends it
/// (its read-only commands on the hosts are stopped) with [`Error::Cancelled`].
pub(crate) async fn make_plan(
    p: &Prepared,
    conns: &Connections,
    operation: Operation,
    scope: &PlanScope,
    stop: &Stop,
) -> Result<Plan> {
    make_plan_from(&p.ws, &p.view, conns, operation, scope, stop).await
}

/// [`make_plan`] from a workspace and a view of the state, however the state was read.
pub(crate) async fn make_plan_from(
    ws: &Workspace,
    view: &StateView,
    conns: &Connections,
    operation: Operation,
    scope: &PlanScope,
    stop: &Stop,
) -> Result<Plan> {
    let observed = if scope.refresh {
        tokio::select! {
            observed = refresh::refresh(ws, view, conns) => Some(observed),
            () = stop.cancelled() => {
                return Err(Error::Cancelled { reason: stop.reason(StopLevel::Cancel) });
            }
        }
    } else {
        None
    };
    let options = PlanOptions {
        operation,
        targets: scope.targets.clone(),
        replace: scope.replace.clone(),
    };
    let hash = session::config_hash(ws, &view.hmac_key());
    planner::plan(ws, view, observed.as_ref(), &options, &hash)
}

/// Reads a saved plan and checks that it still applies to this state and config.
pub fn load_saved(path: &Path, p: &Prepared) -> Result<Plan> {
    let file = PlanFile::read(path)?;
    file.check_current(&p.view.meta)?;
    let hash = session::config_hash(&p.ws, &p.view.hmac_key());
    if file.config_hash != hash {
        return Err(Error::Usage {
            message: format!(
                "the config or its variables changed since the plan {} was made",
                path.display()
            ),
            help: "run `berth plan --out FILE` again and apply the new plan".into(),
        });
    }
    let version = file
        .plan
        .get("format_version")
        .and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(crate::plan::PLAN_JSON_VERSION)) {
        return Err(Error::Usage {
            message: format!(
                "{} holds a plan of format {}; this berth reads format {}",
                path.display(),
                version.map_or("(none)".to_string(), |v| v.to_string()),
                crate::plan::PLAN_JSON_VERSION
            ),
            help: "make the plan again with this berth".into(),
        });
    }
    serde_json::from_value(file.plan).map_err(|e| Error::Usage {
        message: format!(
            "{} holds a plan this berth cannot read: {e}",
            path.display()
        ),
        help: "make the plan again with this berth".into(),
    })
}
