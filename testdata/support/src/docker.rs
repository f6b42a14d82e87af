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
    engine_answers("docker")
}

/// Whether `cli` (`docker`, `podman`) is installed and its engine answers.
pub fn engine_answers(cli: &str) -> bool {
    Command::new(cli)
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The stand-in image of `variant` (two variants are two images with different ids) in this
/// machine's docker engine, built on first use.
pub fn stand_in_image(variant: &str) -> String {
    stand_in_image_for("docker", variant)
}

/// The stand-in image of `variant` in `cli`'s engine (`docker`, `podman`), built on first use.
pub fn stand_in_image_for(cli: &str, variant: &str) -> String {
    static BUILT: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let key = format!("{cli}/{variant}");
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, image)) = built.iter().find(|(v, _)| *v == key) {
        return image.clone();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/build-stand-in");
    let out = Command::new(&script)
        .env("BERTH_TEST_CLI", cli)
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
    built.push((key, image.clone()));
    image
}

/// One container engine: this machine's docker or podman, or the docker behind `host` (a
/// `unix://` socket).
#[derive(Debug, Clone)]
pub struct Engine {
    pub cli: &'static str,
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
    /// This machine's docker engine.
    pub fn local() -> Engine {
        Engine {
            cli: "docker",
            host: None,
        }
    }

    /// This machine's podman (rootful).
    pub fn podman() -> Engine {
        Engine {
            cli: "podman",
            host: None,
        }
    }

    /// Runs `docker ARGS...` (or podman's) against this engine.
    pub fn run(&self, args: &[&str]) -> Answer {
        let mut cmd = Command::new(self.cli);
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
        assert!(a.ok, "{} {} failed: {}", self.cli, args.join(" "), a.stderr);
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

/// A private Docker engine inside one fleet host's network namespace, as on a real remote
/// machine: containers with host networking listen on that host's address. Its socket, data
/// and log live under `/tmp/berth-dockerd-{fleet prefix}-h{k}`; the host's root login reaches
/// it through a docker context in its private home. Dropping it removes its containers and
/// stops it.
pub struct HostEngine {
    pub engine: Engine,
    pub dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl HostEngine {
    /// Starts the engine of fleet host `k` and points the host's docker CLI at it.
    pub fn start(fleet: &crate::fleet::Fleet, k: usize) -> HostEngine {
        let dir = std::path::PathBuf::from(format!("/tmp/berth-dockerd-{}-h{k}", fleet.prefix));
        let _ = std::fs::create_dir_all(&dir);
        let config = dir.join("daemon.json");
        std::fs::write(&config, "{}").expect("daemon.json");
        let socket = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("dockerd.log");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}-h{k}", fleet.prefix))
            .arg("dockerd")
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver=fuse-overlayfs",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let engine = Engine {
            cli: "docker",
            host: Some(format!("unix://{}", socket.display())),
        };
        let mut host = HostEngine {
            engine,
            dir,
            child: Some(child),
        };
        let up = crate::wait_until(std::time::Duration::from_secs(60), || {
            host.engine.run(&["version"]).ok
        });
        if !up {
            let log = std::fs::read_to_string(host.dir.join("dockerd.log")).unwrap_or_default();
            host.stop();
            panic!("the dockerd of h{k} did not come up:\n{log}");
        }
        fleet.exec_ok(
            k,
            &format!(
                "docker context rm -f berth-test >/dev/null 2>&1; docker context create berth-test --docker host=unix://{} >/dev/null && docker context use berth-test >/dev/null",
                socket.display()
            ),
        );
        host
    }

    /// Copies `image` from this machine's engine into this one.
    pub fn load_from_local(&self, image: &str) {
        let mut save = Command::new("docker")
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .expect("docker save");
        let status = Command::new("docker")
            .env(
                "DOCKER_HOST",
                self.engine.host.as_deref().unwrap_or_default(),
            )
            .args(["load", "-q"])
            .stdin(save.stdout.take().expect("piped"))
            .stdout(Stdio::null())
            .status()
            .expect("docker load");
        let saved = save.wait().expect("docker save");
        assert!(
            saved.success() && status.success(),
            "copying {image} failed"
        );
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Only this test's containers live in this engine.
            if let Ok(ids) = std::panic::catch_unwind(|| self.engine.ok(&["ps", "-aq"])) {
                for id in ids.lines() {
                    let _ = self.engine.run(&["rm", "-f", id]);
                }
            }
            // SAFETY: signalling the dockerd this value started; kill(2) has no memory effects.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let ended = crate::wait_until(std::time::Duration::from_secs(20), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !ended {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        // dockerd leaves its network namespace file bind-mounted under exec-root.
        let prefix = format!("{}/", self.dir.display());
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for HostEngine {
    fn drop(&mut self) {
        self.stop();
    }
}
