//! `berth drift [--json]`: renders the read-only drift check. Exit 0 clean, 2 drift, 3 no drift
//! but unapplied config changes, 1 error (including a host that could not be observed).

use super::Invocation;
use crate::error::Result;
use crate::exit_codes;
use crate::ops::{self, DriftRequest};
use crate::output::{self, drift::Report, drift::Status};

pub fn run(inv: &Invocation, json: bool, no_lock: bool) -> Result<u8> {
    let ui = &inv.ui;
    let req = DriftRequest {
        inputs: inv.inputs(),
        no_lock,
    };
    let report = Report::from(inv.block_on_with_progress("drift", ops::drift(&req, &inv.stop))?);
    let code = match report.status {
        Status::Clean => exit_codes::SUCCESS,
        Status::Drift => exit_codes::CHANGES,
        Status::Unapplied => exit_codes::UNAPPLIED,
        Status::Error => exit_codes::FAILURE,
    };
    if json {
        outln!("{}", output::to_json(&report));
        return Ok(code);
    }
    for w in &report.errors {
        errln!("{} {w}", ui.red("error:"));
    }
    for w in &report.warnings {
        errln!("{} {w}", ui.yellow("warning:"));
    }
    if report.drift.is_empty() && !report.errors.is_empty() {
        outln!(
            "No drift on the hosts that could be observed; {} could not be.",
            report.unobserved_hosts.join(", ")
        );
    } else if report.drift.is_empty() {
        outln!("No drift: every host runs what was applied.");
    } else {
        outln!(
            "Drift: {} resource(s) no longer match what was applied:",
            report.drift.len()
        );
        for d in &report.drift {
            outln!("  {} {}: {}", ui.yellow("!"), d.address, d.what);
        }
    }
    if !report.unapplied.is_empty() {
        outln!(
            "\nThe config has {} change(s) that were never applied:",
            report.unapplied.len()
        );
        for r in &report.unapplied {
            outln!("  {} {}: {}", r.symbol, r.address, r.reason);
        }
    }
    if code != exit_codes::SUCCESS && code != exit_codes::FAILURE {
        outln!("\nRun `berth apply` to converge.");
    }
    Ok(code)
}
