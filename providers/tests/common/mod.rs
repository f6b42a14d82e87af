//! Helpers shared by the integration tests: launch specs for the model-server stand-in, and
//! looking at processes through /proc (the stand-in itself, free ports and polling come from
//! berth-test-support). Tests use real processes and real sockets, never mocks.

#![allow(dead_code)]

use std::time::Duration;

use berth_providers::{Instance, LaunchSpec, ProcessHandle};
pub use berth_test_support::free_port;
use berth_test_support::model_server;

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

/// The /proc/PID/stat fields after the command name: state is `[0]`, pgrp `[2]`, start ticks
/// `[19]`. `None` when the process does not exist.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// True when `pid` exists and has not exited (a zombie waiting for its parent counts as gone).
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| !matches!(f[0].as_str(), "Z" | "X" | "x"))
}

/// Start ticks of `pid` (field 22 of /proc/PID/stat).
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(pid).and_then(|f| f.get(19)?.parse().ok())
}

/// Live processes whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for pid in berth_test_support::procs::pids().expect("read /proc") {
        if let Some(f) = stat_fields(pid)
            && !matches!(f[0].as_str(), "Z" | "X" | "x")
            && f[2] == pgid.to_string()
        {
            members.push(pid);
        }
    }
    members
}

/// Polls `check` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, check: impl FnMut() -> bool) -> bool {
    berth_test_support::poll_until(timeout, Duration::from_millis(20), check)
}

/// Every command line on the machine, as `ps` shows them.
pub fn all_command_lines() -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            all.push_str(&String::from_utf8_lossy(&bytes).replace('\0', " "));
            all.push('\n');
        }
    }
    if let Ok(out) = std::process::Command::new("ps")
        .args(["-eww", "-o", "args"])
        .output()
    {
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

/// Kills a process group when dropped, so a failing test leaves no service behind.
pub struct KillOnDrop(pub Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pgid in &self.0 {
            if pgid > 1 {
                // SAFETY: plain syscall; errors (group already gone) are irrelevant here.
                unsafe {
                    libc::kill(-(pgid as i32), libc::SIGKILL);
                }
            }
        }
    }
}
