//! `berth health [--scan-ports SPEC] [--json]`: renders the read-only health check. Exit 0 when
//! every placed model answers ready, 2 when one does not, 1 when a host could not be reached.

use super::Invocation;
use super::ui::table;
use crate::error::Result;
use crate::exit_codes;
use crate::ops::{self, HealthRequest};
use crate::output::{self, health::State};

pub fn run(inv: &Invocation, scan_ports: Option<Vec<u16>>, json: bool) -> Result<u8> {
    let ui = &inv.ui;
    let req = HealthRequest {
        inputs: inv.inputs(),
        scan_ports,
    };
    let report = inv.block_on(ops::health(&req, &inv.stop))?;
    let code = if report.any_unreachable() {
        exit_codes::FAILURE
    } else if report.all_ready() {
        exit_codes::SUCCESS
    } else {
        exit_codes::CHANGES
    };
    if json {
        outln!("{}", output::to_json(&report));
        return Ok(code);
    }
    for w in &report.warnings {
        errln!("{} {w}", ui.yellow("warning:"));
    }
    for h in report.hosts.iter().filter(|h| !h.reachable) {
        errln!(
            "{} {}",
            ui.red("error:"),
            h.error.as_deref().unwrap_or("unreachable")
        );
    }
    let rows: Vec<Vec<String>> = report
        .hosts
        .iter()
        .flat_map(|h| {
            h.models.iter().map(|m| {
                let state = match m.state {
                    State::Ready => ui.green(m.state.as_str()),
                    State::Loading => ui.yellow(m.state.as_str()),
                    State::Down | State::Unknown => ui.red(m.state.as_str()),
                };
                vec![
                    h.host.clone(),
                    m.model.clone(),
                    m.port.to_string(),
                    state,
                    m.detail.clone(),
                ]
            })
        })
        .collect();
    if rows.is_empty() {
        outln!("No model is placed on any enabled host.");
    } else {
        out!(
            "{}",
            table(&["HOST", "MODEL", "PORT", "STATE", "DETAIL"], &rows)
        );
    }
    if !report.discovered.is_empty() {
        outln!("\nLoaded (discovered): servers on ports the config does not place there");
        let rows: Vec<Vec<String>> = report
            .discovered
            .iter()
            .map(|d| {
                vec![
                    d.host.clone(),
                    d.port.to_string(),
                    if d.models.is_empty() {
                        "(no model listed)".to_string()
                    } else {
                        d.models.join(", ")
                    },
                ]
            })
            .collect();
        out!("{}", table(&["HOST", "PORT", "MODELS"], &rows));
    }
    if code == exit_codes::CHANGES {
        outln!(
            "\nNot every model is ready: `berth select status` and `berth plan` show what berth would do about it."
        );
    }
    Ok(code)
}
