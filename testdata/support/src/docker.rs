//! Docker for the container tests: the stand-in image (built by `testdata/images/build-stand-in`
//! once per machine and reused), docker commands against this machine's engine or a test host's
//! private one, and a guard that removes the containers one test's run_dir labels, never
//! anything broader. Real engines only; for tests only.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::model_server;

/// Whether a docker engine answers on this machine.
pub fn available() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The stand-in image of `variant` (two variants are two images with different ids), built
/// on first use.
pub fn stand_in_image(variant: &str) -> String {
    static BUILT: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, image)) = built.iter().find(|(v, _)| v == variant) {
        return image.clone();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/build-stand-in");
    let out = Command::new(&script)
        .arg(model_server())
        .arg(variant)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
    built.push((variant.to_string(), image.clone()));
    image
}

/// One docker engine: this machine's, or the one behind `host` (a `unix://` socket).
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub host: Option<String>,
}

/// What a docker command did.
#[derive(Debug, Clone)]
pub struct Answer {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Engine {
    /// This machine's engine.
    pub fn local() -> Engine {
        Engine { host: None }
    }

    /// Runs `docker ARGS...` against this engine.
    pub fn run(&self, args: &[&str]) -> Answer {
        let mut cmd = Command::new("docker");
        if let Some(host) = &self.host {
            cmd.env("DOCKER_HOST", host);
        }
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker");
        Answer {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `docker ARGS...` and returns its trimmed stdout; panics when it fails.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let a = self.run(args);
        assert!(a.ok, "docker {} failed: {}", args.join(" "), a.stderr);
        a.stdout.trim().to_string()
    }

    /// Ids of the containers whose `berth.run_dir` label is `run_dir`, running or not.
    pub fn containers(&self, run_dir: &str) -> Vec<String> {
        let filter = format!("label=berth.run_dir={}", run_dir.trim_end_matches('/'));
        self.ok(&["ps", "-aq", "--no-trunc", "--filter", &filter])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `docker inspect --format FORMAT ID`.
    pub fn inspect(&self, id: &str, format: &str) -> String {
        self.ok(&["container", "inspect", "--format", format, id])
    }

    /// Removes the containers of `run_dir` (see [`Engine::containers`]).
    pub fn remove_containers(&self, run_dir: &str) {
        for id in self.containers(run_dir) {
            let _ = self.run(&["rm", "-f", &id]);
        }
    }
}

/// Removes the containers labelled with one test's run_dir when dropped.
pub struct ContainerGuard {
    pub engine: Engine,
    pub run_dir: String,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let left = self.engine.containers(&self.run_dir);
        if !left.is_empty() && !std::thread::panicking() {
            eprintln!("note: removed containers the test left behind: {left:?}");
        }
        self.engine.remove_containers(&self.run_dir);
    }
}
