//! `berth endpoints [--json]`: the OpenAI-compatible base URL of every model that answers ready
//! now, the id it serves, and a warning when the URL cannot be reached from other machines.

use super::Invocation;
use super::ui::table;
use crate::error::Result;
use crate::exit_codes;
use crate::ops::{self, EndpointsRequest};
use crate::output;

pub fn run(inv: &Invocation, json: bool) -> Result<u8> {
    let ui = &inv.ui;
    let req = EndpointsRequest {
        inputs: inv.inputs(),
    };
    let (items, warnings) = inv.block_on(ops::endpoints(&req, &inv.stop))?;
    if json {
        outln!("{}", output::to_json(&items));
        return Ok(exit_codes::SUCCESS);
    }
    for w in &warnings {
        errln!("{} {w}", ui.yellow("warning:"));
    }
    if items.is_empty() {
        outln!("No model answers ready. `berth health` shows why; `berth apply` starts them.");
        return Ok(exit_codes::SUCCESS);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.model.clone(),
                i.serves.join(", "),
                i.host.clone(),
                if i.loopback_only {
                    format!("{} (127.0.0.1 only)", i.url)
                } else {
                    i.url.clone()
                },
            ]
        })
        .collect();
    out!("{}", table(&["MODEL", "SERVES", "HOST", "URL"], &rows));
    for i in items.iter().filter(|i| i.loopback_only) {
        if let Some(hint) = &i.hint {
            errln!(
                "{} {} on {}: {hint}",
                ui.yellow("warning:"),
                i.model,
                i.host
            );
        }
    }
    Ok(exit_codes::SUCCESS)
}
