//! The SSH fleet testbed: real OpenSSH hosts from `testdata/fleet/fleet`, brought up once per
//! test binary under a prefix and subnet of its own (so test binaries, crates and concurrent
//! runs do not collide), torn down when the binary exits, pass or fail, and looked at through
//! SSH with the fleet's own key. It needs root and must not be used for anything but tests.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_providers::{Command, Output, SshConfig, SshTransport, Transport};

/// Where a fleet host's private directory is mounted: where configs keep their run
/// directory...
pub const RUN_DIR: &str = "/srv/berth/run";
/// ...and their model files.
pub const MODELS_DIR: &str = "/srv/berth/models";

/// The fleet script.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fleet/fleet")
}

/// Where one crate's fleets live, kept apart from the other crate's: the letter their names
/// start with and the range of their subnets (`10.{second_octet + tag % spread}.x.0/24`).
#[derive(Debug, Clone, Copy)]
pub struct FleetSpace {
    pub letter: char,
    pub second_octet: u32,
    pub spread: u32,
    /// The tests, as the preflight failure names them ("the ssh_* tests").
    pub tests: &'static str,
}

impl FleetSpace {
    /// The engine's fleets: names `e…`, subnets 10.180-205.x.0/24.
    pub const ENGINE: FleetSpace = FleetSpace {
        letter: 'e',
        second_octet: 180,
        spread: 26,
        tests: "the engine's ssh_* tests",
    };

    /// The providers' fleets: names `b…`, subnets 10.212-243.x.0/24.
    pub const PROVIDERS: FleetSpace = FleetSpace {
        letter: 'b',
        second_octet: 212,
        spread: 32,
        tests: "the ssh_* tests",
    };
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
    /// This test binary's fleet of `hosts` hosts in `space`, brought up on first use. `tag` (a
    /// lowercase letter) and the process id make its names and subnet unique.
    pub fn shared(space: &FleetSpace, tag: char, hosts: usize) -> Arc<Fleet> {
        let mut slot = FLEET.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fleet) = slot.as_ref() {
            return Arc::clone(fleet);
        }
        preflight(space.tests);
        let pid = std::process::id();
        let prefix = format!("{}{tag}{}", space.letter, base36(pid));
        let dir = std::env::temp_dir().join(format!("berth-fleet-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        let fleet = Fleet {
            dir,
            subnet: free_subnet(space, tag, pid),
            prefix,
            hosts,
        };
        // Fleets of test runs that were killed (so never reached their teardown) go first.
        fleet.run_quietly(&["prune"]);
        // From here on a failure still tears down: `fleet` is dropped while unwinding.
        fleet.run(&["up", &hosts.to_string()]);
        let fleet = Arc::new(fleet);
        *slot = Some(Arc::clone(&fleet));
        // SAFETY: registering a plain `extern "C" fn` with atexit has no preconditions.
        unsafe {
            libc::atexit(teardown_at_exit);
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

    /// Runs `fleet ARGS...` and ignores failure (for clean-up that must not panic).
    pub fn run_quietly(&self, args: &[&str]) {
        let _ = self.script_command(args).output();
    }

    /// Stops host `k`'s listening sshd (open sessions stay): new connections are refused.
    pub fn stop_host(&self, k: usize) {
        self.run(&["stop-host", &k.to_string()]);
    }

    /// Starts host `k`'s sshd again.
    pub fn start_host(&self, k: usize) {
        self.run(&["start-host", &k.to_string()]);
    }

    /// SIGKILLs every process of host `k` (sshd, sessions, services): a host lost
    /// mid-operation.
    pub fn kill_host(&self, k: usize) {
        self.run(&["kill-host", &k.to_string()]);
    }

    /// Takes host `k`'s link down: packets to it vanish, connects time out.
    pub fn block_host(&self, k: usize) {
        self.run(&["block-host", &k.to_string()]);
    }

    /// Brings host `k`'s link back up.
    pub fn unblock_host(&self, k: usize) {
        self.run(&["unblock-host", &k.to_string()]);
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

    fn host_key_path(&self, k: usize) -> PathBuf {
        self.dir
            .join(format!("hosts/h{k}/ssh_host_ed25519_key.pub"))
    }

    /// Host `k`'s public host key file as it is, `ssh-ed25519 AAAA... hK`.
    pub fn host_key_line(&self, k: usize) -> String {
        let path = self.host_key_path(k);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// Host `k`'s public host key without its comment: `ssh-ed25519 AAAA...`.
    pub fn host_key(&self, k: usize) -> String {
        let text = self.host_key_line(k);
        let mut words = text.split_whitespace();
        format!(
            "{} {}",
            words.next().expect("key type"),
            words.next().expect("key data")
        )
    }

    /// The SHA256 fingerprint of host `k`'s key as OpenSSH prints it (`SHA256:...`).
    pub fn host_fingerprint(&self, k: usize) -> String {
        let out = Process::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(self.host_key_path(k))
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
    pub fn config(&self, k: usize) -> SshConfig {
        let mut config = SshConfig::new(format!("h{k}"), self.address(k));
        config.user = "root".to_string();
        config.key_path = Some(self.key());
        config.known_hosts = Some(self.known_hosts());
        config.connect_timeout = Duration::from_secs(5);
        config
    }

    /// A connected transport to host `k`.
    pub async fn connect(&self, k: usize) -> SshTransport {
        SshTransport::connect(self.config(k))
            .await
            .unwrap_or_else(|e| panic!("connect to h{k}: {e}"))
    }

    /// Runs `script` on host `k` over SSH with the fleet's (right) key; panics if SSH fails.
    /// For tests that are sync: it runs on a runtime of its own.
    pub fn exec(&self, k: usize, script: &str) -> Output {
        block_on(async move {
            let t = self.connect(k).await;
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

    /// The deployment records (directory names) under host `k`'s `run_dir` ([`RUN_DIR`]).
    pub fn deployments(&self, k: usize) -> Vec<String> {
        let out = self.exec_ok(
            k,
            &format!("ls -1 {RUN_DIR}/deployments 2>/dev/null || true"),
        );
        out.lines().map(str::to_string).collect()
    }

    /// A GET of `path` on host `k`'s 127.0.0.1:`port`, through an SSH `direct-tcpip` tunnel
    /// that a listener on this machine's loopback forwards to: the status and the body.
    pub fn http_get(&self, k: usize, port: u16, path: &str) -> Result<crate::http::Answer, String> {
        let config = self.config(k);
        let path = path.to_string();
        block_on(async move {
            let t = SshTransport::connect(config)
                .await
                .map_err(|e| format!("connect to h{k}: {e}"))?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("listen on loopback: {e}"))?;
            let local = listener.local_addr().map_err(|e| e.to_string())?.port();
            let got = tokio::time::timeout(Duration::from_secs(10), async {
                let url = format!("http://127.0.0.1:{local}{path}");
                let mut request = tokio::task::spawn_blocking(move || crate::http::get(&url));
                let forward = async {
                    let mut tunnel = t
                        .connect_loopback(port)
                        .await
                        .map_err(|e| format!("tunnel to h{k}:127.0.0.1:{port}: {e}"))?;
                    let (mut client, _) = listener
                        .accept()
                        .await
                        .map_err(|e| format!("accept on 127.0.0.1:{local}: {e}"))?;
                    tokio::io::copy_bidirectional(&mut client, &mut tunnel)
                        .await
                        .map_err(|e| format!("forward to h{k}:127.0.0.1:{port}: {e}"))
                };
                // The answer ends the exchange; the forwarding only matters when it fails first
                // (then the request sees a closed connection, and the tunnel error says why).
                tokio::select! {
                    answer = &mut request => answer.map_err(|e| format!("the request thread: {e}"))?,
                    forwarded = forward => {
                        forwarded?;
                        request.await.map_err(|e| format!("the request thread: {e}"))?
                    }
                }
            })
            .await
            .map_err(|_| format!("no answer from h{k}:127.0.0.1:{port} within 10 s"))?;
            t.disconnect().await;
            got.map_err(|e| format!("h{k}:{port}: {e}"))
        })
    }

    /// Writes a small placeholder model file `name` under host `k`'s models directory
    /// ([`MODELS_DIR`]).
    pub fn put_model_file(&self, k: usize, name: &str) {
        self.exec_ok(
            k,
            &format!("mkdir -p {MODELS_DIR} && head -c 4096 /dev/zero > {MODELS_DIR}/{name}"),
        );
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.run_quietly(&["down"]);
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
        crate::procs::flag_value(&self.args, flag)
    }

    /// The port it serves (`--port`).
    pub fn port(&self) -> Option<u16> {
        self.flag("--port").and_then(|p| p.parse().ok())
    }
}

/// The tests need what CI has: root and network namespaces. Anything else is a failure, not a
/// silent pass.
fn preflight(tests: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "{tests} need root (they build a fleet of sshd hosts in network namespaces with \
         testdata/fleet/fleet); run them as root, as CI does (euid is {euid})"
    );
    let netns = Process::new("ip").args(["netns", "list"]).output();
    assert!(
        netns.as_ref().is_ok_and(|o| o.status.success()),
        "the ssh_* tests need `ip netns` (iproute2) and network namespace support: {netns:?}"
    );
    assert!(script().exists(), "{} is missing", script().display());
}

/// A /24 of `space` that no interface on this machine uses yet, from the tag and the pid.
fn free_subnet(space: &FleetSpace, tag: char, pid: u32) -> String {
    let second = space.second_octet + (u32::from(tag) % space.spread);
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

/// Runs a future to its end on a small runtime of its own (for tests that are sync: they
/// mostly wait for berth processes).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(future)
}
