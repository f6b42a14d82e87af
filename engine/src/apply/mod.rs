//! Carrying out a plan: the executor walks the plan's resources on tokio and emits events; the
//! state writer and the progress display subscribe to them.

mod display;
mod events;
mod executor;
mod state_writer;

pub use display::Display;
pub use events::{ApplyEvent, Outcome, Phase, Subscriber};
pub use executor::{ApplyOptions, ApplyReport, NodeResult, execute, tail};
pub use state_writer::StateWriter;
