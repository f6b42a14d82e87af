//! Systemd test hosts: docker containers of the image `testdata/systemd-host/build-image` makes
//! (systemd as PID 1, journald, sshd), each a real remote machine for the SSH transport. sshd
//! is published on a port of this machine's 127.0.0.1 only; the `berth-model-server` stand-in
//! is mounted read-only at [`BIN_DIR`]. A host is removed when its value drops; hosts that a
//! killed test run left behind (their owner pid is dead) are removed by the next one. It needs
//! root and a docker engine, and must not be used for anything but tests.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_providers::{Command, Output, SshConfig, SshTransport, Transport};

use crate::fleet::block_on;

/// Where a systemd host sees the directory of the stand-in binary.
pub const BIN_DIR: &str = "/opt/berth/bin";

/// The label that marks the containers of these tests, holding the pid that started them.
const OWNER_LABEL: &str = "berth.test.systemd-owner";

/// The image, built (or found up to date) once per test process.
pub fn image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd-host/build-image");
            let out = Process::new(&script)
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} failed:\n{}{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        })
        .clone()
}

/// One running systemd host.
#[derive(Debug)]
pub struct SystemdHost {
    /// The container's name, `berth-test-systemd-<pid>-<tag>`.
    pub name: String,
    /// The port of this machine's 127.0.0.1 that reaches the host's sshd.
    pub ssh_port: u16,
    dir: tempfile::TempDir,
    host_key: String,
}

fn docker(args: &[&str]) -> std::process::Output {
    Process::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker {}: {e}", args.join(" ")))
}

#[track_caller]
fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The full path of program `name` on PATH.
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Removes the systemd hosts of test processes that are gone.
fn prune() {
    let listed = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label={OWNER_LABEL}"),
        "--format",
        &format!("{{{{.Names}}}}\t{{{{.Label \"{OWNER_LABEL}\"}}}}"),
    ]);
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let Some((name, owner)) = line.split_once('\t') else {
            continue;
        };
        let alive = owner
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = docker(&["rm", "-f", "-v", name]);
        }
    }
}

impl SystemdHost {
    /// Starts host `tag` (a short word unique within the test process) and waits until systemd
    /// is up and sshd takes the host's key for `root`, for `berth` (uid 1000, whose user
    /// manager runs from boot, no sudo) and for `deploy` (uid 1001, passwordless sudo).
    pub fn start(tag: &str) -> SystemdHost {
        SystemdHost::boot(tag, &[])
    }

    /// Starts host `tag` as [`SystemdHost::start`] does, with a Docker engine as well: this
    /// machine's engine, through its socket and the `docker` client (a static binary) mounted
    /// into the host. Containers that join the host's network namespace
    /// (`--network container:NAME`) serve on the host's own loopback, as on a machine that runs
    /// Docker beside systemd.
    pub fn start_with_docker(tag: &str) -> SystemdHost {
        let client = which("docker").expect("the docker client");
        let client = format!("{}:/usr/local/bin/docker:ro", client.display());
        SystemdHost::boot(
            tag,
            &[
                "-v",
                "/var/run/docker.sock:/var/run/docker.sock",
                "-v",
                &client,
            ],
        )
    }

    fn boot(tag: &str, extra: &[&str]) -> SystemdHost {
        let image = image();
        prune();
        let pid = std::process::id();
        let name = format!("berth-test-systemd-{pid}-{tag}");
        let _ = docker(&["rm", "-f", "-v", &name]);
        let bin = crate::model_server();
        let bin_dir = bin.parent().expect("the stand-in's directory");
        let owner = format!("{OWNER_LABEL}={pid}");
        let bin_mount = format!("{}:{BIN_DIR}:ro", bin_dir.display());
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--hostname",
            tag,
            "--label",
            &owner,
            "--cap-add",
            "SYS_ADMIN",
            "--cgroupns=host",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "-e",
            "container=docker",
            "-v",
            &bin_mount,
            "-p",
            "127.0.0.1::22",
        ];
        args.extend_from_slice(extra);
        args.extend([image.as_str(), "/lib/systemd/systemd"]);
        docker_ok(&args);
        let dir = tempfile::Builder::new()
            .prefix("berth-systemd-host-")
            .tempdir()
            .expect("temp dir");
        let host = SystemdHost {
            ssh_port: 0,
            host_key: String::new(),
            name,
            dir,
        };
        // From here on a failure removes the container (the value drops while unwinding).
        let mut host = host;
        let port = docker_ok(&["port", &host.name, "22/tcp"]);
        host.ssh_port = port
            .lines()
            .find_map(|l| l.strip_prefix("127.0.0.1:"))
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("docker port {}: {port:?}", host.name));
        let booted = crate::wait_until(Duration::from_secs(90), || {
            let out = docker(&["exec", &host.name, "systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout);
            matches!(state.trim(), "running" | "degraded")
        });
        assert!(
            booted,
            "{} did not boot: {}",
            host.name,
            host.root_sh("systemctl --failed --no-pager; systemctl is-system-running")
                .stdout_text()
        );
        let key = host.key();
        let keygen = Process::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "berth-test", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen");
        assert!(keygen.success(), "ssh-keygen failed");
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
        let script = format!(
            "for h in /root /home/berth /home/deploy; do printf '%s\\n' '{}' > $h/.ssh/authorized_keys; chmod 600 $h/.ssh/authorized_keys; done; chown berth:berth /home/berth/.ssh/authorized_keys; chown deploy:deploy /home/deploy/.ssh/authorized_keys",
            public.trim()
        );
        let out = host.root_sh(&script);
        assert!(out.success(), "authorize the test key: {out:?}");
        let line = host.root_sh("cat /etc/ssh/ssh_host_ed25519_key.pub");
        let mut words = std::str::from_utf8(&line.stdout)
            .expect("host key text")
            .split_whitespace();
        host.host_key = format!(
            "{} {}",
            words.next().expect("host key type"),
            words.next().expect("host key data")
        );
        let started = Instant::now();
        loop {
            let config = host.config("root");
            let reached = block_on(async move {
                match SshTransport::connect(config).await {
                    Ok(t) => {
                        t.disconnect().await;
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            });
            match reached {
                Ok(()) => break,
                Err(e) if started.elapsed() > Duration::from_secs(60) => {
                    panic!("sshd of {} never answered: {e}", host.name)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        host
    }

    /// The client key authorized for `root`, `berth` and `deploy` on the host.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// The host's public key, `ssh-ed25519 AAAA...`, to pin in a connection block.
    pub fn host_key(&self) -> &str {
        &self.host_key
    }

    /// Connection settings for logging in as `user`, with the host key pinned.
    pub fn config(&self, user: &str) -> SshConfig {
        let mut config = SshConfig::new(self.name.clone(), "127.0.0.1".to_string());
        config.port = self.ssh_port;
        config.user = user.to_string();
        config.key_path = Some(self.key());
        config.host_key = Some(self.host_key.clone());
        config.connect_timeout = Duration::from_secs(5);
        config
    }

    /// Runs `script` as root inside the host through `docker exec` (not SSH): how a test looks
    /// at the host behind berth's back.
    pub fn root_sh(&self, script: &str) -> Output {
        let out = docker(&["exec", &self.name, "sh", "-c", script]);
        Output {
            status: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    /// Runs `script` as `user` over SSH.
    pub fn ssh(&self, user: &str, script: &str) -> Output {
        let config = self.config(user);
        let script = script.to_string();
        block_on(async move {
            let t = SshTransport::connect(config)
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
            let out = t
                .exec(Command::new(script.clone(), Duration::from_secs(60)))
                .await
                .unwrap_or_else(|e| panic!("`{script}`: {e}"));
            t.disconnect().await;
            out
        })
    }

    /// Runs `script` as root inside the host; panics unless it exits 0. Returns its stdout.
    #[track_caller]
    pub fn root_ok(&self, script: &str) -> String {
        let out = self.root_sh(script);
        assert!(out.success(), "`{script}` on {}: {out:?}", self.name);
        out.stdout_text()
    }
}

impl Drop for SystemdHost {
    fn drop(&mut self) {
        if std::env::var_os("BERTH_SYSTEMD_KEEP").is_none() {
            let _ = docker(&["rm", "-f", "-v", &self.name]);
        }
    }
}
