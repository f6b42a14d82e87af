//! What the executor tells its subscribers: plain data, in the order things happen. Also the
//! typed steps of a resource's action and the error a failed step ends with.

use std::time::Duration;

use berth_providers::GateTick;
use berth_state::{Address, ResourceRecord};

use crate::ops::StopLevel;
use crate::plan::{Action, Operation};

/// The step a resource is in.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Connecting,
    Verifying,
    Stopping,
    /// Stopping the instance that did not pass its probe gate.
    StoppingFailed,
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
            Phase::StoppingFailed => {
                f.write_str("stopping the instance that failed its probe gate")
            }
            Phase::Queued => f.write_str("waiting for another start on the host to finish"),
            Phase::Starting => f.write_str("starting"),
            Phase::Measuring => f.write_str("measuring the model file"),
            Phase::Probing(tick) => write!(f, "{tick}"),
            Phase::Recording => f.write_str("recording"),
        }
    }
}

/// A step of a resource's action: where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Connecting to the host.
    Connect,
    /// Taking (or keeping) the host lock.
    HostLock,
    /// Checking that the plan still holds for this resource.
    Plan,
    /// Rendering the launch from the config.
    Render,
    /// Choosing the runtime that runs the service.
    Runtime,
    /// Observing a running instance before reusing it.
    Observe,
    /// Claiming a running instance for this state.
    Adopt,
    /// Running the backend's verify_cmd.
    Verify,
    /// Stopping the old instance.
    Stop,
    /// Starting the service.
    Start,
    /// The probe gate.
    Probe,
    /// Writing the outcome to the state.
    Record,
}

impl Step {
    /// The step's name as messages, the state and the history show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::HostLock => "host lock",
            Step::Plan => "plan",
            Step::Render => "render",
            Step::Runtime => "runtime",
            Step::Observe => "observe",
            Step::Adopt => "adopt",
            Step::Verify => "verify",
            Step::Stop => "stop",
            Step::Start => "start",
            Step::Probe => "probe",
            Step::Record => "record",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a step failed: the step, the message (with its causes and help), the diagnostic code
/// of the cause when it had one, and the service's log tail when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct StepError {
    pub step: Step,
    pub message: String,
    /// The miette code of the cause (`berth::ssh::connect`), if it had one.
    pub code: Option<String>,
    pub log_tail: Option<String>,
    /// The step was cut short by a cancel, not by a fault.
    pub cancelled: bool,
}

impl StepError {
    /// A failure of `step` with a plain message.
    pub fn new(step: Step, message: impl Into<String>) -> Self {
        StepError {
            step,
            message: message.into(),
            code: None,
            log_tail: None,
            cancelled: false,
        }
    }

    /// A failure of `step` caused by a diagnostic: its text (causes and help on one line) and
    /// its code are kept.
    pub fn caused_by(step: Step, cause: &(dyn miette::Diagnostic + Send + Sync + 'static)) -> Self {
        StepError {
            code: cause.code().map(|c| c.to_string()),
            ..StepError::new(step, crate::connections::error_text(cause))
        }
    }

    /// The same failure with the service's log tail.
    pub fn with_tail(mut self, tail: Option<String>) -> Self {
        self.log_tail = tail;
        self
    }

    /// The same failure, marked as cut short by a cancel.
    pub fn cancelled(mut self) -> Self {
        self.cancelled = true;
        self
    }

    /// Where it failed, as shown to people: `probe`, or `probe (cancelled)`.
    pub fn at(&self) -> String {
        if self.cancelled {
            format!("{} (cancelled)", self.step)
        } else {
            self.step.to_string()
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed at {}: {}", self.at(), self.message)
    }
}

/// How a resource's action ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done {
        elapsed: Duration,
    },
    Failed(StepError),
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
        address: Address,
        action: Action,
    },
    Phase {
        address: Address,
        phase: Phase,
    },
    /// A host is about to be changed for `address` (written before the change).
    Intent {
        address: Address,
        action: Action,
    },
    /// The change of `address` is over, whatever its outcome.
    IntentDone {
        address: Address,
    },
    /// `address` is now as this record says.
    Record(ResourceRecord),
    /// `address` no longer exists.
    Forget {
        address: Address,
    },
    Finished {
        address: Address,
        host: String,
        action: Action,
        outcome: Outcome,
    },
    /// The host lock of `host` was taken over from `previous`, whose lease had expired.
    HostLockTakenOver {
        host: String,
        previous: String,
    },
    /// The run begins: `resources` actions to carry out. `at` is in seconds since the epoch.
    RunStarted {
        operation: Operation,
        resources: usize,
        at: u64,
    },
    /// A stop was asked for: at `Drain` nothing new starts, at `Cancel` running steps end now.
    /// `reason` names who asked (a signal name).
    CancelBegan {
        level: StopLevel,
        reason: String,
        at: u64,
    },
    /// The run is over; `interrupted` when a stop was asked for.
    RunFinished {
        counts: Counts,
        interrupted: bool,
        at: u64,
    },
}

/// How many resources ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
    pub cancelled: usize,
}

impl Counts {
    /// Counts `outcomes`.
    pub fn of<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Self {
        let mut c = Counts::default();
        for o in outcomes {
            match o {
                Outcome::Done { .. } => c.done += 1,
                Outcome::Failed(_) => c.failed += 1,
                Outcome::Skipped { .. } => c.skipped += 1,
                Outcome::Cancelled => c.cancelled += 1,
            }
        }
        c
    }
}

/// Something that listens to an apply. Returning an error from a state event fails the step.
pub trait Subscriber: Send + Sync {
    fn on_event(&self, event: &ApplyEvent) -> Result<(), String>;
}
