//! Writes the history entry of an apply from its events: how each planned change ended
//! (a backend's `verify_cmd` check is not a change, and is listed only when it failed), who
//! ran it and when, and whether the run was interrupted; appended once the run has finished.

use std::sync::{Arc, Mutex};

use berth_state::{HistoryChange, HistoryEntry, StateError, StateStore};

use super::events::{ApplyEvent, Outcome, Subscriber};
use crate::plan::Action;

/// The state's history, as an apply subscriber.
pub struct HistoryWriter {
    store: Arc<dyn StateStore>,
    entry: Mutex<HistoryEntry>,
    /// Why the entry could not be written, once that happened.
    failure: Mutex<Option<StateError>>,
}

impl HistoryWriter {
    /// A writer of one `operation` run by `user` on `hostname`.
    pub fn new(store: Arc<dyn StateStore>, operation: &str, user: &str, hostname: &str) -> Self {
        HistoryWriter {
            store,
            entry: Mutex::new(HistoryEntry {
                serial: 0,
                operation: operation.to_string(),
                user: user.to_string(),
                hostname: hostname.to_string(),
                started_at: 0,
                finished_at: 0,
                changes: Vec::new(),
                interrupted: false,
            }),
            failure: Mutex::new(None),
        }
    }

    /// Why the entry could not be written, if it could not.
    pub fn take_failure(&self) -> Option<StateError> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn append(&self, finished_at: u64, interrupted: bool) -> Result<(), String> {
        let mut entry = self.entry.lock().unwrap_or_else(|e| e.into_inner());
        entry.finished_at = finished_at;
        entry.interrupted = interrupted;
        // In plan order (by address), not in the order the resources happened to finish.
        entry.changes.sort_by(|a, b| a.address.cmp(&b.address));
        let written = self.store.meta().and_then(|meta| {
            entry.serial = meta.serial;
            self.store.append_history(&entry)
        });
        written.map_err(|e| {
            let text = format!("cannot write the history entry: {e}");
            *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
            text
        })
    }
}

/// How an outcome reads in the history: what the action did when it was done (`created`,
/// `reused`...), otherwise how it ended.
pub fn outcome_text(action: Action, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done { .. } => match action {
            Action::Create => "created",
            Action::Replace => "replaced",
            Action::Update => "updated",
            Action::Destroy => "destroyed",
            Action::Reuse => "reused",
            Action::Verify => "verified",
            Action::NoOp => "unchanged",
        }
        .to_string(),
        Outcome::Failed(e) => format!("failed at {}", e.at()),
        Outcome::Skipped { .. } => "skipped".to_string(),
        Outcome::Cancelled => "cancelled".to_string(),
    }
}

impl Subscriber for HistoryWriter {
    fn on_event(&self, event: &ApplyEvent) -> Result<(), String> {
        match event {
            ApplyEvent::RunStarted { at, .. } => {
                self.entry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .started_at = *at;
                Ok(())
            }
            ApplyEvent::Finished {
                address,
                action,
                outcome,
                ..
            } => {
                if !action.is_change() && !matches!(outcome, Outcome::Failed(_)) {
                    return Ok(());
                }
                self.entry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .changes
                    .push(HistoryChange {
                        address: address.to_string(),
                        action: action.as_str().to_string(),
                        outcome: outcome_text(*action, outcome),
                    });
                Ok(())
            }
            ApplyEvent::RunFinished {
                at, interrupted, ..
            } => self.append(*at, *interrupted),
            _ => Ok(()),
        }
    }
}
