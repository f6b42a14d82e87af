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
pub use probe::{GateFailure, GateReady, GateTick, GateTiming, HttpAnswer, Probe, ProbeOutcome};
pub use runtime::{
    CheckStatus, ContainerHandle, ContainerRuntime, ContainerSpec, Handle, HostCheck, HostTools,
    Instance, LaunchSpec, Liveness, MarkerProblem, Observed, Prerequisite, ProcessHandle,
    ProcessRuntime, Registry, Runtime, RuntimeSpec, Survey, SystemdRuntime, SystemdSpec,
};
pub use transport::{Command, LocalTransport, Output, Transport};
pub use transport::{HostLock, LEASE_RENEW_EVERY, LEASE_TTL, SshConfig, SshTransport};

/// A duration for messages, to the millisecond: "10s", "500ms", "1m 30s".
pub fn human_duration(d: std::time::Duration) -> String {
    let ms = std::time::Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    humantime::format_duration(ms).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_for_messages() {
        assert_eq!(super::human_duration(Duration::from_secs(10)), "10s");
        assert_eq!(super::human_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(
            super::human_duration(Duration::from_micros(300_400)),
            "300ms"
        );
        assert_eq!(super::human_duration(Duration::from_secs(90)), "1m 30s");
    }
}
