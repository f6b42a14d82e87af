//! A read-only look at the config and the state, for operations that never change anything
//! (`health`, `endpoints`, `select status`): the state is read under its lock only for the
//! moment the read takes, and a state another berth holds right now is not waited for: its last
//! committed snapshot is read instead (or, for a backend that keeps none, the models are placed
//! by the config alone), with a warning that names the holder.

use std::time::Duration;

use berth_state::{LockInfo, LockOptions, StateError};

use super::request::Inputs;
use crate::config;
use crate::error::{Error, Result};
use crate::placement::Previous;
use crate::plan::StateView;
use crate::session::{self, ReadState};
use crate::workspace::Workspace;

/// The config placed against what the state remembers, when it could be read.
pub(crate) struct Snapshot {
    pub ws: Workspace,
    /// `None` when another berth held the state.
    pub view: Option<StateView>,
    /// Who held the state lock when the snapshot was taken (another berth), if anyone.
    pub holder: Option<LockInfo>,
    /// What the caller should hear about how the snapshot was taken.
    pub warnings: Vec<String>,
}

/// Reads the config and the state of `inputs` for `operation`, never waiting for the lock:
/// while another berth holds it, the state is its last committed snapshot, or, for a backend
/// that keeps none, the config alone.
pub(crate) fn snapshot(inputs: &Inputs, operation: &str) -> Result<Snapshot> {
    let loaded = config::load(&inputs.dir, &inputs.vars)
        .map_err(|invalid| Error::InvalidConfig(Box::new(invalid)))?;
    let state = loaded.config.settings.state(&loaded.config.dir);
    let backend = session::backend(&state)?;
    let at_once = LockOptions {
        timeout: Duration::ZERO,
        force: false,
    };
    match ReadState::read(backend.as_ref(), operation, &at_once) {
        Ok(read) => {
            let view = read.view();
            let ws = Workspace::from_loaded(loaded, &view.previous())?;
            let warnings = read
                .held_by
                .iter()
                .map(|h| {
                    format!(
                        "{} ({}@{}) holds the state lock; this is the state as of its last saved change",
                        h.operation, h.user, h.hostname
                    )
                })
                .collect();
            Ok(Snapshot {
                ws,
                view: Some(view),
                holder: read.held_by,
                warnings,
            })
        }
        Err(Error::State(StateError::Locked { holder, .. })) => {
            let ws = Workspace::from_loaded(loaded, &Previous::default())?;
            Ok(Snapshot {
                ws,
                view: None,
                warnings: vec![format!(
                    "the state is busy ({holder}): models are placed as the config alone places them, without the state's selections"
                )],
                holder: Some(*holder),
            })
        }
        Err(e) => Err(e),
    }
}
