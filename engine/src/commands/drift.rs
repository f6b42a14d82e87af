//! `berth drift [--json]`: read-only check that the hosts still run what was applied. Exit 0
//! clean, 2 drift, 3 no drift but unapplied config changes, 1 error (including a host that
//! could not be observed). It never changes a host or the state.

use serde_json::json;

use crate::cli::args::{Cli, DriftArgs, PlanScope};
use crate::cli::ui::Ui;
use crate::cli::var_inputs;
use crate::commands::plan::make_plan;
use crate::connections::Connections;
use crate::error::Result;
use crate::exit_codes;
use crate::plan::Operation;
use crate::session;

pub fn run(cli: &Cli, args: &DriftArgs, ui: &Ui) -> Result<u8> {
    let p = session::prepare(&cli.dir, &var_inputs(cli), "drift", &args.lock.options())?;
    let conns = Connections::new(&p.ws.config);
    let scope = PlanScope {
        refresh: true,
        target: Vec::new(),
        replace: Vec::new(),
    };
    let plan = make_plan(&p, &conns, Operation::Apply, &scope)?;
    let (unreachable, warnings): (Vec<String>, Vec<String>) = plan
        .warnings
        .iter()
        .cloned()
        .partition(|w| w.contains("could not be observed"));
    let unapplied: Vec<_> = plan
        .changes()
        .filter(|r| !matches!(r.cause, crate::plan::Cause::Drift))
        .collect();
    let code = if !unreachable.is_empty() {
        exit_codes::FAILURE
    } else if !plan.drift.is_empty() {
        exit_codes::CHANGES
    } else if !unapplied.is_empty() {
        exit_codes::UNAPPLIED
    } else {
        exit_codes::SUCCESS
    };
    if args.json {
        let doc = json!({
            "status": match code { exit_codes::SUCCESS => "clean", exit_codes::CHANGES => "drift", exit_codes::UNAPPLIED => "unapplied", _ => "error" },
            "drift": plan.drift,
            "unapplied": unapplied.iter().map(|r| json!({"address": r.address, "action": r.action, "reason": r.reason})).collect::<Vec<_>>(),
            "errors": unreachable,
            "warnings": warnings,
        });
        outln!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("serialisable")
        );
        return Ok(code);
    }
    for w in &unreachable {
        errln!("{} {w}", ui.red("error:"));
    }
    for w in &warnings {
        errln!("{} {w}", ui.yellow("warning:"));
    }
    if plan.drift.is_empty() && !unreachable.is_empty() {
        outln!(
            "No drift on the hosts that could be observed; {} could not be.",
            plan.unobserved_hosts.join(", ")
        );
    } else if plan.drift.is_empty() {
        outln!("No drift: every host runs what was applied.");
    } else {
        outln!(
            "Drift: {} resource(s) no longer match what was applied:",
            plan.drift.len()
        );
        for d in &plan.drift {
            outln!("  {} {}: {}", ui.yellow("!"), d.address, d.what);
        }
    }
    if !unapplied.is_empty() {
        outln!(
            "\nThe config has {} change(s) that were never applied:",
            unapplied.len()
        );
        for r in &unapplied {
            outln!("  {} {}: {}", r.action.symbol(), r.address, r.reason);
        }
    }
    if code != exit_codes::SUCCESS && code != exit_codes::FAILURE {
        outln!("\nRun `berth apply` to converge.");
    }
    Ok(code)
}
