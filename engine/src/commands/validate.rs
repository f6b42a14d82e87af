//! `berth validate [--json]`: every finding of every file at once.

use serde::Serialize;

use super::Invocation;
use super::ui::Ui;
use crate::config::{FindingJson, Findings, Sources};
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::placement::Previous;
use crate::workspace::Workspace;

/// The `--json` document.
#[derive(Debug, Serialize)]
struct Report {
    valid: bool,
    error_count: usize,
    warning_count: usize,
    findings: Vec<FindingJson>,
}

fn to_report(findings: &Findings, sources: &Sources) -> Report {
    let errors = findings.error_count();
    Report {
        valid: errors == 0,
        error_count: errors,
        warning_count: findings.len() - errors,
        findings: findings.iter().map(|f| f.to_json(sources)).collect(),
    }
}

pub fn run(inv: &Invocation, json: bool, ui: &Ui) -> Result<u8> {
    match Workspace::open(&inv.dir, &inv.vars, &Previous::default()) {
        Ok(ws) => {
            if json {
                print_json(&to_report(&ws.warnings, &ws.config.sources));
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
            print_json(&to_report(&invalid.findings, &invalid.sources));
            Ok(exit_codes::FAILURE)
        }
        Err(err @ Error::Cycle(_)) if json => {
            let finding = crate::config::Finding::unlocated(
                crate::config::Code::DependencyCycle,
                err.to_string(),
            );
            let mut findings = Findings::default();
            findings.push(finding);
            print_json(&to_report(&findings, &Sources::default()));
            Ok(exit_codes::FAILURE)
        }
        Err(err) => {
            ui.report(&err);
            Ok(exit_codes::FAILURE)
        }
    }
}

fn print_json(report: &Report) {
    outln!(
        "{}",
        serde_json::to_string_pretty(report).expect("serialisable")
    );
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
