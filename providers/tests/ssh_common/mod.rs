//! Fixture shared by the `ssh_*` tests: this crate's place for the fleet of real OpenSSH hosts
//! of berth-test-support (names `b…`, subnets 10.212-243.x.0/24, apart from the engine's), and
//! running scripts and counting processes on it. It must not be used for anything but tests:
//! it needs root.

#![allow(dead_code)] // each test binary uses a different part of it

use std::process::Command as Process;
use std::sync::Arc;
use std::time::Duration;

use berth_providers::{Command, Transport};
pub use berth_test_support::fleet::Fleet;
use berth_test_support::fleet::FleetSpace;

/// This test binary's fleet of `hosts` hosts in this crate's space, brought up on first use.
/// `tag` (one letter) and the process id make its names and subnet unique.
pub fn shared_fleet(tag: char, hosts: usize) -> Arc<Fleet> {
    Fleet::shared(&FleetSpace::PROVIDERS, tag, hosts)
}

/// Runs a script that must succeed and returns its stdout.
pub async fn run_ok(t: &dyn Transport, script: &str) -> String {
    let out = t
        .exec(Command::new(script, Duration::from_secs(20)))
        .await
        .unwrap_or_else(|e| panic!("`{script}` on {}: {e}", t.host()));
    assert!(out.success(), "`{script}` on {}: {out:?}", t.host());
    out.stdout_text()
}

/// How many processes on the machine have exactly these arguments (hosts share the pid
/// namespace, so this sees every host's processes).
pub fn processes_with_args(args: &str) -> usize {
    let out = Process::new("ps")
        .args(["-eo", "args="])
        .output()
        .expect("ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim() == args)
        .count()
}
