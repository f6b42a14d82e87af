//! berth-engine: the config language, placement, the resource graph, plans and the apply
//! executor, the async operations a caller drives (`ops`), and the command-line interface
//! built on them.

// Everything printed goes through `console`, which survives a closed pipe or terminal.
#![deny(clippy::print_stdout, clippy::print_stderr)]

// First, so that its printing macros are in scope in every module below.
#[macro_use]
pub mod console;
pub mod apply;
pub mod cli;
mod clock;
pub mod commands;
pub mod config;
pub mod connections;
pub mod error;
pub mod exit_codes;
pub mod graph;
pub mod launch;
pub mod metrics;
pub mod ops;
pub mod output;
pub mod paint;
pub mod placement;
pub mod plan;
pub mod refresh;
pub mod session;
pub mod workspace;

/// Shell-quotes one value (re-exported from the providers, which own shell quoting).
pub use berth_providers::transport::quote as transport_quote;
pub use clock::now;
