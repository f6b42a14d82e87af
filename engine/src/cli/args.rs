//! What the user typed, as clap parses it: no I/O and no engine objects here (those are built in
//! `cli::invocation`).

use berth_state::Target;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::engine::ArgValueCompleter;

use super::complete;

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

    /// Log what berth does on the hosts to stderr: -v SSH logins, remote commands with their
    /// duration and exit status, and probes; -vv more (BERTH_LOG=FILTER sets it outright)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

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
    /// Show what apply would change, and why
    Plan(PlanArgs),
    /// Make the hosts match the config (or carry out a saved plan)
    Apply(ApplyArgs),
    /// Stop and remove everything berth manages
    Destroy(DestroyArgs),
    /// Check whether the hosts still match what was applied (read-only)
    Drift(DriftArgs),
    /// Inspect and edit the state
    State(StateArgs),
    /// Remove berth's lock after checking its holder
    ForceUnlock(ForceUnlockArgs),
    /// The OpenAI-compatible base URL of every ready model
    Endpoints(EndpointsArgs),
    /// Switch the running member of a model group (or `select status`)
    Select(SelectArgs),
    /// Probe every placed model and scan for servers the config does not place
    Health(HealthArgs),
    /// Keep reconciling: observe every host each interval, heal drift, serve Prometheus metrics
    Watch(WatchArgs),
    /// Print shell completions
    Completions(CompletionsArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Time between the end of one cycle and the start of the next (e.g. 30s, 2m)
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// Repair drifted resources (never config changes nobody applied)
    #[arg(long)]
    pub heal: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Run one cycle and exit (1 when a host could not be observed or a heal failed)
    #[arg(long)]
    pub once: bool,
    /// How each cycle is logged (json: one object a line, for journald)
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub lock: LockArgs,
}

/// How to wait for berth's lock.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// Wait this long for a lock held by another berth (e.g. 30s, 2m); 0 fails at once
    #[arg(long, global = true, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub lock_timeout: std::time::Duration,
    /// Take over a stale lock (its holder's process is gone)
    #[arg(long, global = true)]
    pub force: bool,
}

impl LockArgs {
    pub fn options(&self) -> berth_state::LockOptions {
        berth_state::LockOptions {
            timeout: self.lock_timeout,
            force: self.force,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
}

/// What to plan.
#[derive(Debug, Clone, Args)]
pub struct PlanScope {
    /// Observe the hosts first (--refresh=false plans from the state alone)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub refresh: bool,
    /// Limit to these resources and what they need (address, model.ID or host.ID)
    #[arg(long, value_name = "ADDRESS", add = ArgValueCompleter::new(complete::targets))]
    pub target: Vec<Target>,
    /// Replace these resources even if unchanged
    #[arg(long, value_name = "ADDRESS", add = ArgValueCompleter::new(complete::targets))]
    pub replace: Vec<Target>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub scope: PlanScope,
    /// Save the plan to apply it later with `berth apply FILE`
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// How to print the plan (json: the documented plan document; markdown: for a pull request)
    #[arg(long, value_enum, default_value = "text")]
    pub format: PlanFormat,
    /// Exit 0 when there are no changes, 2 when there are, 1 on error
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `berth plan --out`
    pub plan_file: Option<PathBuf>,
    #[command(flatten)]
    pub scope: PlanScope,
    /// Apply without asking (required when stdin is not a terminal)
    #[arg(long)]
    pub auto_approve: bool,
    /// Carry out a plan that destroys more than half of what berth manages, or everything on a
    /// host (a config file that went missing looks like that)
    #[arg(long)]
    pub allow_mass_destroy: bool,
    /// Resource operations in flight at once (default: settings.parallelism)
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Destroy without asking (required when stdin is not a terminal)
    #[arg(long)]
    pub auto_approve: bool,
    /// Only these resources (address, model.ID or host.ID)
    #[arg(long, value_name = "ADDRESS", add = ArgValueCompleter::new(complete::targets))]
    pub target: Vec<Target>,
    /// Resource operations in flight at once (default: settings.parallelism)
    #[arg(long, value_name = "N")]
    pub parallelism: Option<usize>,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    /// Do not wait for the state lock: compare the hosts with the last committed state while
    /// another berth (an apply) holds it
    #[arg(long)]
    pub no_lock: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    #[command(subcommand)]
    pub command: StateCommand,
    /// Print as JSON
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Every resource berth manages
    List,
    /// One resource's record
    Show {
        /// The resource's address, e.g. model.qwen2.5-7b@gpu-a
        #[arg(add = ArgValueCompleter::new(complete::addresses))]
        address: String,
    },
    /// Forget a resource (what runs on the host is left alone)
    Rm {
        /// The addresses of the resources to forget
        #[arg(required = true, add = ArgValueCompleter::new(complete::addresses))]
        address: Vec<String>,
    },
    /// One entry per apply: how each change ended, who ran it, when, whether it was interrupted
    History,
    /// Make the configured state ready: berth's tables and the postgres workspace
    Init {
        /// Print the SQL a database administrator runs to create berth's tables, and change
        /// nothing
        #[arg(long)]
        print_sql: bool,
    },
    /// Copy the sled state (records, history, selections) into the configured postgres workspace
    Migrate {
        /// The backend to copy into
        #[arg(long, value_enum)]
        to: MigrateTarget,
    },
}

/// Where `berth state migrate` copies the sled state to.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MigrateTarget {
    Postgres,
}

#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    /// The state lock's id, as shown in the error that named the holder
    #[arg(required_unless_present = "host", conflicts_with = "host")]
    pub id: Option<String>,
    /// Remove the host lock (lease) on this host instead, whoever holds it
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SelectArgs {
    #[command(subcommand)]
    pub command: Option<SelectCommand>,
    /// The model to run (its group's other members are stopped on its hosts)
    #[arg(long, value_name = "ID", add = ArgValueCompleter::new(complete::model_ids))]
    pub model: Option<String>,
    /// Stop and start the model even if it runs and answers already
    #[arg(long)]
    pub restart: bool,
    /// Show the switch plan and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print a JSON document (docs/schemas/select.schema.json)
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub lock: LockArgs,
}

#[derive(Debug, Subcommand)]
pub enum SelectCommand {
    /// Per group and host: the selected model, whether it is ready, since when, the lock holder
    Status,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Ports to scan for servers the config does not place: 8000-8100 or 8080,8081
    /// (default: 8080-8090 and the configured ports)
    #[arg(long, value_name = "SPEC", value_parser = port_list)]
    pub scan_ports: Option<PortList>,
    /// Print a JSON document (docs/schemas/health.schema.json)
    #[arg(long)]
    pub json: bool,
}

/// The ports of `--scan-ports`.
#[derive(Debug, Clone)]
pub struct PortList(pub Vec<u16>);

fn port_list(spec: &str) -> Result<PortList, String> {
    crate::ops::parse_ports(spec).map(PortList)
}

#[derive(Debug, Args)]
pub struct EndpointsArgs {
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
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
    /// dot (Graphviz: `berth graph | dot -Tsvg > graph.svg`) or json
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
    /// Show one host, what is placed on it and what the state records for it
    Show {
        /// The host's id
        #[arg(add = ArgValueCompleter::new(complete::host_ids))]
        id: String,
    },
    /// Connect, authenticate and run a trivial command; report latency
    Test {
        /// The host's id
        #[arg(add = ArgValueCompleter::new(complete::host_ids))]
        id: String,
    },
    /// Check each host's environment: access, run_dir, tools, verify_cmd, model files, ports, disk
    Doctor {
        /// Only this host (default: every host)
        #[arg(add = ArgValueCompleter::new(complete::host_ids))]
        id: Option<String>,
    },
    /// Same as `berth validate`
    Validate,
}

#[derive(Debug, Args)]
pub struct BackendsArgs {
    #[command(subcommand)]
    pub command: Option<BackendsCommand>,
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
    /// Show one model in detail
    Show {
        /// The model's id
        #[arg(add = ArgValueCompleter::new(complete::model_ids))]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackendsCommand {
    /// Show one backend in detail
    Show {
        /// The backend's id
        #[arg(add = ArgValueCompleter::new(complete::backend_ids))]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to print the completion script for (e.g. `source <(berth completions bash)`)
    pub shell: clap_complete::Shell,
}
