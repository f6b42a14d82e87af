//! `berth graph [--format dot|json]`: the resource graph.

use crate::cli::args::{Cli, GraphArgs, GraphFormat};
use crate::cli::var_inputs;
use crate::error::Result;
use crate::exit_codes;
use crate::placement::Previous;
use crate::workspace::Workspace;

pub fn run(cli: &Cli, args: &GraphArgs) -> Result<u8> {
    let ws = Workspace::open(&cli.dir, &var_inputs(cli), &Previous::default())?;
    match args.format {
        GraphFormat::Dot => out!("{}", ws.graph.to_dot()),
        GraphFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(&ws.graph.to_json()).expect("serialisable")
        ),
    }
    Ok(exit_codes::SUCCESS)
}
