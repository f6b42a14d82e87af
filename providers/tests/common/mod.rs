//! What the integration tests share: launch specs for the model-server stand-in and the process
//! identity an instance records (the stand-in itself, free ports, polling and /proc come from
//! berth-test-support). Tests use real processes and real sockets, never mocks.

#![allow(dead_code)]

use berth_providers::{Instance, LaunchSpec, ProcessHandle};
use berth_test_support::model_server;
#[allow(unused_imports)] // not every test binary that has this module asks for each
pub use berth_test_support::procs::{
    KillOnDrop, alive, all_command_lines, group_members, start_ticks, stat_fields,
};
#[allow(unused_imports)]
pub use berth_test_support::{free_port, wait_until};

/// A launch spec for the stand-in on `port` with extra flags.
pub fn stand_in(run_dir: &str, address: &str, port: u16, flags: &str) -> LaunchSpec {
    let bin = model_server();
    let bin =
        berth_providers::transport::quote(bin.to_str().expect("utf-8 path")).expect("quotable");
    LaunchSpec {
        owner: "test-state".into(),
        address: address.to_string(),
        run_dir: run_dir.to_string(),
        command: format!("{bin} --port {port} {flags}"),
        env: Vec::new(),
        port,
        fingerprint: format!("fp-{address}-{port}"),
        runtime: Default::default(),
    }
}

/// The group leader a process-runtime instance records.
pub fn pid(instance: &Instance) -> u32 {
    ProcessHandle::of(&instance.handle)
        .expect("a process handle")
        .pid
}

/// The start ticks a process-runtime instance records for its group leader.
pub fn ticks(instance: &Instance) -> u64 {
    ProcessHandle::of(&instance.handle)
        .expect("a process handle")
        .start_ticks
}
