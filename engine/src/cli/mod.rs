//! The command-line interface, in two stages: clap parses what the user typed (`args`, no
//! I/O), then one [`Invocation`] is built (directory, variables, output, lock options, stop
//! token, runtime) and the command's own request is mapped from its arguments; the command
//! runs and its outcome becomes the exit code. Signals are handled in `signals`.

pub mod args;
pub mod complete;
pub mod logging;
pub mod signals;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::commands::{self, Invocation, ui::Ui};
use crate::config::VarInputs;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::ops::{PlanScope, PlanSource};
use args::{Cli, Command};

/// Runs berth with the process's arguments.
pub fn main() -> ExitCode {
    install_panic_hook();
    // A shell asking for completions (`COMPLETE=bash berth -- ...`) is answered and berth ends.
    clap_complete::CompleteEnv::with_factory(Cli::command)
        .var(complete::COMPLETE_ENV)
        .complete();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            if err.use_stderr()
                && let Some(tip) = spelling_tip(std::env::args().skip(1))
            {
                errln!("\ntip: {tip}");
            }
            return ExitCode::from(if err.use_stderr() {
                exit_codes::USAGE
            } else {
                exit_codes::SUCCESS
            });
        }
    };
    logging::init(cli.verbose);
    let inv = invocation(&cli);
    signals::install(inv.runtime(), inv.stop.clone());
    match run(&cli, &inv) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            inv.ui.report(&err);
            ExitCode::from(exit_codes::FAILURE)
        }
    }
}

/// A tip for a flag spelled the Terraform way (`-auto-approve`, `-out=F`): berth's long flags
/// take two dashes.
fn spelling_tip(args: impl Iterator<Item = String>) -> Option<String> {
    let mut longs: Vec<String> = Vec::new();
    let mut stack = vec![Cli::command()];
    while let Some(cmd) = stack.pop() {
        longs.extend(
            cmd.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string)),
        );
        stack.extend(cmd.get_subcommands().cloned());
    }
    for arg in args {
        let Some(word) = arg.strip_prefix('-').filter(|w| !w.starts_with('-')) else {
            continue;
        };
        let (name, value) = match word.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (word, None),
        };
        if name.len() > 1 && longs.iter().any(|l| l == name) {
            let berth = match value {
                Some(v) => format!("--{name} {v}"),
                None => format!("--{name}"),
            };
            return Some(format!(
                "berth's long flags take two dashes: write `{berth}` instead of `{arg}`"
            ));
        }
    }
    None
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

/// The invocation of one parsed command line.
pub fn invocation(cli: &Cli) -> Invocation {
    let vars = VarInputs {
        cli: cli.vars.var.clone(),
        files: cli.vars.var_file.clone(),
        env: VarInputs::env_from_process(),
    };
    let lock = match &cli.command {
        Command::Plan(a) => Some(&a.lock),
        Command::Apply(a) => Some(&a.lock),
        Command::Destroy(a) => Some(&a.lock),
        Command::Drift(a) => Some(&a.lock),
        Command::State(a) => Some(&a.lock),
        Command::Select(a) => Some(&a.lock),
        Command::Watch(a) => Some(&a.lock),
        _ => None,
    }
    .map(args::LockArgs::options)
    .unwrap_or_default();
    Invocation::new(cli.dir.clone(), vars, Ui::from_env(), lock)
}

fn scope(args: &args::PlanScope) -> PlanScope {
    PlanScope {
        refresh: args.refresh,
        targets: args.target.clone(),
        replace: args.replace.clone(),
    }
}

/// Runs one parsed command and returns its exit code.
pub fn run(cli: &Cli, inv: &Invocation) -> Result<u8> {
    let ui = &inv.ui;
    match &cli.command {
        Command::Validate(args) => commands::validate::run(inv, args.json, ui),
        Command::Fmt(args) => commands::fmt::run(inv, args.check, args.diff),
        Command::Graph(args) => commands::graph::run(
            inv,
            match args.format {
                args::GraphFormat::Dot => commands::graph::GraphFormat::Dot,
                args::GraphFormat::Json => commands::graph::GraphFormat::Json,
            },
        ),
        Command::Hosts(args) => match &args.command {
            Some(args::HostsCommand::Validate) => commands::validate::run(inv, args.json, ui),
            Some(args::HostsCommand::Show { id }) => {
                commands::inspect::host(inv, id, args.json, ui)
            }
            Some(args::HostsCommand::Test { id }) => commands::doctor::test(inv, id, args.json, ui),
            Some(args::HostsCommand::Doctor { id }) => {
                commands::doctor::doctor(inv, id.as_deref(), args.json, ui)
            }
            None => commands::inspect::hosts(inv, args.json, ui),
        },
        Command::Backends(args) => match &args.command {
            Some(args::BackendsCommand::Show { id }) => {
                commands::inspect::backend(inv, id, args.json, ui)
            }
            None => commands::inspect::backends(inv, args.json, ui),
        },
        Command::Models(args) => match &args.command {
            Some(args::ShowCommand::Show { id }) => {
                commands::inspect::model(inv, id, args.json, ui)
            }
            None => commands::inspect::models(inv, args.json, ui),
        },
        Command::Plan(args) => commands::plan::run(
            inv,
            &commands::plan::PlanCommand {
                scope: scope(&args.scope),
                out: args.out.clone(),
                format: match args.format {
                    args::PlanFormat::Text => commands::plan::PlanFormat::Text,
                    args::PlanFormat::Json => commands::plan::PlanFormat::Json,
                    args::PlanFormat::Markdown => commands::plan::PlanFormat::Markdown,
                },
                detailed_exitcode: args.detailed_exitcode,
            },
        ),
        Command::Apply(args) => commands::apply::apply(
            inv,
            &commands::apply::ApplyCommand {
                source: plan_source(args)?,
                auto_approve: args.auto_approve,
                allow_mass_destroy: args.allow_mass_destroy,
                parallelism: args.parallelism,
            },
        ),
        Command::Destroy(args) => commands::apply::destroy(
            inv,
            &commands::apply::DestroyCommand {
                targets: args.target.clone(),
                auto_approve: args.auto_approve,
                parallelism: args.parallelism,
            },
        ),
        Command::Drift(args) => commands::drift::run(inv, args.json, args.no_lock),
        Command::State(args) => {
            use commands::state::StateCommand as Do;
            let command = match &args.command {
                args::StateCommand::List => Do::List,
                args::StateCommand::Show { address } => Do::Show {
                    address: address.clone(),
                },
                args::StateCommand::Rm { address } => Do::Rm {
                    address: address.clone(),
                },
                args::StateCommand::History => Do::History,
                args::StateCommand::Init { print_sql } => Do::Init {
                    print_sql: *print_sql,
                },
                args::StateCommand::Migrate {
                    to: args::MigrateTarget::Postgres,
                } => Do::MigrateToPostgres,
            };
            commands::state::run(inv, &command, args.json, ui)
        }
        Command::ForceUnlock(args) => match (&args.host, &args.id) {
            (Some(host), _) => commands::state::force_unlock_host(inv, host),
            (None, Some(id)) => commands::state::force_unlock(inv, id),
            // clap requires one of them.
            (None, None) => unreachable!("force-unlock without an id or --host"),
        },
        Command::Endpoints(args) => commands::endpoints::run(inv, args.json),
        Command::Watch(args) => commands::watch::run(
            inv,
            &commands::watch::WatchCommand {
                interval: args.interval,
                heal: args.heal,
                metrics: args.metrics,
                once: args.once,
                log_format: match args.log_format {
                    args::LogFormat::Text => commands::watch::LogFormat::Text,
                    args::LogFormat::Json => commands::watch::LogFormat::Json,
                },
            },
        ),
        Command::Select(args) => match (&args.command, &args.model) {
            (Some(args::SelectCommand::Status), _) => commands::select::status(inv, args.json),
            (None, Some(model)) => commands::select::run(
                inv,
                &commands::select::SelectCommand {
                    model: model.clone(),
                    restart: args.restart,
                    dry_run: args.dry_run,
                    json: args.json,
                },
            ),
            (None, None) => Err(Error::Usage {
                message: "select needs --model ID (or `select status`)".into(),
                help: "`berth models` lists the models and their groups".into(),
            }),
        },
        Command::Health(args) => commands::health::run(
            inv,
            args.scan_ports.as_ref().map(|p| p.0.clone()),
            args.json,
        ),
        Command::Completions(args) => {
            let script = complete::registration(args.shell).map_err(|message| Error::Usage {
                message,
                help: "berth completes bash, zsh, fish, elvish and powershell".into(),
            })?;
            out!("{script}");
            Ok(exit_codes::SUCCESS)
        }
    }
}

/// The plan `berth apply` carries out: the saved one named, or a fresh one of its scope.
fn plan_source(args: &args::ApplyArgs) -> Result<PlanSource> {
    let Some(path) = &args.plan_file else {
        return Ok(PlanSource::Fresh(scope(&args.scope)));
    };
    if !args.scope.target.is_empty() || !args.scope.replace.is_empty() || !args.scope.refresh {
        return Err(Error::Usage {
            message: "--target, --replace and --refresh apply when planning, not to a saved plan"
                .into(),
            help: format!("pass them to `berth plan --out {}` instead", path.display()),
        });
    }
    Ok(PlanSource::Saved(path.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_and_argument_has_help_text() {
        let mut missing = Vec::new();
        let mut stack = vec![(String::from("berth"), Cli::command())];
        while let Some((path, cmd)) = stack.pop() {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                stack.push((format!("{path} {}", sub.get_name()), sub.clone()));
            }
        }
        assert!(missing.is_empty(), "without help text: {missing:?}");
    }

    #[test]
    fn terraform_spellings_get_the_berth_flag() {
        let tip = |args: &[&str]| spelling_tip(args.iter().map(|a| a.to_string()));
        assert!(
            tip(&["apply", "-auto-approve"])
                .unwrap()
                .contains("`--auto-approve`")
        );
        assert!(
            tip(&["plan", "-out=p.plan"])
                .unwrap()
                .contains("`--out p.plan`")
        );
        assert_eq!(tip(&["plan", "-C", "dir"]), None);
    }
}
