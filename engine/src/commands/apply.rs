//! `berth apply` and `berth destroy`: show the plan, ask, carry it out through `ops`, and print
//! the progress and the summary from the apply's events.

use berth_state::Target;
use std::io::{BufRead, IsTerminal};
use std::sync::Mutex;

use super::Invocation;
use super::ui::Ui;
use crate::apply::{ApplyEvent, Counts, Display, Outcome, StepError, Subscriber};
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::ops::{self, ApplyRequest, DestroyRequest, PlanSource, Review};
use crate::plan::{Operation, Plan};

/// What `berth apply` was asked for.
#[derive(Debug, Clone)]
pub struct ApplyCommand {
    pub source: PlanSource,
    pub auto_approve: bool,
    pub allow_mass_destroy: bool,
    pub parallelism: Option<usize>,
}

/// What `berth destroy` was asked for.
#[derive(Debug, Clone)]
pub struct DestroyCommand {
    pub targets: Vec<Target>,
    pub auto_approve: bool,
    pub parallelism: Option<usize>,
}

pub fn apply(inv: &Invocation, cmd: &ApplyCommand) -> Result<u8> {
    let mut inputs = inv.inputs();
    if let PlanSource::Saved(path) = &cmd.source
        && std::io::stdin().is_terminal()
    {
        // Plans never store sensitive values: ask for the ones this plan was made with.
        let file = berth_state::PlanFile::read(path)?;
        for name in ops::missing_secrets(&file, &inputs.vars) {
            let value = ask_hidden(&format!(
                "The plan was made with the sensitive variable `{name}`; enter its value: "
            ))?;
            inputs.vars.cli.push((name, value));
        }
    }
    let req = ApplyRequest {
        inputs,
        source: cmd.source.clone(),
        parallelism: cmd.parallelism,
        allow_mass_destroy: cmd.allow_mass_destroy,
        auto_approve: cmd.auto_approve,
    };
    carry_out(inv, |review, subscribers| {
        inv.block_on(ops::apply(&req, review, subscribers, &inv.stop))
    })
}

pub fn destroy(inv: &Invocation, cmd: &DestroyCommand) -> Result<u8> {
    let req = DestroyRequest {
        inputs: inv.inputs(),
        targets: cmd.targets.clone(),
        parallelism: cmd.parallelism,
        auto_approve: cmd.auto_approve,
    };
    carry_out(inv, |review, subscribers| {
        inv.block_on(ops::destroy(&req, review, subscribers, &inv.stop))
    })
}

/// Runs `op` with the terminal's review, progress display and summary; the exit code follows
/// the report.
fn carry_out(
    inv: &Invocation,
    op: impl FnOnce(&dyn Review, &[&dyn Subscriber]) -> Result<ops::Applied>,
) -> Result<u8> {
    let review = TerminalReview { inv };
    let display = Display::new(inv.ui.stderr_tty, inv.ui.stdout_tty, inv.ui.color);
    let summary = Summary::new(inv.ui);
    let applied = op(&review, &[&display, &summary])?;
    Ok(match applied.report {
        Some(report) if !report.succeeded() => exit_codes::FAILURE,
        _ => exit_codes::SUCCESS,
    })
}

/// Shows the plan on stdout and asks for "yes" on a terminal; refuses elsewhere.
struct TerminalReview<'a> {
    inv: &'a Invocation,
}

impl Review for TerminalReview<'_> {
    fn show(&self, plan: &Plan) {
        super::plan::print_text(self.inv, plan);
    }

    fn confirm(&self, operation: Operation, _plan: &Plan) -> Result<()> {
        let operation = operation_name(operation);
        if !std::io::stdin().is_terminal() {
            return Err(Error::Usage {
                message: format!(
                    "refusing to {operation} without confirmation: stdin is not a terminal"
                ),
                help: format!("review the plan above, then run `berth {operation} --auto-approve`"),
            });
        }
        out!("\nDo you want to {operation}? Only 'yes' will be accepted: ");
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            return Err(Error::Usage {
                message: format!("{operation} cancelled"),
                help: "nothing was changed".into(),
            });
        }
        Ok(())
    }
}

/// Reads one line from the terminal without echoing it.
fn ask_hidden(prompt: &str) -> Result<String> {
    use std::os::fd::AsRawFd;
    err!("{prompt}");
    let fd = std::io::stdin().as_raw_fd();
    // SAFETY: termios is plain data, filled by tcgetattr before use.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is this process's stdin, a terminal (checked by the caller).
    let have_termios = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_termios {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above; the saved settings are restored below.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if have_termios {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    errln!();
    read.map_err(|e| Error::Usage {
        message: format!("cannot read the value from the terminal: {e}"),
        help: "pass it with --var NAME=VALUE or BERTH_VAR_NAME".into(),
    })?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Apply => "apply",
        Operation::Destroy => "destroy",
    }
}

/// The summary at the end of an apply, written from its events: a blank line when the run
/// starts, then the counts and every failure with its host, step and log tail when it ends.
/// The counts are of planned changes, as the plan counts them: a backend's `verify_cmd` check
/// counts only when it failed.
struct Summary {
    ui: Ui,
    operation: Mutex<Operation>,
    counts: Mutex<Counts>,
    failures: Mutex<Vec<(String, String, StepError)>>,
}

impl Summary {
    fn new(ui: Ui) -> Self {
        Summary {
            ui,
            operation: Mutex::new(Operation::Apply),
            counts: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    fn print(&self, interrupted: bool) {
        let ui = &self.ui;
        let counts = *self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let operation = *self.operation.lock().unwrap_or_else(|e| e.into_inner());
        let Counts {
            done,
            failed,
            skipped,
            cancelled,
        } = counts;
        let name = match operation {
            Operation::Apply => "Apply",
            Operation::Destroy => "Destroy",
        };
        outln!();
        if !interrupted && failed == 0 && skipped == 0 && cancelled == 0 {
            outln!("{} {name} complete: {done} done.", ui.green("✓"));
            return;
        }
        outln!(
            "{} {name} {}: {done} done, {failed} failed, {skipped} skipped, {cancelled} cancelled.",
            ui.red("✗"),
            if interrupted { "interrupted" } else { "failed" }
        );
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // In plan order (by address), not in the order they happened to fail.
        failures.sort_by(|a, b| a.0.cmp(&b.0));
        for (address, host, error) in failures.iter() {
            errln!(
                "\n{} {address} on host {host}, step {}:\n  {}",
                ui.red("error:"),
                error.at(),
                error.message
            );
            if let Some(tail) = error.log_tail.as_deref().filter(|t| !t.trim().is_empty()) {
                errln!("  log tail:");
                for line in tail.lines() {
                    errln!("    | {line}");
                }
            }
        }
        if failed > 0 {
            errln!("\nRun `berth plan` to see what the next apply would do about them.");
        }
    }
}

impl Subscriber for Summary {
    fn on_event(&self, event: &ApplyEvent) -> std::result::Result<(), String> {
        match event {
            ApplyEvent::RunStarted { operation, .. } => {
                *self.operation.lock().unwrap_or_else(|e| e.into_inner()) = *operation;
                outln!();
            }
            ApplyEvent::Finished {
                address,
                host,
                action,
                outcome,
            } => {
                if action.is_change() || matches!(outcome, Outcome::Failed(_)) {
                    let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
                    let one = Counts::of([outcome]);
                    counts.done += one.done;
                    counts.failed += one.failed;
                    counts.skipped += one.skipped;
                    counts.cancelled += one.cancelled;
                }
                if let Outcome::Failed(error) = outcome {
                    self.failures
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((address.to_string(), host.clone(), error.clone()));
                }
            }
            ApplyEvent::RunFinished { interrupted, .. } => self.print(*interrupted),
            _ => {}
        }
        Ok(())
    }
}
