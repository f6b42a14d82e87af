//! `berth graph [--format dot|json]`: the resource graph.

use super::Invocation;
use crate::error::Result;
use crate::exit_codes;
use crate::placement::Previous;
use crate::workspace::Workspace;

/// How the graph is printed.
#[derive(Debug, Clone, Copy)]
pub enum GraphFormat {
    Dot,
    Json,
}

pub fn run(inv: &Invocation, format: GraphFormat) -> Result<u8> {
    let ws = Workspace::open(&inv.dir, &inv.vars, &Previous::default())?;
    match format {
        GraphFormat::Dot => out!("{}", ws.graph.to_dot()),
        GraphFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&ws.graph.to_json()).expect("serialisable")
        ),
    }
    Ok(exit_codes::SUCCESS)
}
