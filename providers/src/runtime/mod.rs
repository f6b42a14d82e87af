//! The `Runtime` seam: start, observe, stop and read the logs of a service through a
//! [`Transport`]. Every instance a runtime starts carries its berth address and fingerprint on
//! the host itself, so that berth can re-adopt it without its state. What identifies an
//! instance (a pid, a unit invocation, a container id) is a [`Handle`] that only the runtime
//! which started it interprets; callers store and compare it, never read it.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Result, Transport};

mod container;
mod process;
mod registry;
mod systemd;

pub use container::{ContainerHandle, ContainerRuntime};
pub use process::{ProcessHandle, ProcessRuntime};
pub use registry::Registry;
pub use systemd::SystemdRuntime;

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
    /// What only one kind of runtime reads.
    pub runtime: RuntimeSpec,
}

/// The part of a launch that belongs to one kind of runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RuntimeSpec {
    /// A plain process group: the command is all it needs.
    #[default]
    Process,
    /// A systemd unit.
    Systemd(SystemdSpec),
    /// A docker or podman container.
    Container(ContainerSpec),
}

/// How a systemd runtime writes the unit of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemdSpec {
    /// A `--user` unit rather than a system one.
    pub user: bool,
    /// Extra `[Service]` options, written in this order.
    pub options: Vec<(String, String)>,
}

/// How a container runtime runs a service (a backend's `container` block).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    pub image: String,
    /// A `docker save` archive on the host, loaded when the image is missing.
    pub image_archive: Option<String>,
    /// The `--gpus` value.
    pub gpus: Option<String>,
    /// `--volume` values.
    pub volumes: Vec<String>,
    /// The `--network` value.
    pub network: Option<String>,
    /// `--publish` values.
    pub ports: Vec<String>,
    /// Arguments added to `run` as written.
    pub extra_args: Vec<String>,
}

/// What identifies a started instance on its host (for the process runtime its pid and start
/// ticks). Only the runtime that started the instance interprets it; everyone else stores it
/// and hands it back. It is flat JSON: its keys sit beside the instance's other fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Handle(BTreeMap<String, serde_json::Value>);

impl Handle {
    /// A handle of these fields.
    pub fn new(fields: impl IntoIterator<Item = (String, serde_json::Value)>) -> Self {
        Handle(fields.into_iter().collect())
    }

    /// The handle whose `keys` are taken from `fields` (e.g. a state record's attributes);
    /// `None` when any is missing.
    pub fn pick(fields: &BTreeMap<String, serde_json::Value>, keys: &[&str]) -> Option<Self> {
        keys.iter()
            .map(|k| Some((k.to_string(), fields.get(*k)?.clone())))
            .collect::<Option<BTreeMap<_, _>>>()
            .map(Handle)
    }

    /// One field, for the runtime that wrote it.
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.0.get(key)
    }

    /// Every field, to store it.
    pub fn fields(&self) -> impl Iterator<Item = (&String, &serde_json::Value)> {
        self.0.iter()
    }
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
    /// Which instance it is, as its runtime tells.
    #[serde(flatten)]
    pub handle: Handle,
    /// Unix seconds when berth started it.
    pub started_at: u64,
    /// The digest of what the instance runs (a container's image id), for runtimes that pin
    /// one; compared with [`Prerequisite::digest`] to tell a tag that moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
}

/// Something a launch needs on its host before it can start (a container's image), as the
/// host has it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prerequisite {
    /// The launch's address.
    pub address: String,
    /// What is needed, for messages: `image ghcr.io/ggml-org/llama.cpp:server`.
    pub what: String,
    /// Its digest on the host now (an image id); `None` when the host lacks it.
    pub digest: Option<String>,
    /// Where it is taken from when missing (an image archive on the host); `None`: nowhere.
    pub source: Option<String>,
}

/// A finding of a runtime about a host, for `hosts doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCheck {
    /// What was checked: `docker daemon`, `image llama:server`.
    pub check: String,
    pub status: CheckStatus,
    pub detail: String,
    /// How to fix it, when it is not ok.
    pub fix: Option<String>,
}

impl HostCheck {
    /// A check that passed.
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        HostCheck {
            check: check.into(),
            status: CheckStatus::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A check that failed, with the fix when there is one.
    pub fn fail(check: impl Into<String>, detail: impl Into<String>, fix: Option<String>) -> Self {
        HostCheck {
            check: check.into(),
            status: CheckStatus::Fail,
            detail: detail.into(),
            fix,
        }
    }
}

/// How a [`HostCheck`] came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Ok,
    Warn,
    Fail,
}

/// Whether an instance recorded on the host is still the service berth started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Liveness {
    Running,
    /// It has stopped.
    Exited,
    /// Its place is taken by something berth did not start (a reused pid, a container of
    /// another id under its name).
    Replaced,
}

/// An instance found on a host, and whether it still runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub instance: Instance,
    pub liveness: Liveness,
    /// How the runtime itself says a stopped instance stands ("unit berth-m.service stopped
    /// (ActiveState=inactive, SubState=dead)"), for runtimes that say more than "exited"; or
    /// a running one that it is bringing back after a crash ("container restarting after a
    /// crash (exit code 1)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
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

/// The commands a runtime needs on a host, for `hosts doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTools {
    /// Commands that must be on the PATH of a login.
    pub commands: &'static [&'static str],
    /// Paths that must exist (e.g. `/proc`).
    pub paths: &'static [&'static str],
    /// How to install what is missing.
    pub help: &'static str,
}

/// A way of running services on a host: plain processes, systemd units, containers.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// The runtime's name as written in config (`process`, `systemd`, `docker`, `podman`).
    fn name(&self) -> &'static str;

    /// What this runtime needs on a host.
    fn host_tools(&self) -> HostTools;

    /// The keys of this runtime's [`Handle`]s, so that a caller can store a handle among other
    /// fields and pick it out again.
    fn handle_keys(&self) -> &'static [&'static str];

    /// The artifact that would run the service (a script, a unit, a container spec), shown in
    /// plans. It holds env keys but never env values.
    fn render(&self, spec: &LaunchSpec) -> String;

    /// What each of `specs` needs on the host before it can start, as the host has it now, in
    /// one round trip. Runtimes that need nothing keep this default.
    async fn prerequisites(
        &self,
        _transport: &dyn Transport,
        _specs: &[LaunchSpec],
    ) -> Result<Vec<Prerequisite>> {
        Ok(Vec::new())
    }

    /// Makes sure what `spec` needs is on the host (loads a missing image from its archive),
    /// or fails saying what is missing. Called before an old instance is stopped, so a launch
    /// that cannot start stops nothing; [`Runtime::start`] does the same itself, so a start
    /// with nothing to replace needs no call of this.
    async fn prepare(&self, _transport: &dyn Transport, _spec: &LaunchSpec) -> Result<()> {
        Ok(())
    }

    /// What this runtime finds wrong on the host for `specs` beyond missing tools (a daemon
    /// that does not answer, an image that is missing, GPUs without their container support).
    async fn diagnose(&self, _transport: &dyn Transport, _specs: &[LaunchSpec]) -> Vec<HostCheck> {
        Vec::new()
    }

    /// Starts the service detached from berth and records it on the host, bringing what it
    /// needs there first as [`Runtime::prepare`] does.
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

    /// [`Runtime::survey`] of `run_dir` and [`Runtime::prerequisites`] of `specs` together:
    /// what a refresh asks of each host. Runtimes that can answer both in one round trip
    /// override it.
    async fn survey_with_prerequisites(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        specs: &[LaunchSpec],
    ) -> Result<(Survey, Vec<Prerequisite>)> {
        let survey = self.survey(transport, run_dir).await?;
        let needs = if specs.is_empty() {
            Vec::new()
        } else {
            self.prerequisites(transport, specs).await?
        };
        Ok((survey, needs))
    }

    /// The instance recorded for `address`, if any, in one round trip. Runtimes override it
    /// when one instance is cheaper to look at than all of them.
    async fn observe(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
    ) -> Result<Option<Observed>> {
        let all = self.observe_all(transport, run_dir).await?;
        Ok(all.into_iter().find(|o| o.instance.address == address))
    }

    /// Whether `started` still runs and is still the instance this runtime started (not a
    /// successor under the same address, nor something that took its place): `Some(restarts)`
    /// when it is, `restarts` being how many times the runtime has brought it back after it
    /// ended (0 for a runtime whose restart makes a new instance, as a unit's new
    /// invocation); `None` when it is not, or is down waiting to be brought back. The probe
    /// gate asks this between polls: a server that ends before it is ready fails the gate,
    /// even when its runtime restarts it.
    async fn still_mine(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        started: &Instance,
    ) -> Result<Option<u64>> {
        let observed = self.observe(transport, run_dir, &started.address).await?;
        Ok(observed
            .is_some_and(|o| o.liveness == Liveness::Running && o.instance.handle == started.handle)
            .then_some(0))
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

    /// Like [`Runtime::stop`], with the handle berth's state recorded for the instance, used
    /// only when the record on the host is missing or unreadable. An unreadable record and no
    /// handle is an error ([`crate::ProviderError::UnreadableMarker`]): the service may run.
    async fn stop_with(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        address: &str,
        recorded: Option<&Handle>,
        grace: Duration,
    ) -> Result<()>;

    /// Records `owner` as the state that manages `instance` (adopting one that another state
    /// started, or that predates owners). The record is rewritten from `instance` as observed,
    /// and only while the host still records that same instance.
    async fn claim(
        &self,
        transport: &dyn Transport,
        run_dir: &str,
        instance: &Instance,
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

/// Now, in whole seconds since the Unix epoch, by berth's clock: the `started_at` a runtime
/// records for an instance it starts.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs one script of a runtime on the host; a non-zero exit becomes
/// [`crate::ProviderError::CommandFailed`] naming `what`, with the script's stderr.
pub(crate) async fn run_script(
    transport: &dyn Transport,
    command: crate::Command,
    what: String,
) -> Result<crate::Output> {
    let out = transport.exec(command).await?;
    if out.success() {
        Ok(out)
    } else {
        Err(command_failed(transport, what, &out))
    }
}

/// The error of a runtime script that exited non-zero: what it was for and its stderr.
pub(crate) fn command_failed(
    transport: &dyn Transport,
    what: String,
    out: &crate::Output,
) -> crate::ProviderError {
    crate::ProviderError::CommandFailed {
        host: transport.host().to_string(),
        what,
        status: out.status,
        stderr: out.stderr_text().trim().to_string(),
    }
}

/// The error of a runtime script whose output cannot be read.
pub(crate) fn malformed(
    transport: &dyn Transport,
    what: &str,
    output: &str,
) -> crate::ProviderError {
    crate::ProviderError::Malformed {
        host: transport.host().to_string(),
        what: what.to_string(),
        message: format!("{:?}", output.trim()),
    }
}

/// Refuses an env key that is not a shell variable name; the error names the key of `spec`,
/// never a value.
pub(crate) fn check_env_key(spec: &LaunchSpec, key: &str) -> Result<()> {
    let valid = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(crate::ProviderError::InvalidSpec {
            address: spec.address.clone(),
            message: format!("env key {key:?} is not a shell variable name"),
        })
    }
}
