//! berth-providers: how berth reaches a host and runs model servers on it.
//!
//! A [`Transport`] runs commands and moves files on one host (the local machine, or a remote one
//! over SSH); a [`Runtime`] starts, observes and stops services through any transport; probes
//! tell when a started service is ready. This crate knows nothing of HCL, plans or state.

mod error;
pub mod probe;
pub mod runtime;
pub mod transport;

pub use error::{ProviderError, Result};
pub use runtime::{Instance, LaunchSpec, Liveness, Observed, Runtime};
pub use transport::{Command, Output, Transport};
