//! What a caller asks an operation for: plain data, built by the CLI from its arguments or by
//! any other caller directly.

use berth_state::Target;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use berth_state::LockOptions;

use crate::config::VarInputs;

/// Where the config is and how to open its state.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The config directory (every `*.hcl` file in it).
    pub dir: PathBuf,
    /// Variable values from the caller, files and the environment.
    pub vars: VarInputs,
    /// How to wait for the state lock.
    pub lock: LockOptions,
    /// Where the operation tells what the user should hear besides its result.
    pub notices: Notices,
}

/// Something an operation tells its caller on the way, that is neither its result nor an
/// error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The state lock was held by a berth that is gone, and was taken over (`--force`); holds
    /// that lock's holder.
    StaleStateLockTakenOver { previous: String },
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::StaleStateLockTakenOver { previous } => {
                write!(f, "took over the stale {previous}")
            }
        }
    }
}

/// The receiver of an operation's [`Notice`]s; the default drops them.
#[derive(Clone, Default)]
pub struct Notices(Option<Arc<dyn Fn(Notice) + Send + Sync>>);

impl Notices {
    /// Notices handed to `receive`.
    pub fn to(receive: impl Fn(Notice) + Send + Sync + 'static) -> Self {
        Notices(Some(Arc::new(receive)))
    }

    /// Tells the receiver, if there is one.
    pub fn send(&self, notice: Notice) {
        if let Some(receive) = &self.0 {
            receive(notice);
        }
    }
}

impl fmt::Debug for Notices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Notices(receiver)"
        } else {
            "Notices(none)"
        })
    }
}

/// What a plan covers.
#[derive(Debug, Clone)]
pub struct PlanScope {
    /// Observe the hosts first; `false` plans from the state alone.
    pub refresh: bool,
    /// Only these resources and what they need (address, `model.ID` or `host.ID`).
    pub targets: Vec<Target>,
    /// Replace these resources even if unchanged.
    pub replace: Vec<Target>,
}

impl Default for PlanScope {
    fn default() -> Self {
        PlanScope {
            refresh: true,
            targets: Vec::new(),
            replace: Vec::new(),
        }
    }
}

/// A plan to make and, with `out`, save.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    pub inputs: Inputs,
    pub scope: PlanScope,
    /// Save the plan here for a later apply.
    pub out: Option<PathBuf>,
}

/// Which plan an apply carries out.
#[derive(Debug, Clone)]
pub enum PlanSource {
    /// A plan made now, under the same lock.
    Fresh(PlanScope),
    /// A plan saved by an earlier `plan` with `out`.
    Saved(PathBuf),
}

/// An apply.
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub inputs: Inputs,
    pub source: PlanSource,
    /// Resource operations in flight at once; `None`: `settings.parallelism`.
    pub parallelism: Option<usize>,
    /// Carry out a plan that destroys most of what berth manages.
    pub allow_mass_destroy: bool,
    /// Carry out the plan without asking the [`crate::ops::Review`] (a saved plan never asks).
    pub auto_approve: bool,
}

/// A destroy of everything berth manages, or of `targets`.
#[derive(Debug, Clone, Default)]
pub struct DestroyRequest {
    pub inputs: Inputs,
    pub targets: Vec<Target>,
    pub parallelism: Option<usize>,
    pub auto_approve: bool,
}

/// A read-only drift check.
#[derive(Debug, Clone, Default)]
pub struct DriftRequest {
    pub inputs: Inputs,
    /// Read the last committed state instead of waiting for the lock while another berth
    /// holds it.
    pub no_lock: bool,
}
