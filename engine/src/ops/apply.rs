//! `apply` and `destroy`: make (or read) the plan under the state lock, let the caller review
//! it, carry it out with the executor, and keep the state and its history from the events.

use std::time::Duration;

use berth_state::{Address, Intent, PlanFile};

use super::plan::{load_saved, make_plan};
use super::request::{ApplyRequest, DestroyRequest, PlanScope, PlanSource};
use super::saved_vars;
use super::stop::Stop;
use crate::apply::{self, ApplyOptions, ApplyReport, HistoryWriter, StateWriter, Subscriber};
use crate::connections::Connections;
use crate::error::{Error, Result};
use crate::plan::{Action, MassDestroy, Operation, Plan};
use crate::session::{self, Prepared};

/// How long a stopping service gets between TERM and KILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a backend's verify_cmd may run.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(120);

/// The caller's look at a plan before it is carried out.
pub trait Review {
    /// Shows the plan (before any check that may refuse it).
    fn show(&self, _plan: &Plan) {}

    /// Decides whether a plan with changes is carried out; an error refuses it. Only asked
    /// when the request is not approved already.
    fn confirm(&self, operation: Operation, _plan: &Plan) -> Result<()> {
        Err(Error::Usage {
            message: format!("refusing to {} without approval", operation_name(operation)),
            help: "approve the request (`auto_approve`) or review it first".into(),
        })
    }
}

/// What an apply or destroy did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The plan that was carried out.
    pub plan: Plan,
    /// Every resource's outcome; `None` when the plan had nothing to do.
    pub report: Option<ApplyReport>,
}

/// Carries out a fresh or saved plan.
pub async fn apply(
    req: &ApplyRequest,
    review: &dyn Review,
    subscribers: &[&dyn Subscriber],
    stop: &Stop,
) -> Result<Applied> {
    // A saved plan brings the variables it was made with; its sensitive ones must be given.
    let saved_file = match &req.source {
        PlanSource::Saved(path) => {
            let file = PlanFile::read(path)?;
            let missing = saved_vars::missing_secrets(&file, &req.inputs.vars);
            if !missing.is_empty() {
                let names: Vec<&str> = missing.iter().map(String::as_str).collect();
                return Err(saved_vars::secrets_needed(path, &names));
            }
            Some(file)
        }
        PlanSource::Fresh(_) => None,
    };
    let vars = match &saved_file {
        Some(file) => saved_vars::inputs(file, &req.inputs.vars),
        None => req.inputs.vars.clone(),
    };
    let p = session::prepare(
        &req.inputs.dir,
        &vars,
        "apply",
        &req.inputs.lock,
        &req.inputs.notices,
    )?;
    let conns = Connections::new(&p.ws.config);
    let (plan, saved) = match &req.source {
        PlanSource::Saved(path) => {
            if let Some(file) = &saved_file {
                saved_vars::check_secrets(file, path, &p.ws.config, &p.view.hmac_key())?;
            }
            (load_saved(path, &p)?, true)
        }
        PlanSource::Fresh(scope) => (
            make_plan(&p, &conns, Operation::Apply, scope, stop).await?,
            false,
        ),
    };
    if !req.allow_mass_destroy
        && let Some(mass) = MassDestroy::check(
            &plan,
            p.view
                .records
                .values()
                .map(|r| (r.address.as_str(), r.host.as_str())),
        )
    {
        review.show(&plan);
        return Err(Error::MassDestroy {
            reason: mass.reason(),
        });
    }
    let run = Run {
        p: &p,
        conns: &conns,
        approved: req.auto_approve || saved,
        parallelism: req.parallelism,
        review,
        subscribers,
        stop,
        history_name: None,
    };
    run.carry_out(plan).await
}

/// Stops and forgets everything berth manages, or `req.targets`.
pub async fn destroy(
    req: &DestroyRequest,
    review: &dyn Review,
    subscribers: &[&dyn Subscriber],
    stop: &Stop,
) -> Result<Applied> {
    let p = session::prepare(
        &req.inputs.dir,
        &req.inputs.vars,
        "destroy",
        &req.inputs.lock,
        &req.inputs.notices,
    )?;
    let conns = Connections::new(&p.ws.config);
    let scope = PlanScope {
        refresh: true,
        targets: req.targets.clone(),
        replace: Vec::new(),
    };
    let plan = make_plan(&p, &conns, Operation::Destroy, &scope, stop).await?;
    let run = Run {
        p: &p,
        conns: &conns,
        approved: req.auto_approve,
        parallelism: req.parallelism,
        review,
        subscribers,
        stop,
        history_name: None,
    };
    run.carry_out(plan).await
}

/// What carrying out a plan needs.
pub(super) struct Run<'a> {
    pub p: &'a Prepared,
    pub conns: &'a Connections,
    pub approved: bool,
    pub parallelism: Option<usize>,
    pub review: &'a dyn Review,
    pub subscribers: &'a [&'a dyn Subscriber],
    pub stop: &'a Stop,
    /// What the history calls the change; `None`: the plan's operation.
    pub history_name: Option<&'static str>,
}

impl Run<'_> {
    pub(super) async fn carry_out(self, plan: Plan) -> Result<Applied> {
        let p = self.p;
        self.review.show(&plan);
        let changes = plan.resources.iter().any(|r| r.action != Action::NoOp);
        if changes && !self.approved {
            self.review.confirm(plan.operation, &plan)?;
        }
        for address in settled_intents(&plan, &p.view.intents) {
            p.session.store.clear_intent(address.as_str())?;
        }
        if !changes {
            return Ok(Applied { plan, report: None });
        }
        let options = ApplyOptions {
            parallelism: self.parallelism.unwrap_or(p.ws.config.settings.parallelism),
            stop_grace: STOP_GRACE,
            verify_timeout: VERIFY_TIMEOUT,
            holder: Some(p.session.lock.info().to_string()),
            owner: p.view.meta.lineage.clone(),
            stop: self.stop.clone(),
        };
        let info = p.session.lock.info();
        let writer = StateWriter::new(p.session.store.clone());
        let history = HistoryWriter::new(
            p.session.store.clone(),
            self.history_name
                .unwrap_or_else(|| operation_name(plan.operation)),
            &info.user,
            &info.hostname,
        );
        // The state and its history first: a display that reports a resource as done reports
        // what is already saved.
        let mut subscribers: Vec<&dyn Subscriber> = vec![&writer, &history];
        subscribers.extend_from_slice(self.subscribers);
        let report = apply::execute(
            &p.ws,
            &plan,
            self.conns,
            &p.view.hmac_key(),
            &p.view.records,
            &subscribers,
            &options,
        )
        .await;
        if let Some(e) = history.take_failure() {
            return Err(Error::State(e));
        }
        Ok(Applied {
            plan,
            report: Some(report),
        })
    }
}

/// What an interrupted apply left unfinished that this plan's refresh found as the config
/// wants it: a resource with nothing to do on a host that answered. (Killed between recording a
/// resource and clearing its intent, an apply leaves an intent no later change would clear.)
fn settled_intents<'i>(plan: &Plan, intents: &'i [Intent]) -> Vec<&'i Address> {
    if !plan.refreshed {
        return Vec::new();
    }
    intents
        .iter()
        .filter(|intent| {
            plan.resources.iter().any(|r| {
                r.address == intent.address
                    && r.action == Action::NoOp
                    && !plan.unobserved_hosts.contains(&r.host)
            })
        })
        .map(|intent| &intent.address)
        .collect()
}

/// The operation's name, as the lock, the history and messages say it.
fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Apply => "apply",
        Operation::Destroy => "destroy",
    }
}
