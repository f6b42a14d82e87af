//! Finding (and building when stale) the `berth-model-server` stand-in binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

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
