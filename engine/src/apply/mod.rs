//! Carrying out a plan: the executor walks the plan's resources on tokio and emits events; the
//! state writer, the history writer and the progress display subscribe to them.

mod display;
mod events;
mod executor;
mod history;
mod state_writer;

pub use display::Display;
pub use events::{ApplyEvent, Counts, Outcome, Phase, Step, StepError, Subscriber};
pub use executor::{ApplyOptions, ApplyReport, NodeResult, execute, tail};
pub use history::HistoryWriter;
pub use state_writer::StateWriter;
