//! `berth apply` and `berth destroy`: show the plan, ask, carry it out, summarise.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use berth_state::{HistoryChange, HistoryEntry};

use crate::apply::{self, ApplyOptions, ApplyReport, Display, Outcome, StateWriter, Subscriber};
use crate::cli::args::{ApplyArgs, Cli, DestroyArgs, PlanScope};
use crate::cli::ui::Ui;
use crate::cli::var_inputs;
use crate::commands::plan::{load_saved, make_plan, tokio};
use crate::connections::Connections;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::plan::{MassDestroy, Operation, Plan, render};
use crate::session::{self, Prepared};

pub fn apply(cli: &Cli, args: &ApplyArgs, ui: &Ui) -> Result<u8> {
    let p = session::prepare(&cli.dir, &var_inputs(cli), "apply", &args.lock.options())?;
    let conns = Connections::new(&p.ws.config);
    let (plan, saved) = match &args.plan_file {
        Some(path) => {
            if !args.scope.target.is_empty()
                || !args.scope.replace.is_empty()
                || !args.scope.refresh
            {
                return Err(Error::Usage {
                    message:
                        "--target, --replace and --refresh apply when planning, not to a saved plan"
                            .into(),
                    help: format!("pass them to `berth plan --out {}` instead", path.display()),
                });
            }
            (load_saved(path, &p)?, true)
        }
        None => (make_plan(&p, &conns, Operation::Apply, &args.scope)?, false),
    };
    if !args.allow_mass_destroy
        && let Some(mass) = MassDestroy::check(
            &plan,
            p.view
                .records
                .values()
                .map(|r| (r.address.as_str(), r.host.as_str())),
        )
    {
        out!(
            "{}",
            render::text(
                &plan,
                render::Style {
                    color: ui.color && ui.stdout_tty
                }
            )
        );
        return Err(Error::MassDestroy {
            reason: mass.reason(),
        });
    }
    carry_out(
        &p,
        &conns,
        &plan,
        ui,
        args.auto_approve || saved,
        args.parallelism,
        "apply",
    )
}

pub fn destroy(cli: &Cli, args: &DestroyArgs, ui: &Ui) -> Result<u8> {
    let p = session::prepare(&cli.dir, &var_inputs(cli), "destroy", &args.lock.options())?;
    let conns = Connections::new(&p.ws.config);
    let scope = PlanScope {
        refresh: true,
        target: args.target.clone(),
        replace: Vec::new(),
    };
    let plan = make_plan(&p, &conns, Operation::Destroy, &scope)?;
    carry_out(
        &p,
        &conns,
        &plan,
        ui,
        args.auto_approve,
        args.parallelism,
        "destroy",
    )
}

fn carry_out(
    p: &Prepared,
    conns: &Connections,
    plan: &Plan,
    ui: &Ui,
    approved: bool,
    parallelism: Option<usize>,
    operation: &str,
) -> Result<u8> {
    out!(
        "{}",
        render::text(
            plan,
            render::Style {
                color: ui.color && ui.stdout_tty
            }
        )
    );
    if !plan
        .resources
        .iter()
        .any(|r| r.action != crate::plan::Action::NoOp)
    {
        return Ok(exit_codes::SUCCESS);
    }
    if !approved {
        confirm(operation)?;
    }
    outln!();
    let options = ApplyOptions {
        parallelism: parallelism.unwrap_or(p.ws.config.settings.parallelism),
        stop_grace: Duration::from_secs(10),
        verify_timeout: Duration::from_secs(120),
        holder: Some(p.session.lock.info().to_string()),
        owner: p.view.meta.lineage.clone(),
    };
    let writer = StateWriter::new(p.session.store.clone());
    let display = Display::new(ui.stderr_tty, ui.color);
    let subscribers: [&dyn Subscriber; 2] = [&writer, &display];
    let started = crate::now();
    let applying = crate::interrupt::Applying::start();
    let report = tokio().block_on(apply::execute(
        &p.ws,
        plan,
        conns,
        &p.view.hmac_key(),
        &p.view.records,
        &subscribers,
        &options,
    ));
    drop(applying);
    record_history(p, &report, operation, started)?;
    summarise(&report, ui, operation);
    Ok(if report.succeeded() {
        exit_codes::SUCCESS
    } else {
        exit_codes::FAILURE
    })
}

/// Asks for "yes" on a terminal; refuses elsewhere.
fn confirm(operation: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage {
            message: format!(
                "refusing to {operation} without confirmation: stdin is not a terminal"
            ),
            help: format!("review the plan above, then run `berth {operation} --auto-approve`"),
        });
    }
    out!("\nDo you want to {operation}? Only 'yes' will be accepted: ");
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() != "yes" {
        return Err(Error::Usage {
            message: format!("{operation} cancelled"),
            help: "nothing was changed".into(),
        });
    }
    Ok(())
}

fn record_history(p: &Prepared, report: &ApplyReport, operation: &str, started: u64) -> Result<()> {
    let serial = p.session.store.meta()?.serial;
    let entry = HistoryEntry {
        serial,
        operation: operation.to_string(),
        user: p.session.lock.info().user.clone(),
        hostname: p.session.lock.info().hostname.clone(),
        started_at: started,
        finished_at: crate::now(),
        changes: report
            .results
            .iter()
            .map(|r| HistoryChange {
                address: r.address.clone(),
                action: r.action.as_str().to_string(),
                outcome: match &r.outcome {
                    Outcome::Done { .. } => "done".to_string(),
                    Outcome::Failed { step, .. } => format!("failed at {step}"),
                    Outcome::Skipped { .. } => "skipped".to_string(),
                    Outcome::Cancelled => "cancelled".to_string(),
                },
            })
            .collect(),
    };
    p.session.store.append_history(&entry)?;
    Ok(())
}

fn summarise(report: &ApplyReport, ui: &Ui, operation: &str) {
    let done = report.count(|o| matches!(o, Outcome::Done { .. }));
    let failed = report.count(|o| matches!(o, Outcome::Failed { .. }));
    let skipped = report.count(|o| matches!(o, Outcome::Skipped { .. }));
    let cancelled = report.count(|o| matches!(o, Outcome::Cancelled));
    outln!();
    if report.succeeded() {
        outln!(
            "{} {} complete: {done} done.",
            ui.green("✓"),
            capitalise(operation)
        );
        return;
    }
    outln!(
        "{} {} {}: {done} done, {failed} failed, {skipped} skipped, {cancelled} cancelled.",
        ui.red("✗"),
        capitalise(operation),
        if report.interrupted {
            "interrupted"
        } else {
            "failed"
        }
    );
    for r in report.failed() {
        if let Outcome::Failed {
            step,
            reason,
            log_tail,
        } = &r.outcome
        {
            errln!(
                "\n{} {} on host {}, step {step}:\n  {reason}",
                ui.red("error:"),
                r.address,
                r.host
            );
            if let Some(tail) = log_tail.as_deref().filter(|t| !t.trim().is_empty()) {
                errln!("  log tail:");
                for line in tail.lines() {
                    errln!("    | {line}");
                }
            }
        }
    }
    if failed > 0 {
        errln!("\nRun `berth plan` to see what the next apply would do about them.");
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}
