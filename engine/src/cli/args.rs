//! What the user typed, as clap parses it: no I/O and no engine objects here (those are built in
//! `cli::context`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// berth: declarative infrastructure-as-code for LLM inference fleets.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Config directory (every *.hcl file in it)
    #[arg(
        short = 'C',
        long = "dir",
        global = true,
        value_name = "DIR",
        default_value = "."
    )]
    pub dir: PathBuf,

    #[command(flatten)]
    pub vars: VarArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Variable values from the command line.
#[derive(Debug, Clone, Args, Default)]
pub struct VarArgs {
    /// Set a variable: --var name=value (wins over --var-file and BERTH_VAR_name)
    #[arg(long = "var", global = true, value_name = "NAME=VALUE", value_parser = crate::config::parse_cli_var)]
    pub var: Vec<(String, String)>,

    /// Read variables from an HCL file of `name = value` lines
    #[arg(long = "var-file", global = true, value_name = "FILE")]
    pub var_file: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the config and report every problem at once
    Validate(ValidateArgs),
    /// Rewrite the config files in canonical layout
    Fmt(FmtArgs),
    /// Print the resource graph
    Graph(GraphArgs),
    /// List hosts, or inspect one
    Hosts(HostsArgs),
    /// List backends, or inspect one
    Backends(BackendsArgs),
    /// List models and their placements, or inspect one
    Models(ModelsArgs),
    /// Print shell completions
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print findings as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Change nothing; list the files that would change and exit 1 if any would
    #[arg(long)]
    pub check: bool,
    /// Print the diff of what would change
    #[arg(long)]
    pub diff: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Json,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    #[command(subcommand)]
    pub command: Option<HostsCommand>,
    /// Print as JSON
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Show one host and what is placed on it
    Show { id: String },
    /// Same as `berth validate`
    Validate,
}

#[derive(Debug, Args)]
pub struct BackendsArgs {
    #[command(subcommand)]
    pub command: Option<ShowCommand>,
    /// Print as JSON
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: Option<ShowCommand>,
    /// Print as JSON
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ShowCommand {
    /// Show one in detail
    Show { id: String },
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    pub shell: clap_complete::Shell,
}
