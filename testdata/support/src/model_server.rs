//! The `berth-model-server` stand-in: finding (and building when stale) its binary, and
//! finding its live processes on this machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::procs;

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
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../model-server");
        if modified(&bin).is_some_and(|built| newest(&source).is_some_and(|src| src <= built)) {
            return bin;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Command::new(cargo)
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

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<SystemTime> {
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

/// One live `berth-model-server` process on this machine, as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandIn {
    pub pid: u32,
    pub pgid: u32,
    pub port: u16,
    pub model: String,
    /// Its whole command line.
    pub argv: Vec<String>,
}

impl StandIn {
    /// The value of `flag` on its command line.
    pub fn flag(&self, flag: &str) -> Option<&str> {
        procs::flag_value(&self.argv, flag)
    }

    /// The environment it started with, one `NAME=value` an item (empty once it is gone).
    pub fn environ(&self) -> Vec<String> {
        procs::environ(self.pid).unwrap_or_default()
    }

    /// SIGKILLs it and, when it leads a group of its own, that whole group.
    pub fn kill9(&self) {
        procs::signal_group(self.pgid, libc::SIGKILL);
        procs::signal(self.pid, libc::SIGKILL);
    }
}

/// Every live `berth-model-server` process on the machine (not the `sh -c` that launched it),
/// by port then pid.
pub fn all_stand_ins() -> Vec<StandIn> {
    let mut found: Vec<StandIn> = procs::pids()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pid| {
            let argv = procs::cmdline(pid)?;
            let program = Path::new(argv.first()?).file_name()?;
            if program != "berth-model-server" || !procs::alive(pid) {
                return None;
            }
            Some(StandIn {
                pid,
                pgid: procs::pgid(pid).unwrap_or(0),
                port: procs::flag_value(&argv, "--port")?.parse().ok()?,
                model: procs::flag_value(&argv, "--model")
                    .unwrap_or_default()
                    .to_string(),
                argv,
            })
        })
        .collect();
    found.sort_by_key(|s| (s.port, s.pid));
    found
}
