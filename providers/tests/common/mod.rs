//! Helpers shared by the integration tests: the model-server stand-in, free ports, and looking
//! at processes through /proc. Tests use real processes and real sockets, never mocks.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_providers::LaunchSpec;

/// The `berth-model-server` binary, built once per test process.
///
/// Cargo only hands `CARGO_BIN_EXE_*` to tests of the package that owns the binary, so this
/// finds the target directory from the test executable's own path
/// (`<target>/<profile>/deps/<test>`) and, unless the binary there is newer than every file of
/// `testdata/model-server`, runs `cargo build -p berth-model-server` into it. (Always running
/// cargo would be correct too, but it waits for the shared target directory's lock.)
pub fn model_server() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("test executable lives in <target>/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev".to_string(),
            Some(other) => other.to_string(),
        };
        let bin = profile_dir.join("berth-model-server");
        let source =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/model-server");
        if modified(&bin).is_some_and(|built| newest(&source).is_some_and(|src| src <= built)) {
            return bin;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = std::process::Command::new(cargo)
            .args(["build", "--quiet", "-p", "berth-model-server", "--profile"])
            .arg(&profile)
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p berth-model-server");
        assert!(status.success(), "cargo build -p berth-model-server failed");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut latest = modified(dir)?;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest(&path)
        } else {
            modified(&path)
        };
        latest = latest.max(time?);
    }
    Some(latest)
}

/// A TCP port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

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
    }
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
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
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
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
