//! berth-engine: the config language, placement, the resource graph, plans and the apply
//! executor, and the command-line interface built on them.

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod exit_codes;
pub mod graph;
pub mod launch;
pub mod placement;
pub mod workspace;
