//! The stop token of an operation: two levels, asked for by whoever drives the operation (the
//! CLI's signal handling, a daemon's shutdown, a test). The engine only reads it; it never
//! listens to process signals itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// How far an operation has been asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StopLevel {
    /// Finish the steps that are running, start nothing new, save the state.
    Drain,
    /// Cancel now: running gates end and running commands on hosts are killed.
    Cancel,
}

/// A request to stop an operation, shared by the driver (who asks) and the engine (who obeys).
#[derive(Debug, Clone, Default)]
pub struct Stop {
    drain: CancellationToken,
    cancel: CancellationToken,
    reasons: Arc<Mutex<Vec<String>>>,
    /// Operations running now that obey this token (an apply's executor).
    obeying: Arc<AtomicUsize>,
}

/// Held by an operation while it obeys its stop token; dropped when it no longer does.
#[derive(Debug)]
pub struct Obeying(Arc<AtomicUsize>);

impl Drop for Obeying {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Stop {
    /// A token nobody has asked to stop yet.
    pub fn new() -> Self {
        Stop::default()
    }

    /// Asks the operation to finish what is running and start nothing new; `reason` names
    /// who asked (a signal name, "shutdown").
    pub fn drain(&self, reason: impl Into<String>) {
        if !self.drain.is_cancelled() {
            self.push(reason.into());
            self.drain.cancel();
        }
    }

    /// Asks the operation to stop now (implies [`Stop::drain`]).
    pub fn cancel(&self, reason: impl Into<String>) {
        let reason = reason.into();
        if !self.drain.is_cancelled() {
            self.push(reason.clone());
            self.drain.cancel();
        }
        if !self.cancel.is_cancelled() {
            self.push(reason);
            self.cancel.cancel();
        }
    }

    /// One step further: the first request drains, any later one cancels (how Ctrl-C works).
    pub fn escalate(&self, reason: impl Into<String>) -> StopLevel {
        if self.drain.is_cancelled() {
            self.cancel(reason);
            StopLevel::Cancel
        } else {
            self.drain(reason);
            StopLevel::Drain
        }
    }

    /// How far the operation has been asked to stop, if at all.
    pub fn level(&self) -> Option<StopLevel> {
        if self.cancel.is_cancelled() {
            Some(StopLevel::Cancel)
        } else if self.drain.is_cancelled() {
            Some(StopLevel::Drain)
        } else {
            None
        }
    }

    /// Why the operation reached `level`, as its asker said.
    pub fn reason(&self, level: StopLevel) -> String {
        let reasons = self.reasons.lock().unwrap_or_else(|e| e.into_inner());
        let i = match level {
            StopLevel::Drain => 0,
            StopLevel::Cancel => 1,
        };
        reasons.get(i).cloned().unwrap_or_default()
    }

    /// Resolves once a drain (or a cancel) was asked for.
    pub async fn drained(&self) {
        self.drain.cancelled().await;
    }

    /// Resolves once a cancel was asked for.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Marks an operation that obeys this token until the guard is dropped. A driver uses
    /// [`Stop::is_obeyed`] to choose between asking and acting itself (the CLI exits at once on
    /// a signal when nothing is running that would obey it).
    pub fn obey(&self) -> Obeying {
        self.obeying.fetch_add(1, Ordering::SeqCst);
        Obeying(Arc::clone(&self.obeying))
    }

    /// Whether an operation obeying this token is running.
    pub fn is_obeyed(&self) -> bool {
        self.obeying.load(Ordering::SeqCst) > 0
    }

    /// The token that fires on drain (and so on cancel too), for code that takes a
    /// `CancellationToken`.
    pub fn drain_token(&self) -> &CancellationToken {
        &self.drain
    }

    /// The token that fires on cancel, for code that takes a `CancellationToken`.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    fn push(&self, reason: String) {
        self.reasons
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escalating_twice_drains_then_cancels_and_keeps_both_reasons() {
        let stop = Stop::new();
        assert_eq!(stop.level(), None);
        assert_eq!(stop.escalate("SIGINT"), StopLevel::Drain);
        assert_eq!(stop.level(), Some(StopLevel::Drain));
        assert_eq!(stop.escalate("SIGTERM"), StopLevel::Cancel);
        assert_eq!(stop.level(), Some(StopLevel::Cancel));
        assert_eq!(stop.reason(StopLevel::Drain), "SIGINT");
        assert_eq!(stop.reason(StopLevel::Cancel), "SIGTERM");
    }

    #[test]
    fn a_cancel_alone_also_drains() {
        let stop = Stop::new();
        stop.cancel("shutdown");
        assert!(stop.drain.is_cancelled());
        assert_eq!(stop.reason(StopLevel::Drain), "shutdown");
        assert_eq!(stop.reason(StopLevel::Cancel), "shutdown");
    }
}
