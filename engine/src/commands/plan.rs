//! `berth plan`: refresh, diff, show; `--out` saves the plan for `berth apply FILE`.

use std::path::PathBuf;

use super::Invocation;
use crate::error::Result;
use crate::exit_codes;
use crate::ops::{self, PlanRequest, PlanScope};
use crate::plan::{Plan, render};

/// How the plan is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
}

/// What `berth plan` was asked for.
#[derive(Debug, Clone)]
pub struct PlanCommand {
    pub scope: PlanScope,
    pub out: Option<PathBuf>,
    pub format: PlanFormat,
    /// Exit 2 when there are changes, 1 when a host could not be observed.
    pub detailed_exitcode: bool,
}

pub fn run(inv: &Invocation, cmd: &PlanCommand) -> Result<u8> {
    let req = PlanRequest {
        inputs: inv.inputs(),
        scope: cmd.scope.clone(),
        out: cmd.out.clone(),
    };
    let plan = inv.block_on_with_progress("plan", ops::plan(&req, &inv.stop))?;
    match cmd.format {
        PlanFormat::Text => print_text(inv, &plan),
        PlanFormat::Json => outln!("{}", render::json(&plan)),
        PlanFormat::Markdown => out!("{}", render::markdown(&plan)),
    }
    if let Some(path) = &cmd.out
        && cmd.format == PlanFormat::Text
    {
        outln!(
            "\nSaved the plan to {}: apply it with `berth apply {}`.",
            path.display(),
            path.display()
        );
    }
    if cmd.detailed_exitcode && !plan.unobserved_hosts.is_empty() {
        return Ok(exit_codes::FAILURE);
    }
    Ok(if cmd.detailed_exitcode && plan.has_changes() {
        exit_codes::CHANGES
    } else {
        exit_codes::SUCCESS
    })
}

/// Prints the plan as text, coloured on a terminal.
pub(crate) fn print_text(inv: &Invocation, plan: &Plan) {
    out!(
        "{}",
        render::text(
            plan,
            render::Style {
                color: inv.ui.color && inv.ui.stdout_tty
            }
        )
    );
}
