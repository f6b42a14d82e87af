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
pub use probe::{GateFailure, GateReady, GateTick, GateTiming, Probe, ProbeOutcome};
pub use runtime::{
    ContainerSpec, Handle, HostTools, Instance, LaunchSpec, Liveness, MarkerProblem, Observed,
    ProcessHandle, ProcessRuntime, Registry, Runtime, RuntimeSpec, Survey, SystemdSpec,
};
pub use transport::{Command, LocalTransport, Output, Transport};
pub use transport::{HostLock, LEASE_RENEW_EVERY, LEASE_TTL, SshConfig, SshTransport};
