//! The `Runtime` seam: start, observe, stop and read the logs of a service through a
//! [`Transport`]. Every instance a runtime starts carries its berth address and fingerprint on
//! the host itself, so that berth can re-adopt it without its state.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Result, Transport};

mod process;

pub use process::ProcessRuntime;

/// Everything a runtime needs to start one service; rendered by the engine, opaque here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The berth address, e.g. `model.qwen2.5-7b@gpu-a`; names the instance on the host.
    pub address: String,
    /// Directory on the host for metadata, logs and env files.
    pub run_dir: String,
    /// The fully rendered shell command (every template value already shell-quoted).
    pub command: String,
    /// Environment of the service. Values may be secret: they reach the host only in a
    /// mode-0600 file, never in a command line, a log line or an error message.
    pub env: Vec<(String, String)>,
    /// The port the service listens on.
    pub port: u16,
    /// Hash of the launch spec, recorded on the host beside the instance.
    pub fingerprint: String,
    /// Which berth state starts it (its lineage), recorded on the host so that berths with
    /// separate states sharing a host leave each other's instances alone.
    pub owner: String,
}

/// A started service as recorded on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub address: String,
    pub fingerprint: String,
    /// The lineage of the berth state that started it (empty when not recorded).
    #[serde(default)]
    pub owner: String,
    pub port: u16,
    /// Process id of the service (the leader of its process group).
    pub pid: u32,
    /// Kernel start time of `pid` in clock ticks since boot (`/proc/PID/stat` field 22), which
    /// tells a live service from an unrelated process that reused its pid.
    pub start_ticks: u64,
    /// Unix seconds when berth started it.
    pub started_at: u64,
}

/// Whether an instance recorded on the host is still the process berth started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    Running,
    /// No process has that pid any more.
    Exited,
    /// A process has that pid, but it is not the one berth started.
    PidReused,
}

/// An instance found on a host, and whether it still runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub instance: Instance,
    pub liveness: Liveness,
}

/// Which process a service is, as berth's state records it: what stops an instance whose
/// marker on the host is lost. The start ticks tell the service from a process that reused
/// its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: u32,
    /// Kernel start time of `pid` in clock ticks since boot.
    pub start_ticks: u64,
}

impl From<&Instance> for ProcessIdentity {
    fn from(instance: &Instance) -> Self {
        ProcessIdentity {
            pid: instance.pid,
            start_ticks: instance.start_ticks,
        }
    }
}

/// A deployment on the host whose marker berth cannot use: it cannot tell what runs there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkerProblem {
    /// The marker file (or the deployment directory that lacks one).
    pub path: String,
    /// What is wrong with it, said of the path: `is unreadable (REASON)`, `has no meta.json`.
    pub detail: String,
}

/// Everything found under a `run_dir`: the instances, and the markers that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    pub found: Vec<Observed>,
    pub problems: Vec<MarkerProblem>,
}

/// A way of running services on a host: plain processes, systemd units, containers.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// The runtime's name as written in config (`process`, `systemd`, `docker`, `podman`).
    fn name(&self) -> &'static str;

    /// The artifact that would run the service (a script, a unit, a container spec), shown in
    /// plans. It holds env keys but never env values.
    fn render(&self, spec: &LaunchSpec) -> String;

    /// Starts the service detached from berth and records it on the host.
    async fn start(&self, transport: &dyn Transport, spec: &LaunchSpec) -> Result<Instance>;

    /// Every instance recorded under `run_dir`, in one round trip.
    async fn observe_all(&self, transport: &dyn Transport, run_dir: &str) -> Result<Vec<Observed>>;

    /// Every instance recorded under `run_dir` and every record that cannot be read, in one
    /// round trip. Runtimes whose records cannot be damaged keep this default.
    async fn survey(&self, transport: &dyn Transport, run_dir: &str) -> Result<Survey> {
        Ok(Survey {
            found: self.observe_all(transport, run_dir).await?,
            problems: Vec::new(),
        })
    }

    /// The instance recorded for `address`, if any, in one round trip. The probe gate calls
    /// this between polls; runtimes override it when one instance is cheaper to look at than
    /// all of them.
    async fn observe(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
    ) -> Result<Option<Observed>> {
        let all = self.observe_all(transport, run_dir).await?;
        Ok(all.into_iter().find(|o| o.instance.address == address))
    }

    /// Stops the instance of `address` (TERM, then KILL after `grace`) and removes its record.
    /// Stopping something that is not running is not an error.
    async fn stop(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
        grace: Duration,
    ) -> Result<()> {
        self.stop_with(transport, run_dir, address, None, grace)
            .await
    }

    /// Like [`Runtime::stop`], with the identity berth's state recorded for the instance, used
    /// only when the record on the host is missing or unreadable. An unreadable record and no
    /// identity is an error ([`crate::ProviderError::UnreadableMarker`]): the service may run.
    async fn stop_with(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
        recorded: Option<ProcessIdentity>,
        grace: Duration,
    ) -> Result<()>;

    /// Records `owner` as the state that manages the instance of `address` (adopting one that
    /// another state started, or that predates owners).
    async fn claim(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
        owner: &str,
    ) -> Result<()>;

    /// The last `lines` lines of the service's output.
    async fn logs(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
        lines: usize,
    ) -> Result<String>;
}
