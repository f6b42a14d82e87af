//! Every runtime berth has runs the conformance suite in `suite.rs` against the local
//! transport; a new runtime is added here.

#[path = "../common/mod.rs"]
mod common;
mod suite;

use berth_providers::ProcessRuntime;

runtime_conformance!(
    process,
    runtime: ProcessRuntime::new(),
    guard: |inst: &berth_providers::Instance| common::KillOnDrop(vec![common::pid(inst)]),
    damage_record: |run_dir: &str, address: &str| {
        let dir = ProcessRuntime::deployment_dir(run_dir, address);
        std::fs::write(format!("{dir}/meta.json"), "{\"address\": \"garbled").unwrap();
    },
);
