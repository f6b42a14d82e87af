//! Every runtime berth has runs the conformance suite in `suite.rs`: the process runtime on
//! the local transport, the docker runtime on this machine's engine (local transport, the
//! stand-in image), and the systemd runtime over SSH on a systemd host container, as root and
//! as a login that goes through sudo. A new
//! runtime is added here. The docker and systemd targets need root and docker; without a
//! docker engine their cases say so and pass.

#[path = "../common/mod.rs"]
mod common;
mod suite;

use std::any::Any;
use std::sync::OnceLock;

use async_trait::async_trait;
use berth_providers::{
    ContainerRuntime, ContainerSpec, Instance, LaunchSpec, LocalTransport, ProcessRuntime,
    RuntimeSpec, SshTransport, SystemdRuntime, SystemdSpec, Transport,
};
use berth_test_support::docker::{self, ContainerGuard, Engine};
use berth_test_support::systemd_host::{BIN_DIR, SystemdHost};
use suite::Target;

/// A launch of `command` with the fields the suite compares.
fn launch(run_dir: &str, address: &str, port: u16, command: &str, rt: RuntimeSpec) -> LaunchSpec {
    LaunchSpec {
        owner: "test-state".into(),
        address: address.to_string(),
        run_dir: run_dir.to_string(),
        command: command.to_string(),
        env: Vec::new(),
        port,
        fingerprint: format!("fp-{address}-{port}"),
        runtime: rt,
    }
}

/// Plain processes on this machine.
struct Process {
    _run: tempfile::TempDir,
    run_dir: String,
    rt: ProcessRuntime,
    t: LocalTransport,
}

#[async_trait]
impl Target for Process {
    type Rt = ProcessRuntime;

    async fn setup(_tag: &str) -> Option<Self> {
        let run = tempfile::tempdir().unwrap();
        let run_dir = run.path().to_str().unwrap().to_string();
        Some(Process {
            _run: run,
            run_dir,
            rt: ProcessRuntime::new(),
            t: LocalTransport::new("conformance"),
        })
    }
    fn runtime(&self) -> &ProcessRuntime {
        &self.rt
    }
    fn transport(&self) -> &dyn Transport {
        &self.t
    }
    fn run_dir(&self) -> &str {
        &self.run_dir
    }
    fn launch(&self, address: &str, port: u16, command: &str) -> LaunchSpec {
        launch(
            &self.run_dir,
            address,
            port,
            command,
            RuntimeSpec::default(),
        )
    }
    fn stand_in(&self) -> String {
        let bin = berth_test_support::model_server();
        berth_providers::transport::quote(bin.to_str().expect("utf-8 path")).expect("quotable")
    }
    fn guard(&self, instance: &Instance) -> Box<dyn Any + Send> {
        Box::new(common::KillOnDrop(vec![common::pid(instance)]))
    }
    fn damage_record(&self, address: &str) -> bool {
        let dir = ProcessRuntime::deployment_dir(&self.run_dir, address);
        std::fs::write(format!("{dir}/meta.json"), "{\"address\": \"garbled").unwrap();
        true
    }
    fn command_lines(&self) -> String {
        common::all_command_lines()
    }
}

/// Containers of this machine's docker engine, host network, the stand-in image.
struct Docker {
    _run: tempfile::TempDir,
    run_dir: String,
    image: String,
    rt: ContainerRuntime,
    t: LocalTransport,
    _guard: ContainerGuard,
}

#[async_trait]
impl Target for Docker {
    type Rt = ContainerRuntime;

    async fn setup(_tag: &str) -> Option<Self> {
        if !docker::available() {
            eprintln!("skipped: docker is missing or its engine does not answer");
            return None;
        }
        let image = tokio::task::spawn_blocking(|| docker::stand_in_image("a"))
            .await
            .unwrap();
        let run = tempfile::tempdir().unwrap();
        let run_dir = run.path().to_str().unwrap().to_string();
        Some(Docker {
            _guard: ContainerGuard {
                engine: Engine::local(),
                run_dir: run_dir.clone(),
            },
            _run: run,
            run_dir,
            image,
            rt: ContainerRuntime::docker(),
            t: LocalTransport::new("conformance"),
        })
    }
    fn runtime(&self) -> &ContainerRuntime {
        &self.rt
    }
    fn transport(&self) -> &dyn Transport {
        &self.t
    }
    fn run_dir(&self) -> &str {
        &self.run_dir
    }
    fn launch(&self, address: &str, port: u16, command: &str) -> LaunchSpec {
        let c = ContainerSpec {
            image: self.image.clone(),
            ..ContainerSpec::default()
        };
        launch(
            &self.run_dir,
            address,
            port,
            command,
            RuntimeSpec::Container(c),
        )
    }
    fn stand_in(&self) -> String {
        "berth-model-server".into()
    }
    fn guard(&self, _instance: &Instance) -> Box<dyn Any + Send> {
        // The target's ContainerGuard removes every container of the run_dir.
        Box::new(())
    }
    fn damage_record(&self, _address: &str) -> bool {
        false
    }
    fn command_lines(&self) -> String {
        common::all_command_lines()
    }
}

/// Units of a systemd host container, over SSH: as root, or with `SUDO` as `deploy`, a login
/// that changes system units through passwordless sudo. One host serves every case of the
/// binary (each in a run_dir of its own); it goes when a later run prunes hosts whose test
/// process has ended.
struct Systemd<const SUDO: bool> {
    host: &'static SystemdHost,
    run_dir: String,
    rt: SystemdRuntime,
    t: SshTransport,
}

fn systemd_host() -> &'static SystemdHost {
    static HOST: OnceLock<SystemdHost> = OnceLock::new();
    HOST.get_or_init(|| SystemdHost::start("conf"))
}

#[async_trait]
impl<const SUDO: bool> Target for Systemd<SUDO> {
    type Rt = SystemdRuntime;

    async fn setup(tag: &str) -> Option<Self> {
        if !docker::available() {
            eprintln!("skipped: the systemd host needs docker, which does not answer");
            return None;
        }
        let host = tokio::task::spawn_blocking(systemd_host).await.unwrap();
        let (login, home) = if SUDO {
            ("deploy", "/home/deploy")
        } else {
            ("root", "/var/lib")
        };
        let t = SshTransport::connect(host.config(login)).await.unwrap();
        Some(Systemd {
            host,
            run_dir: format!("{home}/berth-conformance/{tag}"),
            rt: SystemdRuntime::new(),
            t,
        })
    }
    fn runtime(&self) -> &SystemdRuntime {
        &self.rt
    }
    fn transport(&self) -> &dyn Transport {
        &self.t
    }
    fn run_dir(&self) -> &str {
        &self.run_dir
    }
    fn launch(&self, address: &str, port: u16, command: &str) -> LaunchSpec {
        launch(
            &self.run_dir,
            address,
            port,
            command,
            RuntimeSpec::Systemd(SystemdSpec::default()),
        )
    }
    fn stand_in(&self) -> String {
        format!("{BIN_DIR}/berth-model-server")
    }
    fn guard(&self, _instance: &Instance) -> Box<dyn Any + Send> {
        // Units live in the host container, which goes with the test run.
        Box::new(())
    }
    fn damage_record(&self, _address: &str) -> bool {
        false
    }
    fn command_lines(&self) -> String {
        self.host
            .root_sh(
                "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; echo; done 2>/dev/null",
            )
            .stdout_text()
    }
}

runtime_conformance!(process, Process);
runtime_conformance!(docker_local, Docker);
runtime_conformance!(systemd_ssh, Systemd<false>);
runtime_conformance!(systemd_sudo_ssh, Systemd<true>);
