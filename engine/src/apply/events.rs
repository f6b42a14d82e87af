//! What the executor tells its subscribers: plain data, in the order things happen.

use std::time::Duration;

use berth_providers::GateTick;
use berth_state::ResourceRecord;

use crate::plan::Action;

/// The step a resource is in.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Connecting,
    Verifying,
    Stopping,
    /// Waiting for one of the host's `max_parallel_starts` to end.
    Queued,
    Starting,
    /// Measuring the model file to size the probe timeout.
    Measuring,
    Probing(GateTick),
    Recording,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Connecting => f.write_str("connecting"),
            Phase::Verifying => f.write_str("running verify_cmd"),
            Phase::Stopping => f.write_str("stopping the old instance"),
            Phase::Queued => f.write_str("waiting for another start on the host to finish"),
            Phase::Starting => f.write_str("starting"),
            Phase::Measuring => f.write_str("measuring the model file"),
            Phase::Probing(tick) => write!(f, "{tick}"),
            Phase::Recording => f.write_str("recording"),
        }
    }
}

/// How a resource's action ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done {
        elapsed: Duration,
    },
    Failed {
        step: String,
        reason: String,
        log_tail: Option<String>,
    },
    /// Not started because something it depends on failed or was skipped.
    Skipped {
        because: String,
    },
    /// Not started, or given up, because the user interrupted the apply.
    Cancelled,
}

/// One thing that happened during an apply.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyEvent {
    Started {
        address: String,
        action: Action,
    },
    Phase {
        address: String,
        phase: Phase,
    },
    /// A host is about to be changed for `address` (written before the change).
    Intent {
        address: String,
        action: Action,
    },
    /// The change of `address` is over, whatever its outcome.
    IntentDone {
        address: String,
    },
    /// `address` is now as this record says.
    Record(ResourceRecord),
    /// `address` no longer exists.
    Forget {
        address: String,
    },
    Finished {
        address: String,
        action: Action,
        outcome: Outcome,
    },
    /// The host lock of `host` was taken over from `previous`, whose lease had expired.
    HostLockTakenOver {
        host: String,
        previous: String,
    },
    /// Ctrl-C: the first stops new work, the second cancels probes.
    Interrupted {
        hard: bool,
    },
}

/// Something that listens to an apply. Returning an error from a state event fails the step.
pub trait Subscriber: Send + Sync {
    fn on_event(&self, event: &ApplyEvent) -> Result<(), String>;
}
