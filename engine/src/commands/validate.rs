//! `berth validate [--json]`: every finding of every file at once. The text view renders the
//! findings as miette diagnostics with their source excerpts, which the document (file, line,
//! column) cannot carry; both come from the same findings.

use super::Invocation;
use super::ui::Ui;
use crate::config::{Findings, Sources};
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::output::{self, validate::Report};
use crate::placement::Previous;
use crate::workspace::Workspace;

pub fn run(inv: &Invocation, json: bool, ui: &Ui) -> Result<u8> {
    match Workspace::open(&inv.dir, &inv.vars, &Previous::default()) {
        Ok(ws) => {
            if json {
                print_json(&Report::new(&ws.warnings, &ws.config.sources));
            } else {
                ui.print_findings(&ws.warnings, &ws.config.sources);
                let active = ws.placements.iter().filter(|p| p.active).count();
                outln!(
                    "{} The config is valid: {} host{}, {} backend{}, {} model{}, {} placement{}.",
                    ui.green("✓"),
                    ws.config.hosts.len(),
                    plural(ws.config.hosts.len()),
                    ws.config.backends.len(),
                    plural(ws.config.backends.len()),
                    ws.config.models.len(),
                    plural(ws.config.models.len()),
                    active,
                    plural(active),
                );
            }
            Ok(exit_codes::SUCCESS)
        }
        Err(Error::InvalidConfig(invalid)) if json => {
            print_json(&Report::new(&invalid.findings, &invalid.sources));
            Ok(exit_codes::FAILURE)
        }
        Err(err @ Error::Cycle(_)) if json => {
            let finding = crate::config::Finding::unlocated(
                crate::config::Code::DependencyCycle,
                err.to_string(),
            );
            let mut findings = Findings::default();
            findings.push(finding);
            print_json(&Report::new(&findings, &Sources::default()));
            Ok(exit_codes::FAILURE)
        }
        Err(err) => {
            ui.report(&err);
            Ok(exit_codes::FAILURE)
        }
    }
}

fn print_json(report: &Report) {
    outln!("{}", output::to_json(report));
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
