//! `berth select --model ID` and `berth select status`: show the switch plan, carry it out
//! through `ops::select` with the progress display, and report how each host ended (the new
//! model's log tail when it failed, and the rollback). Exit 0 when every host switched, 1
//! otherwise.

use super::Invocation;
use super::ui::table;
use crate::apply::Display;
use crate::error::Result;
use crate::exit_codes;
use crate::ops::{self, Review, SelectRequest, SwitchOutcome};
use crate::output::{self, select::Report, select::Status};
use crate::plan::Plan;

/// What `berth select` was asked for.
#[derive(Debug, Clone)]
pub struct SelectCommand {
    pub model: String,
    pub restart: bool,
    pub dry_run: bool,
    pub json: bool,
}

/// Shows each plan of the switch on stdout (nothing in JSON mode: the document holds it).
struct ShowPlan<'a> {
    inv: &'a Invocation,
    json: bool,
}

impl Review for ShowPlan<'_> {
    fn show(&self, plan: &Plan) {
        if !self.json {
            super::plan::print_text(self.inv, plan);
        }
    }
}

pub fn run(inv: &Invocation, cmd: &SelectCommand) -> Result<u8> {
    let ui = &inv.ui;
    let req = SelectRequest {
        inputs: inv.inputs(),
        model: cmd.model.clone(),
        restart: cmd.restart,
        dry_run: cmd.dry_run,
        parallelism: None,
    };
    let review = ShowPlan {
        inv,
        json: cmd.json,
    };
    let display = Display::new(inv.ui.stderr_tty, inv.ui.stdout_tty, inv.ui.color);
    // In JSON mode stdout holds the document alone; progress lines would break it.
    let subscribers: Vec<&dyn crate::apply::Subscriber> =
        if cmd.json { Vec::new() } else { vec![&display] };
    let selected = inv.block_on(ops::select(&req, &review, &subscribers, &inv.stop))?;
    let code = if selected.succeeded() {
        exit_codes::SUCCESS
    } else {
        exit_codes::FAILURE
    };
    let report = Report::from(&selected);
    if cmd.json {
        outln!("{}", output::to_json(&report));
        return Ok(code);
    }
    if cmd.dry_run {
        outln!("\nDry run: nothing was changed.");
        return Ok(code);
    }
    outln!();
    for h in &selected.hosts {
        let from = h.from.as_deref().unwrap_or("nothing");
        match h.outcome {
            SwitchOutcome::Switched => outln!(
                "{} {}: group {} runs {} (was {from}), ready after {:.1}s",
                ui.green("✓"),
                h.host,
                selected.group,
                h.to,
                h.elapsed.as_secs_f64()
            ),
            SwitchOutcome::RolledBack => outln!(
                "{} {}: {} failed; rolled back to {from}, which runs and answers again",
                ui.red("✗"),
                h.host,
                h.to
            ),
            SwitchOutcome::RollbackFailed => outln!(
                "{} {}: {} failed, and the rollback to {from} failed too: group {} runs nothing there",
                ui.red("✗"),
                h.host,
                h.to,
                selected.group
            ),
            SwitchOutcome::Failed => outln!(
                "{} {}: {} failed; nothing ran there before it to go back to",
                ui.red("✗"),
                h.host,
                h.to
            ),
            SwitchOutcome::Cancelled => outln!("{} {}: interrupted", ui.yellow("!"), h.host),
            SwitchOutcome::Planned => {}
        }
        for (what, failure) in [(h.to.as_str(), &h.failure), (from, &h.rollback_failure)] {
            let Some(e) = failure else { continue };
            errln!(
                "\n{} {what} on host {}, step {}:\n  {}",
                ui.red("error:"),
                h.host,
                e.at(),
                e.message
            );
            if let Some(tail) = e.log_tail.as_deref().filter(|t| !t.trim().is_empty()) {
                errln!("  log tail:");
                for line in tail.lines() {
                    errln!("    | {line}");
                }
            }
        }
    }
    if code != exit_codes::SUCCESS {
        errln!(
            "\nselect of {} did not complete on every host; `berth select status` shows what runs where (docs/troubleshooting.md, \"select rolled back\")",
            selected.model
        );
    }
    Ok(code)
}

pub fn status(inv: &Invocation, json: bool) -> Result<u8> {
    let ui = &inv.ui;
    let status = inv.block_on(ops::select_status(&inv.inputs(), &inv.stop))?;
    let doc = Status::from(&status);
    if json {
        outln!("{}", output::to_json(&doc));
        return Ok(exit_codes::SUCCESS);
    }
    for w in &doc.warnings {
        errln!("{} {w}", ui.yellow("warning:"));
    }
    if doc.groups.is_empty() {
        outln!("No model groups are placed on any host.");
    } else {
        let rows: Vec<Vec<String>> = doc
            .groups
            .iter()
            .map(|g| {
                vec![
                    g.group.clone(),
                    g.host.clone(),
                    format!("{} ({})", g.selected, g.selected_by),
                    if g.ready {
                        "ready".to_string()
                    } else {
                        g.detail.clone()
                    },
                    if g.running.is_empty() {
                        "-".to_string()
                    } else {
                        g.running.join(", ")
                    },
                    g.selected_at
                        .or(g.running_since)
                        .map_or("-".to_string(), |t| {
                            humantime::format_rfc3339_seconds(
                                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
                            )
                            .to_string()
                        }),
                ]
            })
            .collect();
        out!(
            "{}",
            table(
                &["GROUP", "HOST", "SELECTED", "STATE", "RUNNING", "SINCE"],
                &rows
            )
        );
    }
    match &doc.lock_holder {
        Some(holder) => outln!("\nState lock: {holder}"),
        None => outln!("\nState lock: free"),
    }
    Ok(exit_codes::SUCCESS)
}
