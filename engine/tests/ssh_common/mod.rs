//! The harness of the engine's SSH end-to-end tests: one fleet of real OpenSSH hosts per test
//! binary (from `testdata/fleet/fleet`, under a prefix and subnet of its own, torn down when the
//! binary exits, pass or fail), configs that point berth at those hosts, the real `berth` binary
//! run as a user runs it, and looks at the hosts through SSH with the fleet's own key (what
//! runs in a host's network namespace, its deployment records, its loopback ports through a
//! `direct-tcpip` tunnel). Real sshd, real processes, never mocks. It needs root.

#![allow(dead_code)] // each test binary uses a different part of it

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use berth_providers::{Command, Output, SshConfig, SshTransport, Transport};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one berth command may run before the test gives up on it.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(180);

/// Where a fleet host's private directory is mounted, and so where configs keep things.
pub const RUN_DIR: &str = "/srv/berth/run";
pub const MODELS_DIR: &str = "/srv/berth/models";

// The C library is linked into every Rust binary; the engine has no `libc` crate dependency.
unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
    fn geteuid() -> u32;
}

// --- the fleet ---------------------------------------------------------------------------------

/// The fleet script, relative to this crate.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fleet/fleet")
}

/// A running fleet; dropping it tears it down.
#[derive(Debug)]
pub struct Fleet {
    pub dir: PathBuf,
    pub prefix: String,
    pub subnet: String,
    pub hosts: usize,
}

static FLEET: Mutex<Option<Arc<Fleet>>> = Mutex::new(None);

extern "C" fn teardown_at_exit() {
    // Dropping the last reference runs `fleet down` (see `Drop for Fleet`).
    let fleet = FLEET.lock().ok().and_then(|mut f| f.take());
    drop(fleet);
}

impl Fleet {
    /// This test binary's fleet of `hosts` hosts, brought up on first use. `tag` (a lowercase
    /// letter) and the process id make its names and subnet unique.
    pub fn shared(tag: char, hosts: usize) -> Arc<Fleet> {
        let mut slot = FLEET.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fleet) = slot.as_ref() {
            return Arc::clone(fleet);
        }
        preflight();
        let pid = std::process::id();
        let prefix = format!("e{tag}{}", base36(pid));
        let dir = std::env::temp_dir().join(format!("berth-fleet-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        let fleet = Fleet {
            dir,
            subnet: free_subnet(tag, pid),
            prefix,
            hosts,
        };
        // Fleets of test runs that were killed (so never reached their teardown) go first.
        let _ = fleet.script_command(&["prune"]).output();
        // From here on a failure still tears down: `fleet` is dropped while unwinding.
        fleet.run(&["up", &hosts.to_string()]);
        let fleet = Arc::new(fleet);
        *slot = Some(Arc::clone(&fleet));
        // SAFETY: registering a plain `extern "C" fn` with atexit has no preconditions.
        unsafe {
            atexit(teardown_at_exit);
        }
        fleet
    }

    fn script_command(&self, args: &[&str]) -> Process {
        let mut cmd = Process::new(script());
        cmd.args(args)
            .env("BERTH_FLEET_PREFIX", &self.prefix)
            .env("BERTH_FLEET_SUBNET", &self.subnet)
            .env("BERTH_FLEET_DIR", &self.dir)
            .env("BERTH_FLEET_OWNER", std::process::id().to_string())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `fleet ARGS...` for this fleet; panics with its output when it fails.
    pub fn run(&self, args: &[&str]) {
        let out = self
            .script_command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
        assert!(
            out.status.success(),
            "fleet {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Address of host `k` (1-based).
    pub fn address(&self, k: usize) -> String {
        format!("{}.{}", self.subnet, 10 + k)
    }

    /// The fleet host number of an address of this fleet.
    pub fn host_number(&self, address: &str) -> Option<usize> {
        let last = address.strip_prefix(&format!("{}.", self.subnet))?;
        last.parse::<usize>().ok()?.checked_sub(10)
    }

    /// The fleet's client key, authorized on every host.
    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// known_hosts listing every host of the fleet.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Host `k`'s public host key without its comment: `ssh-ed25519 AAAA...`.
    pub fn host_key(&self, k: usize) -> String {
        let path = self
            .dir
            .join(format!("hosts/h{k}/ssh_host_ed25519_key.pub"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut words = text.split_whitespace();
        format!(
            "{} {}",
            words.next().expect("key type"),
            words.next().expect("key data")
        )
    }

    /// The SHA256 fingerprint of host `k`'s key as OpenSSH prints it (`SHA256:...`).
    pub fn host_fingerprint(&self, k: usize) -> String {
        let path = self
            .dir
            .join(format!("hosts/h{k}/ssh_host_ed25519_key.pub"));
        let out = Process::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(&path)
            .output()
            .expect("ssh-keygen -l");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .expect("a fingerprint")
            .to_string()
    }

    /// Host `k`'s sshd log.
    pub fn sshd_log(&self, k: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("hosts/h{k}/sshd.log"))).unwrap_or_default()
    }

    /// How many logins host `k`'s sshd has accepted so far (one per SSH connection).
    pub fn logins(&self, k: usize) -> usize {
        self.sshd_log(k)
            .lines()
            .filter(|l| l.contains("Accepted publickey"))
            .count()
    }

    /// Adds a public key file to the fleet's authorized_keys (shared by all hosts).
    pub fn authorize(&self, public_key: &Path) {
        use std::io::Write;
        let key = std::fs::read_to_string(public_key).expect("public key readable");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("authorized_keys"))
            .expect("authorized_keys");
        writeln!(file, "{}", key.trim()).expect("append to authorized_keys");
    }

    /// A scratch directory inside the fleet directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.join("scratch").join(name);
        std::fs::create_dir_all(&path).expect("scratch dir");
        path
    }

    /// Connection settings for host `k` with the fleet key and known_hosts.
    pub fn ssh_config(&self, k: usize) -> SshConfig {
        let mut config = SshConfig::new(format!("h{k}"), self.address(k));
        config.user = "root".to_string();
        config.key_path = Some(self.key());
        config.known_hosts = Some(self.known_hosts());
        config.connect_timeout = Duration::from_secs(5);
        config
    }

    /// Runs `script` on host `k` over SSH with the fleet's (right) key; panics if SSH fails.
    pub fn exec(&self, k: usize, script: &str) -> Output {
        let config = self.ssh_config(k);
        block_on(async move {
            let t = SshTransport::connect(config)
                .await
                .unwrap_or_else(|e| panic!("connect to h{k}: {e}"));
            let out = t
                .exec(Command::new(script, Duration::from_secs(30)))
                .await
                .unwrap_or_else(|e| panic!("`{script}` on h{k}: {e}"));
            t.disconnect().await;
            out
        })
    }

    /// Runs `script` on host `k`; panics unless it exits 0. Returns its stdout.
    #[track_caller]
    pub fn exec_ok(&self, k: usize, script: &str) -> String {
        let out = self.exec(k, script);
        assert!(out.success(), "`{script}` on h{k}: {out:?}");
        out.stdout_text()
    }

    /// The `berth-model-server` processes living in host `k`'s network namespace, as the host
    /// itself sees them (hosts share one pid namespace, so plain `pgrep` would see every host).
    pub fn stand_ins(&self, k: usize) -> Vec<RemoteProcess> {
        let script = r#"me=$(readlink /proc/self/ns/net)
for p in /proc/[0-9]*; do
  [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$me" ] || continue
  exe=$(tr '\0' '\n' < "$p/cmdline" 2>/dev/null | head -n 1)
  case $exe in */berth-model-server|berth-model-server) ;; *) continue;; esac
  grep -q '^State:[[:space:]]*Z' "$p/status" 2>/dev/null && continue
  printf '%s\t%s\n' "${p#/proc/}" "$(tr '\0' ' ' < "$p/cmdline")"
done"#;
        self.exec_ok(k, script)
            .lines()
            .filter_map(|line| {
                let (pid, args) = line.split_once('\t')?;
                Some(RemoteProcess {
                    pid: pid.parse().ok()?,
                    args: args.split_whitespace().map(str::to_string).collect(),
                })
            })
            .collect()
    }

    /// The deployment records (directory names) under host `k`'s `run_dir`.
    pub fn deployments(&self, k: usize) -> Vec<String> {
        let out = self.exec_ok(
            k,
            &format!("ls -1 {RUN_DIR}/deployments 2>/dev/null || true"),
        );
        out.lines().map(str::to_string).collect()
    }

    /// An HTTP/1.0 GET of `path` on host `k`'s 127.0.0.1:`port`, through an SSH `direct-tcpip`
    /// tunnel: the status and the body.
    pub fn http_get(&self, k: usize, port: u16, path: &str) -> Result<(u16, String), String> {
        let config = self.ssh_config(k);
        let path = path.to_string();
        block_on(async move {
            let t = SshTransport::connect(config)
                .await
                .map_err(|e| format!("connect to h{k}: {e}"))?;
            let got = tokio::time::timeout(Duration::from_secs(10), async {
                let mut stream = t
                    .connect_loopback(port)
                    .await
                    .map_err(|e| format!("tunnel to h{k}:127.0.0.1:{port}: {e}"))?;
                let request = format!(
                    "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: berth-ssh-e2e\r\n\r\n"
                );
                stream
                    .write_all(request.as_bytes())
                    .await
                    .map_err(|e| format!("send through the tunnel: {e}"))?;
                let mut response = Vec::new();
                stream
                    .read_to_end(&mut response)
                    .await
                    .map_err(|e| format!("read through the tunnel: {e}"))?;
                Ok::<_, String>(String::from_utf8_lossy(&response).into_owned())
            })
            .await
            .map_err(|_| format!("no answer from h{k}:127.0.0.1:{port} within 10 s"))?;
            t.disconnect().await;
            let response = got?;
            let status = response
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("no HTTP status from h{k}:{port}: {response:?}"))?;
            let body = response
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_string())
                .unwrap_or_default();
            Ok((status, body))
        })
    }

    /// Writes a small placeholder model file `name` under host `k`'s models directory.
    pub fn put_model_file(&self, k: usize, name: &str) {
        self.exec_ok(
            k,
            &format!("mkdir -p {MODELS_DIR} && head -c 4096 /dev/zero > {MODELS_DIR}/{name}"),
        );
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.script_command(&["down"]).output();
        if std::env::var_os("BERTH_FLEET_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One process as a fleet host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteProcess {
    pub pid: u32,
    pub args: Vec<String>,
}

impl RemoteProcess {
    /// The value of `flag` on its command line.
    pub fn flag(&self, flag: &str) -> Option<&str> {
        self.args
            .iter()
            .position(|a| a == flag)
            .and_then(|i| self.args.get(i + 1))
            .map(String::as_str)
    }

    /// The port it serves (`--port`).
    pub fn port(&self) -> Option<u16> {
        self.flag("--port").and_then(|p| p.parse().ok())
    }
}

/// The tests need what CI has: root and network namespaces. Anything else is a failure, not a
/// silent pass.
fn preflight() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { geteuid() };
    assert!(
        euid == 0,
        "the engine's ssh_* tests need root (they build a fleet of sshd hosts in network \
         namespaces with testdata/fleet/fleet); run them as root, as CI does (euid is {euid})"
    );
    let netns = Process::new("ip").args(["netns", "list"]).output();
    assert!(
        netns.as_ref().is_ok_and(|o| o.status.success()),
        "the ssh_* tests need `ip netns` (iproute2) and network namespace support: {netns:?}"
    );
    assert!(script().exists(), "{} is missing", script().display());
}

/// A /24 that no interface on this machine uses yet, from the tag and the pid.
fn free_subnet(tag: char, pid: u32) -> String {
    let second = 180 + (u32::from(tag) % 26);
    let used = Process::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    (0..250)
        .map(|i| format!("10.{second}.{}", (pid + i) % 250 + 1))
        .find(|subnet| !used.contains(&format!(" {subnet}.1/24")))
        .expect("a free 10.x.y.0/24 subnet")
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}

/// Runs a future to its end on a small runtime of its own (the tests themselves are sync: they
/// mostly wait for berth processes).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}

/// Polls `check` every 50 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// --- binaries ----------------------------------------------------------------------------------

/// The `berth` binary cargo built for these tests.
pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// The `berth-model-server` stand-in, built once per test process. Fleet hosts share this
/// machine's file system (all but /srv/berth and root's home), so configs name it by its
/// absolute path.
///
/// Cargo only hands `CARGO_BIN_EXE_*` to tests of the package that owns the binary, so this
/// finds the target directory from the test executable's own path
/// (`<target>/<profile>/deps/<test>`) and, unless the binary there is newer than every file of
/// `testdata/model-server`, runs `cargo build -p berth-model-server` into it (as
/// `providers/tests/common` does).
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
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/model-server");
        if modified(&bin).is_some_and(|built| newest(&source).is_some_and(|src| src <= built)) {
            return bin;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let status = Process::new(cargo)
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

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
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

// --- configs -----------------------------------------------------------------------------------

/// One `host` block of a test config.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub id: String,
    pub address: String,
    pub user: String,
    pub key_path: PathBuf,
    /// `None` leaves known_hosts out (for a pinned `host_key`).
    pub known_hosts: Option<PathBuf>,
    pub host_key: Option<String>,
    pub connect_timeout_sec: u64,
}

impl HostSpec {
    /// Fleet host `k` under the id `hK`, reached with the fleet's key and known_hosts.
    pub fn fleet(fleet: &Fleet, k: usize) -> HostSpec {
        HostSpec {
            id: format!("h{k}"),
            address: fleet.address(k),
            user: "root".to_string(),
            key_path: fleet.key(),
            known_hosts: Some(fleet.known_hosts()),
            host_key: None,
            connect_timeout_sec: 5,
        }
    }

    pub fn id(mut self, id: &str) -> HostSpec {
        self.id = id.to_string();
        self
    }

    fn hcl(&self) -> String {
        let mut out = format!("host \"{}\" {{\n  connection {{\n", self.id);
        let _ = writeln!(out, "    host = \"{}\"", self.address);
        let _ = writeln!(out, "    user = \"{}\"", self.user);
        let _ = writeln!(out, "    key_path = \"{}\"", self.key_path.display());
        if let Some(k) = &self.known_hosts {
            let _ = writeln!(out, "    known_hosts = \"{}\"", k.display());
        }
        if let Some(k) = &self.host_key {
            let _ = writeln!(out, "    host_key = \"{k}\"");
        }
        let _ = writeln!(
            out,
            "    connect_timeout_sec = {}\n  }}",
            self.connect_timeout_sec
        );
        out.push_str("  capabilities {\n    backends = [\"cpu\"]\n  }\n");
        let _ = writeln!(out, "  run_dir = \"{RUN_DIR}\"\n}}\n");
        out
    }
}

/// One `model` block: the stand-in on `port` with extra `flags`, on every host its
/// `host_policy` names.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub id: String,
    pub port: u16,
    pub flags: String,
    /// Host ids or globs (`host_policy.hosts`).
    pub hosts: Vec<String>,
    pub replicas: usize,
    pub probe_interval_ms: u64,
    pub probe_timeout_sec: u64,
}

impl ModelSpec {
    /// A model on `replicas` of the hosts matching `hosts`.
    pub fn new(id: &str, port: u16, flags: &str, hosts: &[&str], replicas: usize) -> ModelSpec {
        ModelSpec {
            id: id.to_string(),
            port,
            flags: flags.to_string(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            replicas,
            probe_interval_ms: 200,
            probe_timeout_sec: 60,
        }
    }

    fn hcl(&self) -> String {
        let hosts: Vec<String> = self.hosts.iter().map(|h| format!("\"{h}\"")).collect();
        format!(
            r#"model "{id}" {{
  source   = "{MODELS_DIR}/{id}.gguf"
  size_gib = 0.1
  host_policy {{
    hosts    = [{hosts}]
    replicas = {replicas}
  }}
  runtime_defaults {{
    port = {port}
  }}
  launch {{
    start_cmd         = "{server} --port {{port}} --model {{model}}{flags}"
    probe_http        = "/v1/models"
    probe_interval_ms = {interval}
    probe_timeout_sec = {timeout}
  }}
}}

"#,
            id = self.id,
            hosts = hosts.join(", "),
            replicas = self.replicas,
            port = self.port,
            server = model_server().display(),
            flags = if self.flags.is_empty() {
                String::new()
            } else {
                format!(" {}", self.flags)
            },
            interval = self.probe_interval_ms,
            timeout = self.probe_timeout_sec,
        )
    }
}

/// The backend every test config shares: plain processes, checked by a `verify_cmd` that
/// looks for the stand-in (so apply runs a command on each host before starting models).
fn backend_hcl() -> String {
    format!(
        "backend \"cpu\" {{\n  runtime    = \"process\"\n  verify_cmd = \"test -x {}\"\n}}\n\n",
        model_server().display()
    )
}

/// One config directory with its own state, and the berth commands run against it.
pub struct Project {
    root: tempfile::TempDir,
    runs: Mutex<u32>,
}

impl Project {
    /// A config dir holding `hosts`, the shared backend and `models`.
    pub fn new(hosts: &[HostSpec], models: &[ModelSpec], parallelism: usize) -> Project {
        let root = tempfile::Builder::new()
            .prefix("berth-ssh-e2e-")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(root.path().join("config")).expect("config dir");
        std::fs::create_dir_all(root.path().join("out")).expect("out dir");
        let project = Project {
            root,
            runs: Mutex::new(0),
        };
        project.write(hosts, models, parallelism);
        project
    }

    /// Rewrites the config.
    pub fn write(&self, hosts: &[HostSpec], models: &[ModelSpec], parallelism: usize) {
        let mut text = format!(
            "settings {{\n  state_dir   = \".berth\"\n  parallelism = {parallelism}\n}}\n\n"
        );
        for h in hosts {
            text.push_str(&h.hcl());
        }
        text.push_str(&backend_hcl());
        for m in models {
            text.push_str(&m.hcl());
        }
        std::fs::write(self.dir().join("main.hcl"), text).expect("main.hcl");
    }

    /// The config directory.
    pub fn dir(&self) -> PathBuf {
        self.root.path().join("config")
    }

    /// A scratch path beside the config (not part of it).
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// The state directory (`settings.state_dir`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join(".berth")
    }

    fn output_files(&self) -> (PathBuf, PathBuf) {
        let mut n = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        let base = self.root.path().join("out");
        (
            base.join(format!("{:03}.stdout", *n)),
            base.join(format!("{:03}.stderr", *n)),
        )
    }

    /// Starts `berth -C DIR ARGS...` in the background (stdin not a terminal).
    pub fn spawn(&self, args: &[&str]) -> Background {
        let (out, err) = self.output_files();
        let child = Process::new(berth_bin())
            .arg("-C")
            .arg(self.dir())
            .args(args)
            .env("NO_COLOR", "1")
            .env("COLUMNS", "200")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("run berth");
        Background {
            child: Some(child),
            out,
            err,
            started: Instant::now(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Runs `berth -C DIR ARGS...` to its end.
    pub fn berth(&self, args: &[&str]) -> Run {
        self.spawn(args).wait(COMMAND_DEADLINE)
    }

    /// `berth state list --json`.
    pub fn state_list(&self) -> Vec<Value> {
        let run = self.berth(&["state", "list", "--json"]);
        run.expect(0);
        run.json().as_array().cloned().expect("a JSON array")
    }

    /// Address -> status object (`{"state": "ready"}`, `{"state": "failed", "step", "reason"}`).
    pub fn statuses(&self) -> std::collections::BTreeMap<String, Value> {
        self.state_list()
            .into_iter()
            .map(|r| {
                (
                    r["address"].as_str().unwrap_or_default().to_string(),
                    r["status"].clone(),
                )
            })
            .collect()
    }

    /// `berth endpoints --json`.
    pub fn endpoints(&self) -> Vec<Value> {
        let run = self.berth(&["endpoints", "--json"]);
        run.expect(0);
        run.json().as_array().cloned().expect("a JSON array")
    }

    /// The holder recorded in the state lock file, while a command holds it.
    pub fn lock_holder(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.state_dir().join("berth.lock")).ok()?;
        serde_json::from_str(text.trim()).ok()
    }
}

/// What one berth command did.
#[derive(Debug, Clone)]
pub struct Run {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub args: Vec<String>,
}

impl Run {
    /// Stdout then stderr, for messages that may go to either.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics with the whole output unless the command exited with `code`.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "`berth {}` exited with {:?} (expected {code}) after {:.1}s\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        );
        self
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "`berth {}` printed no JSON ({e}):\n{}\n--- stderr\n{}",
                self.args.join(" "),
                self.stdout,
                self.stderr
            )
        })
    }
}

/// A berth command running in the background; dropping it kills it.
pub struct Background {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
    started: Instant,
    args: Vec<String>,
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not reaped").id()
    }

    /// What it printed to stdout so far.
    pub fn stdout_so_far(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for it to end (killing it after `timeout`) and returns what it did.
    pub fn wait(&mut self, timeout: Duration) -> Run {
        let end = Instant::now() + timeout;
        let mut code = None;
        if let Some(mut child) = self.child.take() {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        code = status.code();
                        break;
                    }
                    Ok(None) if Instant::now() < end => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "`berth {}` did not finish within {timeout:?}\n--- stdout\n{}\n--- stderr\n{}",
                            self.args.join(" "),
                            self.stdout_so_far(),
                            std::fs::read_to_string(&self.err).unwrap_or_default()
                        );
                    }
                }
            }
        }
        Run {
            code,
            stdout: std::fs::read_to_string(&self.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err).unwrap_or_default(),
            elapsed: self.started.elapsed(),
            args: self.args.clone(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Checks that must all be reported, not just the first: a test notes each broken promise and
/// fails at its end with the whole list, so that one bug does not hide the behaviour after it.
#[derive(Debug, Default)]
pub struct Findings(Vec<String>);

impl Findings {
    /// Notes `message` unless `ok`.
    pub fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            let message = message();
            eprintln!("FINDING: {message}");
            self.0.push(message);
        }
    }

    /// Panics listing every finding.
    #[track_caller]
    pub fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} broken promise(s):\n\n{}",
            self.0.len(),
            self.0.join("\n\n")
        );
    }
}
