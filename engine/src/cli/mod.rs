//! The command-line interface: parse arguments, build what the command needs, run it, turn the
//! outcome into an exit code.

pub mod args;
pub mod ui;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::config::VarInputs;
use crate::error::{Error, Result};
use crate::exit_codes;
use args::{Cli, Command};
use ui::Ui;

/// Runs berth with the process's arguments.
pub fn main() -> ExitCode {
    install_panic_hook();
    // A closed pipe must never end berth mid-apply: SIGPIPE is ignored, the write fails with
    // EPIPE, and the console stops printing to that stream while berth goes on.
    // SAFETY: setting a signal's disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    crate::interrupt::install();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                exit_codes::USAGE
            } else {
                exit_codes::SUCCESS
            });
        }
    };
    let ui = Ui::from_env();
    match run(cli, &ui) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            report(&ui, &err);
            ExitCode::from(exit_codes::FAILURE)
        }
    }
}

fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        errln!(
            "\nberth hit a bug. Please report it with the command you ran and the message above."
        );
        std::process::exit(exit_codes::BUG as i32);
    }));
}

/// Prints an error: config findings one by one, anything else as one diagnostic.
pub fn report(ui: &Ui, err: &Error) {
    if let Error::InvalidConfig(invalid) = err {
        ui.print_findings(&invalid.findings, &invalid.sources);
    }
    ui.eprint(err);
}

/// The variable inputs of this invocation.
pub fn var_inputs(cli: &Cli) -> VarInputs {
    VarInputs {
        cli: cli.vars.var.clone(),
        files: cli.vars.var_file.clone(),
        env: VarInputs::env_from_process(),
    }
}

/// Runs one parsed command and returns its exit code.
pub fn run(cli: Cli, ui: &Ui) -> Result<u8> {
    use crate::commands;
    match &cli.command {
        Command::Validate(args) => commands::validate::run(&cli, args.json, ui),
        Command::Fmt(args) => commands::fmt::run(&cli, args),
        Command::Graph(args) => commands::graph::run(&cli, args),
        Command::Hosts(args) => match &args.command {
            Some(args::HostsCommand::Validate) => commands::validate::run(&cli, args.json, ui),
            Some(args::HostsCommand::Show { id }) => {
                commands::inspect::host(&cli, id, args.json, ui)
            }
            Some(args::HostsCommand::Test { id }) => {
                commands::doctor::test(&cli, id, args.json, ui)
            }
            Some(args::HostsCommand::Doctor { id }) => {
                commands::doctor::doctor(&cli, id.as_deref(), args.json, ui)
            }
            None => commands::inspect::hosts(&cli, args.json, ui),
        },
        Command::Backends(args) => match &args.command {
            Some(args::ShowCommand::Show { id }) => {
                commands::inspect::backend(&cli, id, args.json, ui)
            }
            None => commands::inspect::backends(&cli, args.json, ui),
        },
        Command::Models(args) => match &args.command {
            Some(args::ShowCommand::Show { id }) => {
                commands::inspect::model(&cli, id, args.json, ui)
            }
            None => commands::inspect::models(&cli, args.json, ui),
        },
        Command::Plan(args) => commands::plan::run(&cli, args, ui),
        Command::Apply(args) => commands::apply::apply(&cli, args, ui),
        Command::Destroy(args) => commands::apply::destroy(&cli, args, ui),
        Command::Drift(args) => commands::drift::run(&cli, args, ui),
        Command::State(args) => commands::state::run(&cli, args, ui),
        Command::ForceUnlock(args) => match (&args.host, &args.id) {
            (Some(host), _) => commands::state::force_unlock_host(&cli, host),
            (None, Some(id)) => commands::state::force_unlock(&cli, id),
            // clap requires one of them.
            (None, None) => unreachable!("force-unlock without an id or --host"),
        },
        Command::Endpoints(args) => commands::endpoints::run(&cli, args),
        Command::Completions(args) => {
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "berth", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(exit_codes::SUCCESS)
        }
    }
}
