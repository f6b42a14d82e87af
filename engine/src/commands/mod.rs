//! One module per command: each takes the [`Invocation`] and its own request, calls the engine
//! (the async `ops` for anything that touches hosts) and renders the result through `ui`. The
//! commands know nothing of clap: `cli` maps the parsed arguments to their requests.

pub mod apply;
pub mod doctor;
pub mod drift;
pub mod endpoints;
pub mod fmt;
pub mod graph;
pub mod health;
pub mod inspect;
pub mod plan;
pub mod select;
pub mod state;
pub mod ui;
pub mod validate;
pub mod watch;

use std::future::Future;
use std::path::PathBuf;

use berth_state::LockOptions;

use crate::config::VarInputs;
use crate::ops::{Inputs, Notices, Stop};
use ui::Ui;

/// What every command of one berth run shares, built once from the command line: where the
/// config is, the variables, how output looks, how to wait for the lock, the stop token the
/// signal handling drives, and the tokio runtime the async operations run on.
pub struct Invocation {
    pub dir: PathBuf,
    pub vars: VarInputs,
    pub ui: Ui,
    pub lock: LockOptions,
    pub stop: Stop,
    /// One runtime for the whole run, since SSH connections live on it (a second one would
    /// log in to every host again).
    runtime: tokio::runtime::Runtime,
}

impl Invocation {
    /// An invocation with a fresh stop token and runtime.
    pub fn new(dir: PathBuf, vars: VarInputs, ui: Ui, lock: LockOptions) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        Invocation {
            dir,
            vars,
            ui,
            lock,
            stop: Stop::new(),
            runtime,
        }
    }

    /// The runtime's handle, for work that must run beside the command (signal handling).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.runtime.handle()
    }

    /// Runs `future` to its end on the invocation's runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Runs `future` (a plan, drift or apply that refreshes the hosts first) to its end,
    /// saying on stderr every few seconds that it is still at it, so that a host that does not
    /// answer never leaves the terminal silent. Plain lines, never a spinner: nothing is left
    /// drawn when an interrupt ends berth.
    pub fn block_on_with_progress<F: Future>(&self, what: &str, future: F) -> F::Output {
        const FIRST: std::time::Duration = std::time::Duration::from_secs(2);
        const EVERY: std::time::Duration = std::time::Duration::from_secs(5);
        self.runtime.block_on(async {
            tokio::pin!(future);
            let started = tokio::time::Instant::now();
            let mut next = started + FIRST;
            loop {
                tokio::select! {
                    out = &mut future => return out,
                    () = tokio::time::sleep_until(next) => {
                        errln!(
                            "{what}: still observing the hosts after {}s (a host that does not answer is given up after its connect_timeout_sec)",
                            started.elapsed().as_secs()
                        );
                        next += EVERY;
                    }
                }
            }
        })
    }

    /// The config and lock inputs of an operation.
    pub fn inputs(&self) -> Inputs {
        Inputs {
            dir: self.dir.clone(),
            vars: self.vars.clone(),
            lock: self.lock,
            notices: Notices::to(|n| {
                errln!("warning: {n}");
            }),
        }
    }
}
